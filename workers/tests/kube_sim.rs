//! The worker against kube-sim and the embedded queue: the stand-in
//! handlers on drover's real kinds, stale jobs, and child cluster clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_loadtest::sim::{ClusterHandle, Sim, SimConfig};
use drover_queue::JobQueue as _;
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_shared::api::bootstrap::{K0sWorkerConfig, K0sWorkerConfigSpec};
use drover_shared::jobs::{Cause, Change, Job, JobKind, ObjectRef};
use drover_telemetry::{Health, Registry};
use drover_workers::children::ChildClients;
use drover_workers::{PoolConfig, StandIn, WorkerConfig, WorkerMetrics};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn client_for(h: &ClusterHandle) -> Client {
    let kc = Kubeconfig::from_yaml(&h.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn mgmt() -> (Sim, Client) {
    let sim = Sim::new(SimConfig::default());
    let h = sim.add_cluster("mgmt").await.unwrap();
    let c = client_for(&h).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    for (_, crd) in drover_shared::crds::all_crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    (sim, c)
}

struct Worker {
    queue: Arc<EmbeddedQueue>,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), drover_workers::WorkerError>>,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(client: Client, stand_in: StandIn) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(
            EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap(),
        );
        let metrics = WorkerMetrics::register(&mut Registry::default());
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let config = WorkerConfig {
            pools: BTreeMap::from([(JobKind::Bootstrap, PoolConfig { concurrency: 2 })]),
            stand_in: Some(stand_in),
            shutdown_deadline: Duration::from_secs(5),
            lease_renew_every: Duration::from_secs(20),
            ..WorkerConfig::default()
        };
        let task = tokio::spawn(drover_workers::run(
            client,
            queue.clone(),
            config,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        Self {
            queue,
            metrics,
            health,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Publishes `job` and waits until the worker settled one more job.
    async fn run(&self, job: &Job, outcome: &str) {
        let before = self.metrics.outcome_count(JobKind::Bootstrap, outcome);
        self.queue.publish(job).await.unwrap();
        eventually(&format!("job {} ends {outcome}", job.id), async || {
            self.metrics.outcome_count(JobKind::Bootstrap, outcome) > before
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn job_for(wc: &K0sWorkerConfig, id: &str) -> Job {
    Job {
        id: id.into(),
        kind: JobKind::Bootstrap,
        object: ObjectRef {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
            kind: "K0sWorkerConfig".into(),
            namespace: wc.metadata.namespace.clone(),
            name: wc.metadata.name.clone().unwrap(),
            uid: wc.metadata.uid.clone().unwrap(),
        },
        cluster: Some("c1".into()),
        cause: Cause {
            change: Change::Modified,
            generation: wc.metadata.generation,
            resource_version: wc.metadata.resource_version.clone().unwrap(),
            via: None,
        },
        attempt: 0,
        trace: None,
    }
}

async fn create(api: &Api<K0sWorkerConfig>, name: &str) -> K0sWorkerConfig {
    let wc = K0sWorkerConfig::new(name, K0sWorkerConfigSpec::default());
    api.create(&PostParams::default(), &wc).await.unwrap()
}

/// The `Handled` condition of `wc`, as JSON.
fn handled(wc: &K0sWorkerConfig) -> Option<serde_json::Value> {
    let v = serde_json::to_value(wc).unwrap();
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Handled")
        .cloned()
}

#[tokio::test]
async fn noop_sets_the_handled_condition_with_the_generation() {
    let (_sim, c) = mgmt().await;
    let api: Api<K0sWorkerConfig> = Api::namespaced(c.clone(), "default");
    let wc = create(&api, "w1").await;
    // Another condition is kept.
    let other = json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "Waiting", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"
    }]}});
    api.patch_status("w1", &PatchParams::default(), &Patch::Merge(&other))
        .await
        .unwrap();
    let w = Worker::start(c.clone(), StandIn::Noop);
    w.run(&job_for(&wc, "job-1"), "done").await;
    let now = api.get("w1").await.unwrap();
    let cond = handled(&now).expect("the Handled condition is set");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "NoopHandled");
    assert_eq!(cond["message"], "handled by job job-1");
    assert_eq!(
        cond["observedGeneration"],
        json!(wc.metadata.generation.unwrap())
    );
    let types: Vec<_> = now
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.r#type.clone())
        .collect();
    assert_eq!(types, ["Handled", "Ready"]);
    eventually("queue and kube ready", async || w.health.ready().is_ok()).await;

    // The same generation again: nothing written.
    let mut again = job_for(&now, "job-2");
    again.cause.resource_version = "again".into();
    w.run(&again, "done").await;
    let unchanged = api.get("w1").await.unwrap();
    assert_eq!(
        unchanged.metadata.resource_version,
        now.metadata.resource_version
    );

    // A spec change (generation 2) is handled again.
    let spec = json!({"spec": {"version": "v1.33.1+k0s.0"}});
    let changed = api
        .patch("w1", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    let generation = changed.metadata.generation.unwrap();
    assert!(generation > wc.metadata.generation.unwrap());
    w.run(&job_for(&changed, "job-3"), "done").await;
    let cond = handled(&api.get("w1").await.unwrap()).unwrap();
    assert_eq!(cond["observedGeneration"], json!(generation));
    assert_eq!(cond["message"], "handled by job job-3");
    w.stop().await;
}

#[tokio::test]
async fn stale_jobs_are_done_without_writing() {
    let (_sim, c) = mgmt().await;
    let api: Api<K0sWorkerConfig> = Api::namespaced(c.clone(), "default");
    let wc = create(&api, "w1").await;
    let w = Worker::start(c.clone(), StandIn::Noop);

    // Another uid: the object was deleted and made again.
    let mut replaced = job_for(&wc, "job-old-uid");
    replaced.object.uid = "some-other-uid".into();
    w.run(&replaced, "done").await;
    let after = api.get("w1").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        wc.metadata.resource_version
    );
    assert!(handled(&after).is_none());

    // Gone.
    let mut gone = job_for(&wc, "job-gone");
    gone.object.name = "deleted-long-ago".into();
    gone.cause.resource_version = "gone".into();
    w.run(&gone, "done").await;

    // Bad input: a kind no CRD serves is dead-lettered naming the field.
    let mut bad = job_for(&wc, "job-bad");
    bad.object.kind = "Widget".into();
    bad.cause.resource_version = "bad".into(); // not a duplicate of the others
    w.run(&bad, "dead_letter").await;
    let dead = w
        .queue
        .dead_letters(&drover_queue::JobSelector::all())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains("object.apiVersion/kind"),
        "{}",
        dead[0].error
    );
    assert_eq!(w.metrics.outcome_count(JobKind::Bootstrap, "done"), 2);
    w.stop().await;
}

#[tokio::test]
async fn echo_waits_then_sets_its_condition_and_emits_an_event() {
    let (_sim, c) = mgmt().await;
    let api: Api<K0sWorkerConfig> = Api::namespaced(c.clone(), "default");
    let wc = create(&api, "w1").await;
    let w = Worker::start(
        c.clone(),
        StandIn::Echo {
            delay: Duration::from_millis(300),
        },
    );
    let started = Instant::now();
    w.run(&job_for(&wc, "job-echo"), "done").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let cond = handled(&api.get("w1").await.unwrap()).unwrap();
    assert_eq!(cond["reason"], "EchoHandled");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "default");
    eventually("the EchoHandled event", async || {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("EchoHandled"))
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn without_a_stand_in_a_kind_without_a_handler_is_refused() {
    let (_sim, c) = mgmt().await;
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(
        EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let config = WorkerConfig {
        pools: BTreeMap::from([(JobKind::RemoteMachine, PoolConfig { concurrency: 1 })]),
        ..WorkerConfig::default()
    };
    let e = drover_workers::run(
        c,
        queue,
        config,
        WorkerMetrics::register(&mut Registry::default()),
        Health::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("remote-machine"), "{e}");
}

async fn put_kubeconfig(secrets: &Api<Secret>, name: &str, value: &str) -> String {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "value".to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    let written = match secrets.get_opt(name).await.unwrap() {
        None => secrets.create(&PostParams::default(), &s).await.unwrap(),
        Some(_) => secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&s))
            .await
            .unwrap(),
    };
    written.metadata.resource_version.unwrap()
}

async fn make_namespace(c: &Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn sees(c: &Client, namespace: &str) -> bool {
    Api::<Namespace>::all(c.clone())
        .get_opt(namespace)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn child_clients_come_from_the_kubeconfig_secret_and_follow_rotation() {
    let sim = Sim::new(SimConfig::default());
    let m = sim.add_cluster("mgmt").await.unwrap();
    let mgmt = client_for(&m).await;
    let one = sim.add_cluster("child-one").await.unwrap();
    let two = sim.add_cluster("child-two").await.unwrap();
    make_namespace(&client_for(&one).await, "only-in-one").await;
    make_namespace(&client_for(&two).await, "only-in-two").await;
    let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), "default");

    // No Secret yet: retryable (CAPI writes it later).
    let fresh = ChildClients::new(mgmt.clone(), Duration::ZERO);
    let Err(e) = fresh.get("default", "c1").await else {
        panic!("a client without a Secret")
    };
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("c1-kubeconfig"), "{e}");

    let rv1 = put_kubeconfig(&secrets, "c1-kubeconfig", &one.kubeconfig).await;
    let client = fresh.get("default", "c1").await.unwrap();
    assert!(sees(&client, "only-in-one").await);
    assert_eq!(fresh.cached_version("default", "c1"), Some(rv1.clone()));

    // A long TTL keeps the cached client until a 401 drops it.
    let cached = ChildClients::new(mgmt.clone(), Duration::from_secs(3600));
    assert!(sees(&cached.get("default", "c1").await.unwrap(), "only-in-one").await);

    // Rotation: the Secret now points at another cluster.
    let rv2 = put_kubeconfig(&secrets, "c1-kubeconfig", &two.kubeconfig).await;
    assert_ne!(rv1, rv2);
    let client = fresh.get("default", "c1").await.unwrap();
    assert!(
        sees(&client, "only-in-two").await,
        "the short TTL notices the rotation"
    );
    assert_eq!(fresh.cached_version("default", "c1"), Some(rv2.clone()));

    assert_eq!(cached.cached_version("default", "c1"), Some(rv1));
    assert!(sees(&cached.get("default", "c1").await.unwrap(), "only-in-one").await);
    let unauthorized = kube::Error::Api(
        kube::core::Status::failure("Unauthorized", "Unauthorized")
            .with_code(401)
            .boxed(),
    );
    cached.note_error("default", "c1", &unauthorized);
    assert_eq!(cached.cached_version("default", "c1"), None);
    assert!(sees(&cached.get("default", "c1").await.unwrap(), "only-in-two").await);

    // A Secret that is not a kubeconfig is bad input naming the field.
    put_kubeconfig(&secrets, "c2-kubeconfig", "not: [a kubeconfig").await;
    let Err(e) = fresh.get("default", "c2").await else {
        panic!("a client from a broken Secret")
    };
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains(".data.value"), "{e}");
}
