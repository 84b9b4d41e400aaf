//! The bootstrap provider end to end: kube-sim, a real nats-server
//! (JetStream), the watcher, the workers, the simulated CAPI core and the
//! child-cluster stand-in, all through `drover_loadtest::stack`.
//!
//! CAPI core's part (MachineDeployment → MachineSet → Machines, configs
//! cloned from the template, owners, the control plane marked initialized,
//! `dataSecretName` copied to the Machines) is the simulated core's; each
//! cluster's child kube-sim cluster sits behind `<cluster>-kubeconfig`.

use std::sync::Arc;
use std::time::Duration;

use drover_loadtest::stack::{self, Stack, StackConfig};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::NatsServer;
use drover_queue::{AnyQueue, JobQueue as _, JobSelector};
use drover_render::{TokenRole, decode_join_token};
use drover_shared::api::bootstrap::K0sWorkerConfig;
use drover_shared::api::capi::Machine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;

fn ready(c: &K0sWorkerConfig) -> bool {
    c.status.as_ref().is_some_and(|s| {
        drover_shared::conditions::is_true(&s.conditions, drover_shared::conditions::READY)
    })
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The user data's `/etc/k0s.token` file.
fn token_file(value: &[u8]) -> String {
    let text = std::str::from_utf8(value).unwrap();
    let body = text
        .strip_prefix("## template: jinja\n#cloud-config\n")
        .unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(body).unwrap();
    doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/k0s.token")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_bootstraps_and_a_dead_letter_replays_after_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = JetStreamQueue::connect(JetStreamConfig::new(nats.url()))
        .await
        .unwrap();
    let queue = Arc::new(AnyQueue::JetStream(queue));
    let mut stack = Stack::start(queue.clone(), StackConfig::default())
        .await
        .unwrap();
    let client = stack.client.clone();

    // Two clusters of three workers each.
    let objects = stack::fleet(2, 3, "v1.33.1+k0s.0");
    assert_eq!(stack::expected_configs(&objects), 6);
    stack::create_all(&client, "default", objects, 4)
        .await
        .unwrap();

    // Each fleet cluster lives in its own namespace.
    let all_configs: Api<K0sWorkerConfig> = Api::all(client.clone());
    wait_for("6 Ready configs", Duration::from_secs(60), || {
        let configs = all_configs.clone();
        async move {
            let l = configs.list(&ListParams::default()).await.unwrap().items;
            l.len() == 6 && l.iter().all(ready)
        }
    })
    .await;

    for c in all_configs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let name = c.metadata.name.clone().unwrap();
        let ns = c.metadata.namespace.clone().unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let machines: Api<Machine> = Api::namespaced(client.clone(), &ns);
        let st = c.status.clone().unwrap();
        assert_eq!(st.data_secret_name.as_deref(), Some(name.as_str()));
        assert_eq!(st.initialization.data_secret_created, Some(true));
        assert_eq!(st.ready, Some(true));
        let s = secrets.get(&name).await.unwrap();
        assert_eq!(s.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
        let cluster = &s.metadata.labels.clone().unwrap()["cluster.x-k8s.io/cluster-name"];
        let owner = &s.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(owner.uid, c.metadata.uid.clone().unwrap());

        // The simulated CAPI core copied the name into the Machine.
        let owner_machine = c
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Machine")
            .expect("the Machine owns its config")
            .name
            .clone();
        wait_for(
            "dataSecretName on the Machine",
            Duration::from_secs(30),
            || {
                let machines = machines.clone();
                let m = owner_machine.clone();
                let want = name.clone();
                async move {
                    machines
                        .get(&m)
                        .await
                        .unwrap()
                        .spec
                        .bootstrap
                        .data_secret_name
                        == Some(want)
                }
            },
        )
        .await;

        // The join token reaches the child cluster's API, trusts its CA,
        // and its token exists there.
        let kc = decode_join_token(&token_file(&s.data.unwrap()["value"].0)).unwrap();
        assert_eq!(kc.user, TokenRole::Worker.user());
        let ca = secrets.get(&format!("{cluster}-ca")).await.unwrap();
        assert_eq!(kc.ca_cert, ca.data.unwrap()["tls.crt"].0);
        assert_eq!(cluster, &ns);
        let child = stack.sim.cluster(&format!("{cluster}.{ns}")).unwrap();
        assert_eq!(kc.server, format!("https://{}", child.addr));
        let child_client = stack::client_for(&child).await.unwrap();
        let (id, _) = kc.token.split_once('.').unwrap();
        let t = Api::<Secret>::namespaced(child_client, "kube-system")
            .get(&format!("bootstrap-token-{id}"))
            .await
            .unwrap();
        assert_eq!(t.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
    }

    // Bad input: dead-lettered at once, with a Ready=False naming the field.
    let bad = json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig",
        "metadata": {"name": "edge-0"},
        "spec": {"downloadURL": "ftp://mirror.example.com/k0s"}});
    let machine = json!({
        "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
        "metadata": {"name": "edge-0", "labels": {"cluster.x-k8s.io/cluster-name": "fleet-0000"}},
        "spec": {"clusterName": "fleet-0000", "version": "v1.33.1",
            "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfig", "name": "edge-0"}},
            "infrastructureRef": {"apiGroup": stack::FLEET_INFRASTRUCTURE.0, "kind": stack::FLEET_INFRASTRUCTURE.1, "name": "edge-0"}}});
    stack::create_all(&client, "fleet-0000", vec![bad, machine], 2)
        .await
        .unwrap();
    let configs: Api<K0sWorkerConfig> = Api::namespaced(client.clone(), "fleet-0000");
    let selector = JobSelector {
        cluster: Some("fleet-0000".into()),
        ..JobSelector::default()
    };
    wait_for("the dead letter", Duration::from_secs(30), || {
        let queue = queue.clone();
        let selector = selector.clone();
        async move {
            queue
                .dead_letters(&selector)
                .await
                .unwrap()
                .iter()
                .any(|d| d.job.object.name == "edge-0")
        }
    })
    .await;
    let dead = queue.dead_letters(&selector).await.unwrap();
    let letter = dead.iter().find(|d| d.job.object.name == "edge-0").unwrap();
    assert!(
        letter.error.contains("spec.downloadURL"),
        "{}",
        letter.error
    );
    let c = configs.get("edge-0").await.unwrap();
    let cond = drover_shared::conditions::get(
        &c.status.clone().unwrap().conditions,
        drover_shared::conditions::READY,
    )
    .cloned()
    .unwrap();
    assert!(
        cond.message.starts_with("spec.downloadURL"),
        "{}",
        cond.message
    );

    // Fix the input while no watcher runs, so only the replay can act.
    stack.stop_watcher().await.unwrap();
    configs
        .patch(
            "edge-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"downloadURL": "https://mirror.example.com/k0s"}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !ready(&configs.get("edge-0").await.unwrap()),
        "nothing ran it yet"
    );
    let replayed = queue
        .replay(&JobSelector {
            id: Some(letter.job.id.clone()),
            ..JobSelector::default()
        })
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    wait_for("the replayed config Ready", Duration::from_secs(30), || {
        let configs = configs.clone();
        async move { ready(&configs.get("edge-0").await.unwrap()) }
    })
    .await;
    // The replayed letter is gone. (Each change of the bad object had its
    // own dead letter, e.g. the Machine setting itself as owner; those stay
    // until replayed or purged.)
    assert!(
        queue
            .dead_letters(&selector)
            .await
            .unwrap()
            .iter()
            .all(|d| d.job.id != letter.job.id)
    );
    stack.start_watcher();
    stack.shutdown().await.unwrap();
}
