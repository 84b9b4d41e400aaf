//! The bootstrap handler against kube-sim: a management cluster with the
//! CRDs, a child cluster behind `<cluster>-kubeconfig`, and the handler
//! called directly with jobs (the queue and the watcher are tested apart;
//! the whole path is `tests/bootstrap_e2e.rs` at the workspace root).

use std::time::Duration;

use drover_loadtest::sim::{ClusterHandle, Sim, SimConfig};
use drover_render::{TokenRole, decode_join_token};
use drover_shared::jobs::{Cause, Change, Job, JobKind, ObjectRef};
use drover_workers::handlers::bootstrap::{Bootstrap, BootstrapSettings, plan};
use drover_workers::{Context, Handled, Handler, HandlerError};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBdrover\n-----END CERTIFICATE-----\n";
const TTL: Duration = Duration::from_secs(3600);

async fn client_for(h: &ClusterHandle) -> Client {
    drover_loadtest::stack::client_for(h).await.unwrap()
}

struct Env {
    _sim: Sim,
    mgmt: Client,
    child: Client,
    ctx: Context,
    handler: Bootstrap,
}

fn ar(kind: &str) -> ApiResource {
    let (group, version) = match kind {
        "Cluster" | "Machine" => ("cluster.x-k8s.io", "v1beta2"),
        _ => ("bootstrap.cluster.x-k8s.io", "v1beta2"),
    };
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

impl Env {
    async fn new() -> Self {
        let sim = Sim::new(SimConfig::default());
        let mgmt = client_for(&sim.add_cluster("mgmt").await.unwrap()).await;
        let child_handle = sim.add_cluster("c1-child").await.unwrap();
        let child = client_for(&child_handle).await;
        let crds: Api<CustomResourceDefinition> = Api::all(mgmt.clone());
        for (_, crd) in drover_shared::crds::all_crds() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        // kube-system exists in a fresh kube-sim cluster? Make sure.
        let _ = Api::<Namespace>::all(child.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "kube-system"}})).unwrap(),
            )
            .await;
        let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), "default");
        secrets
            .create(
                &PostParams::default(),
                &secret(
                    "c1-kubeconfig",
                    &[("value", child_handle.kubeconfig.as_str())],
                ),
            )
            .await
            .unwrap();
        secrets
            .create(
                &PostParams::default(),
                &secret("c1-ca", &[("tls.crt", CA_PEM), ("tls.key", "KEY")]),
            )
            .await
            .unwrap();
        let ctx = Context::new(mgmt.clone());
        Env {
            _sim: sim,
            mgmt,
            child,
            ctx,
            handler: Bootstrap::new(BootstrapSettings { token_ttl: TTL }),
        }
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.mgmt.clone(), "default", &ar(kind))
    }

    async fn create(&self, kind: &str, body: Value) -> DynamicObject {
        let obj: DynamicObject = serde_json::from_value(body).unwrap();
        self.api(kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    async fn get(&self, kind: &str, name: &str) -> DynamicObject {
        self.api(kind).get(name).await.unwrap()
    }

    /// A Cluster with an endpoint and, if `initialized`, the
    /// ControlPlaneInitialized condition.
    async fn cluster(&self, initialized: bool) {
        self.create(
            "Cluster",
            json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
                "metadata": {"name": "c1", "namespace": "default"},
                "spec": {"controlPlaneEndpoint": {"host": "10.0.0.1", "port": 6443}}}),
        )
        .await;
        if initialized {
            self.initialize().await;
        }
    }

    async fn initialize(&self) {
        let status = json!({"status": {"conditions": [{"type": "ControlPlaneInitialized",
            "status": "True", "reason": "Initialized", "message": "",
            "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
        self.api("Cluster")
            .patch_status("c1", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// A Machine and its config (kind `kind`, spec `spec`), owned by it.
    async fn machine_with_config(
        &self,
        name: &str,
        kind: &str,
        spec: Value,
        control_plane: bool,
    ) -> Job {
        let mut labels = json!({"cluster.x-k8s.io/cluster-name": "c1"});
        if control_plane {
            labels["cluster.x-k8s.io/control-plane"] = json!("");
        }
        let m = self
            .create(
                "Machine",
                json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
                "metadata": {"name": name, "namespace": "default", "labels": labels},
                "spec": {"clusterName": "c1", "version": "v1.33.1+k0s.0",
                    "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": kind, "name": name}},
                    "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachine", "name": name}}}),
            )
            .await;
        let cfg = self
            .create(
                kind,
                json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": kind,
                "metadata": {"name": name, "namespace": "default",
                    "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
                    "ownerReferences": [{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
                        "name": name, "uid": m.metadata.uid.clone().unwrap(), "controller": true}]},
                "spec": spec}),
            )
            .await;
        job(kind, &cfg, Change::Added)
    }

    async fn run(&self, job: &Job) -> Result<Handled, HandlerError> {
        self.handler.handle(&self.ctx, job).await
    }

    async fn tokens(&self) -> Vec<Secret> {
        Api::<Secret>::namespaced(self.child.clone(), "kube-system")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some("bootstrap.kubernetes.io/token"))
            .collect()
    }

    async fn data_secret(&self, name: &str) -> Option<Secret> {
        Api::<Secret>::namespaced(self.mgmt.clone(), "default")
            .get_opt(name)
            .await
            .unwrap()
    }
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn job(kind: &str, obj: &DynamicObject, change: Change) -> Job {
    Job {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Bootstrap,
        object: ObjectRef {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
            kind: kind.into(),
            namespace: Some("default".into()),
            name: obj.metadata.name.clone().unwrap(),
            uid: obj.metadata.uid.clone().unwrap(),
        },
        cluster: Some("c1".into()),
        cause: Cause {
            change,
            generation: obj.metadata.generation,
            resource_version: obj.metadata.resource_version.clone().unwrap_or_default(),
            via: None,
        },
        attempt: 0,
        trace: None,
    }
}

fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The `write_files` entry at `path` of cloud-config user data.
fn written_file(value: &[u8], path: &str) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).unwrap();
    let body = text
        .strip_prefix("## template: jinja\n#cloud-config\n")
        .unwrap();
    let doc: Value = serde_saphyr::from_str(body).unwrap();
    doc["write_files"].as_array()?.iter().find_map(|f| {
        (f["path"] == path).then(|| {
            (
                f["content"].as_str().unwrap().to_owned(),
                f["permissions"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

#[tokio::test]
async fn a_worker_config_gets_its_secret_status_and_a_token_in_the_child_cluster() {
    let env = Env::new().await;
    env.cluster(true).await;
    let job = env
        .machine_with_config("md-0-a", "K0sWorkerConfig", json!({}), false)
        .await;

    let out = env.run(&job).await.unwrap();
    // Not joined yet: run again to keep the token alive.
    assert_eq!(out, Handled::RunAfter(TTL / 3));

    let s = env.data_secret("md-0-a").await.expect("bootstrap Secret");
    assert_eq!(s.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["cluster.x-k8s.io/cluster-name"], "c1");
    let owner = &s.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "K0sWorkerConfig");
    assert_eq!(Some(owner.uid.clone()), Some(job.object.uid.clone()));
    assert_eq!(owner.controller, Some(true));
    let data = s.data.clone().unwrap();
    assert_eq!(data["format"].0, b"cloud-config");

    let cfg = env.get("K0sWorkerConfig", "md-0-a").await;
    let st = &cfg.data["status"];
    assert_eq!(st["dataSecretName"], "md-0-a");
    assert_eq!(st["initialization"]["dataSecretCreated"], true);
    assert_eq!(st["ready"], true);
    assert_eq!(condition(&cfg, "Ready").unwrap()["status"], "True");
    let dsa = condition(&cfg, "DataSecretAvailable").unwrap();
    assert_eq!(dsa["reason"], "Available");

    // The token in the child cluster and the join token that carries it.
    let tokens = env.tokens().await;
    assert_eq!(tokens.len(), 1);
    let t = &tokens[0];
    let td = t.data.clone().unwrap();
    let text = |k: &str| String::from_utf8(td[k].0.clone()).unwrap();
    assert_eq!(text("usage-bootstrap-authentication"), "true");
    assert_eq!(text("usage-bootstrap-api-worker-calls"), "true");
    let left = plan::time_left(&text("expiration"), jiff::Timestamp::now()).unwrap();
    assert!(
        left <= TTL && left > TTL - Duration::from_secs(120),
        "{left:?}"
    );
    assert_eq!(
        t.metadata.labels.clone().unwrap()[plan::TOKEN_CONFIG_UID_LABEL],
        job.object.uid
    );
    let (join, mode) = written_file(&data["value"].0, "/etc/k0s.token").expect("token file");
    assert_eq!(mode, "0600");
    let kc = decode_join_token(&join).unwrap();
    assert_eq!(kc.server, "https://10.0.0.1:6443");
    assert_eq!(kc.user, TokenRole::Worker.user());
    assert_eq!(kc.ca_cert, CA_PEM.as_bytes());
    assert_eq!(
        kc.token,
        format!("{}.{}", text("token-id"), text("token-secret"))
    );

    // One-shot: running again regenerates nothing and mints nothing.
    let rv = s.metadata.resource_version.clone();
    let again = job_for(&env, "K0sWorkerConfig", "md-0-a", Change::Modified).await;
    // Again after a third of the lifetime (less the seconds since minting):
    // the data Secret's annotation says when, without asking the child.
    match env.run(&again).await.unwrap() {
        Handled::RunAfter(d) => assert!(
            d <= TTL / 3 && d > TTL / 3 - Duration::from_secs(30),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    let annotations = env
        .data_secret("md-0-a")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(
        annotations[plan::TOKEN_EXPIRATION_ANNOTATION],
        text("expiration")
    );
    assert_eq!(
        env.data_secret("md-0-a")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
    assert_eq!(env.tokens().await.len(), 1);

    // The Secret deleted: generated again, with the same (still valid) token.
    Api::<Secret>::namespaced(env.mgmt.clone(), "default")
        .delete("md-0-a", &DeleteParams::default())
        .await
        .unwrap();
    env.run(&again).await.unwrap();
    let s2 = env.data_secret("md-0-a").await.expect("regenerated");
    let (join2, _) = written_file(&s2.data.unwrap()["value"].0, "/etc/k0s.token").unwrap();
    assert_eq!(decode_join_token(&join2).unwrap().token, kc.token);
    assert_eq!(env.tokens().await.len(), 1);

    // The config deleted: its token is revoked.
    let gone = job_for(&env, "K0sWorkerConfig", "md-0-a", Change::Deleted).await;
    env.api("K0sWorkerConfig")
        .delete("md-0-a", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(env.run(&gone).await.unwrap(), Handled::Done);
    assert!(env.tokens().await.is_empty());
}

async fn job_for(env: &Env, kind: &str, name: &str, change: Change) -> Job {
    job(kind, &env.get(kind, name).await, change)
}

#[tokio::test]
async fn workers_wait_for_the_control_plane_then_generate() {
    let env = Env::new().await;
    env.cluster(false).await;
    let job = env
        .machine_with_config("md-0-b", "K0sWorkerConfig", json!({}), false)
        .await;
    assert_eq!(
        env.run(&job).await.unwrap(),
        Handled::RunAfter(plan::WATCHED_WAIT)
    );
    let cfg = env.get("K0sWorkerConfig", "md-0-b").await;
    let dsa = condition(&cfg, "DataSecretAvailable").unwrap();
    assert_eq!(dsa["status"], "False");
    assert_eq!(dsa["reason"], plan::REASON_WAITING_FOR_CONTROL_PLANE);
    assert_eq!(condition(&cfg, "Ready").unwrap()["status"], "False");
    assert!(env.data_secret("md-0-b").await.is_none());
    assert!(
        env.tokens().await.is_empty(),
        "no token before the gate opens"
    );

    env.initialize().await;
    env.run(&job).await.unwrap();
    assert!(env.data_secret("md-0-b").await.is_some());
}

#[tokio::test]
async fn a_missing_content_from_is_retried_then_resolves_when_the_secret_appears() {
    let env = Env::new().await;
    env.cluster(true).await;
    let spec = json!({"files": [{"path": "/etc/app.conf",
        "contentFrom": {"secretRef": {"name": "app-conf", "key": "conf"}}}]});
    let job = env
        .machine_with_config("md-0-c", "K0sWorkerConfig", spec, false)
        .await;
    let e = env.run(&job).await.unwrap_err();
    assert!(
        e.is_retryable(),
        "bounded retries, not an immediate dead letter"
    );
    assert!(e.to_string().contains("spec.files[0].contentFrom"), "{e}");
    let cfg = env.get("K0sWorkerConfig", "md-0-c").await;
    let ready = condition(&cfg, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.files[0].contentFrom: secret \"app-conf\" not found"),
        "{ready}"
    );
    assert_eq!(
        condition(&cfg, "DataSecretAvailable").unwrap()["reason"],
        plan::REASON_GENERATION_FAILED
    );

    Api::<Secret>::namespaced(env.mgmt.clone(), "default")
        .create(
            &PostParams::default(),
            &secret("app-conf", &[("conf", "x=1")]),
        )
        .await
        .unwrap();
    env.run(&job).await.unwrap();
    let s = env.data_secret("md-0-c").await.unwrap();
    let (content, _) = written_file(&s.data.unwrap()["value"].0, "/etc/app.conf").unwrap();
    assert_eq!(content, "x=1");
}

#[tokio::test]
async fn bad_input_is_not_retried_and_names_the_field() {
    let env = Env::new().await;
    env.cluster(true).await;
    let job = env
        .machine_with_config(
            "md-0-d",
            "K0sWorkerConfig",
            json!({"downloadURL": "ftp://example.com/k0s"}),
            false,
        )
        .await;
    let e = env.run(&job).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("spec.downloadURL"), "{e}");
    let cfg = env.get("K0sWorkerConfig", "md-0-d").await;
    let msg = condition(&cfg, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("spec.downloadURL: "), "{msg}");
    assert!(env.data_secret("md-0-d").await.is_none());
}

#[tokio::test]
async fn paused_configs_are_left_alone() {
    let env = Env::new().await;
    env.cluster(true).await;
    let m = env
        .machine_with_config("md-0-e", "K0sWorkerConfig", json!({}), false)
        .await;
    env.api("K0sWorkerConfig")
        .patch(
            "md-0-e",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"cluster.x-k8s.io/paused": ""}}})),
        )
        .await
        .unwrap();
    assert_eq!(env.run(&m).await.unwrap(), Handled::Done);
    let cfg = env.get("K0sWorkerConfig", "md-0-e").await;
    assert_eq!(condition(&cfg, "Paused").unwrap()["status"], "True");
    assert!(env.data_secret("md-0-e").await.is_none());
}

#[tokio::test]
async fn expired_drover_tokens_are_deleted_and_others_kept() {
    let env = Env::new().await;
    env.cluster(true).await;
    let tokens: Api<Secret> = Api::namespaced(env.child.clone(), "kube-system");
    for (name, managed) in [
        ("bootstrap-token-old001", true),
        ("bootstrap-token-kept01", false),
    ] {
        let mut s = secret(
            name,
            &[
                ("token-id", &name[16..]),
                ("token-secret", "0123456789abcdef"),
                ("expiration", "2020-01-01T00:00:00Z"),
            ],
        );
        s.metadata.namespace = Some("kube-system".into());
        s.type_ = Some("bootstrap.kubernetes.io/token".into());
        if managed {
            s.metadata.labels = Some(
                [(
                    plan::MANAGED_BY_LABEL.to_owned(),
                    plan::MANAGED_BY.to_owned(),
                )]
                .into(),
            );
        }
        tokens.create(&PostParams::default(), &s).await.unwrap();
    }
    let job = env
        .machine_with_config("md-0-f", "K0sWorkerConfig", json!({}), false)
        .await;
    env.run(&job).await.unwrap();
    let names: Vec<String> = env
        .tokens()
        .await
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(
        !names.contains(&"bootstrap-token-old001".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"bootstrap-token-kept01".to_owned()),
        "{names:?}"
    );
    assert_eq!(names.len(), 2, "the kept one and the new one: {names:?}");
}

#[tokio::test]
async fn controllers_init_with_certificates_and_join_with_a_controller_token() {
    let env = Env::new().await;
    env.cluster(false).await;
    let spec = json!({"version": "v1.33.1+k0s.0"});
    let first = env
        .machine_with_config("cp-0", "K0sControllerConfig", spec.clone(), true)
        .await;
    // Created a second later: a strict "oldest" (creation, then name).
    let second = env
        .machine_with_config("cp-1", "K0sControllerConfig", spec, true)
        .await;

    // The joining controller waits for a running controller with an address.
    assert_eq!(
        env.run(&second).await.unwrap(),
        Handled::RunAfter(plan::POLLED_WAIT)
    );
    let cfg = env.get("K0sControllerConfig", "cp-1").await;
    assert_eq!(
        condition(&cfg, "DataSecretAvailable").unwrap()["reason"],
        plan::REASON_WAITING_FOR_INFRASTRUCTURE
    );
    assert!(
        env.data_secret("cp-1").await.is_none(),
        "no empty Secret (k0smotron §10.2)"
    );

    // The init node: certificates, keys 0600, no token.
    assert_eq!(env.run(&first).await.unwrap(), Handled::Done);
    let s = env.data_secret("cp-0").await.unwrap();
    let value = s.data.unwrap()["value"].0.clone();
    let (ca, _) = written_file(&value, "/var/lib/k0s/pki/ca.crt").unwrap();
    assert_eq!(ca, CA_PEM);
    let (_, key_mode) = written_file(&value, "/var/lib/k0s/pki/ca.key").unwrap();
    assert_eq!(key_mode, "0600");
    assert!(written_file(&value, "/etc/k0s.token").is_none());
    assert!(env.tokens().await.is_empty());

    // The first controller gets an address: the second joins through it.
    env.api("Machine")
        .patch_status(
            "cp-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}]}}),
            ),
        )
        .await
        .unwrap();
    env.run(&second).await.unwrap();
    let s = env.data_secret("cp-1").await.unwrap();
    let (join, _) = written_file(&s.data.unwrap()["value"].0, "/etc/k0s.token").unwrap();
    let kc = decode_join_token(&join).unwrap();
    assert_eq!(kc.server, "https://10.0.0.10:9443");
    assert_eq!(kc.user, TokenRole::Controller.user());
    let tokens = env.tokens().await;
    assert_eq!(tokens.len(), 1);
    let td = tokens[0].data.clone().unwrap();
    assert_eq!(td["usage-controller-join"].0, b"true");
}

#[tokio::test]
async fn a_controller_config_without_any_version_is_bad_input() {
    let env = Env::new().await;
    env.cluster(false).await;
    let job = env
        .machine_with_config("cp-x", "K0sControllerConfig", json!({}), true)
        .await;
    // The Machine carries a version: it is used.
    env.run(&job).await.unwrap();
    assert!(env.data_secret("cp-x").await.is_some());

    let job = env
        .machine_with_config("cp-y", "K0sControllerConfig", json!({}), true)
        .await;
    env.api("Machine")
        .patch(
            "cp-y",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/spec/version"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    let e = env.run(&job).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("spec.version"), "{e}");
}
