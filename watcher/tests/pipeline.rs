//! The watcher against kube-sim over HTTPS and the embedded queue: objects
//! are written through a real `kube::Client`, jobs are read back with
//! `claim`. Publishes run one at a time (`max_publishes_in_flight: 1`), so
//! jobs arrive in the order of their watch events; "no job" is checked by
//! writing a later marker change on the same watch, waiting for its job,
//! and then finding nothing else queued.

use std::sync::Arc;
use std::time::Duration;

use drover_loadtest::sim::{ClusterHandle, Sim, SimConfig};
use drover_queue::JobQueue;
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::model::Outcome;
use drover_shared::jobs::{Change, Job, JobKind};
use drover_telemetry::{Health, Registry};
use drover_watcher::{ObjKind, WatcherConfig, WatcherMetrics};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    _sim: Sim,
    handle: Arc<ClusterHandle>,
    client: Client,
    queue: Arc<EmbeddedQueue>,
    metrics: WatcherMetrics,
    health: Health,
    shutdown: CancellationToken,
    watcher: Option<tokio::task::JoinHandle<Result<(), drover_watcher::WatcherError>>>,
    _dir: tempfile::TempDir,
}

async fn sim(config: SimConfig) -> (Sim, Arc<ClusterHandle>, Client) {
    let sim = Sim::new(config);
    let handle = sim.add_cluster("mgmt").await.expect("cluster starts");
    let kc = Kubeconfig::from_yaml(&handle.kubeconfig).expect("kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig usable");
    let client = Client::try_from(cfg).expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in drover_shared::crds::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRDs install");
    }
    (sim, handle, client)
}

impl Harness {
    /// A sim with the CRDs, `setup` run against it, then the watcher.
    async fn start<F, Fut>(sim_config: SimConfig, config: WatcherConfig, setup: F) -> Self
    where
        F: FnOnce(Client, Arc<ClusterHandle>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let (sim, handle, client) = sim(sim_config).await;
        setup(client.clone(), handle.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(
            EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap(),
        );
        let mut registry = Registry::default();
        let metrics = WatcherMetrics::register(&mut registry);
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(drover_watcher::run(
            client.clone(),
            queue.clone(),
            WatcherConfig {
                max_publishes_in_flight: 1,
                resync: None,
                ..config
            },
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        let h = Self {
            _sim: sim,
            handle,
            client,
            queue,
            metrics,
            health,
            shutdown,
            watcher: Some(watcher),
            _dir: dir,
        };
        assert!(
            poll(|| async { h.health.ready().is_ok() }).await,
            "watches ready: {:?}",
            h.health.ready()
        );
        h
    }

    /// Claims jobs of `kind` (finishing each) until `want` holds for the
    /// jobs seen so far, or the deadline; returns them.
    async fn jobs_until(&self, kind: JobKind, want: impl Fn(&[Job]) -> bool) -> Vec<Job> {
        let mut seen = Vec::new();
        let end = tokio::time::Instant::now() + DEADLINE;
        while !want(&seen) && tokio::time::Instant::now() < end {
            for claim in self
                .queue
                .claim(kind, 100, Duration::from_millis(200))
                .await
                .unwrap()
            {
                seen.push(claim.job.clone());
                self.queue.finish(claim, Outcome::Done).await.unwrap();
            }
        }
        seen
    }

    /// Jobs of `kind` until one for `name` with `change` arrives.
    async fn jobs_through(&self, kind: JobKind, name: &str, change: Change) -> Vec<Job> {
        let jobs = self
            .jobs_until(kind, |jobs| {
                jobs.iter()
                    .any(|j| j.object.name == name && j.cause.change == change)
            })
            .await;
        assert!(
            jobs.iter()
                .any(|j| j.object.name == name && j.cause.change == change),
            "a {change:?} job for {name}; got {}",
            describe(&jobs)
        );
        jobs
    }

    /// Whatever of `kind` is queued now.
    async fn queued(&self, kind: JobKind) -> Vec<Job> {
        let mut jobs = Vec::new();
        for claim in self
            .queue
            .claim(kind, 100, Duration::from_millis(300))
            .await
            .unwrap()
        {
            jobs.push(claim.job.clone());
            self.queue.finish(claim, Outcome::Done).await.unwrap();
        }
        jobs
    }

    fn events(&self, kind: ObjKind, event: &'static str) -> u64 {
        self.metrics
            .events
            .get_or_create(&[("kind", kind.label()), ("event", event)])
            .get()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(DEADLINE, self.watcher.take().unwrap())
            .await
            .expect("run returns after shutdown")
            .expect("no panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn describe(jobs: &[Job]) -> String {
    let parts: Vec<String> = jobs
        .iter()
        .map(|j| {
            let via = j
                .cause
                .via
                .as_ref()
                .map(|v| format!(" via {}/{}", v.kind, v.name))
                .unwrap_or_default();
            format!(
                "{}/{} {:?}{via}",
                j.object.kind, j.object.name, j.cause.change
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

async fn poll<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn api(client: &Client, kind: ObjKind, ns: &str) -> Api<DynamicObject> {
    let (group, version) = kind
        .api_version()
        .rsplit_once('/')
        .unwrap_or(("", kind.api_version()));
    let plural = format!("{}s", kind.name().to_ascii_lowercase());
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.name()),
        &plural,
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create(client: &Client, kind: ObjKind, ns: &str, body: Value) -> DynamicObject {
    let mut body = body;
    body["apiVersion"] = kind.api_version().into();
    body["kind"] = kind.name().into();
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    api(client, kind, ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", kind.name()))
}

async fn patch(client: &Client, kind: ObjKind, ns: &str, name: &str, body: Value) {
    api(client, kind, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .unwrap_or_else(|e| panic!("patch {}: {e}", kind.name()));
}

async fn patch_status(client: &Client, kind: ObjKind, ns: &str, name: &str, status: Value) {
    api(client, kind, ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .unwrap_or_else(|e| panic!("patch status {}: {e}", kind.name()));
}

fn worker_config(name: &str, cluster: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"cluster.x-k8s.io/cluster-name": cluster}}, "spec": spec})
}

fn capi_cluster(name: &str, paused: bool) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "paused": paused,
        "controlPlaneEndpoint": {"host": "cp.example", "port": 6443}
    }})
}

fn names(jobs: &[Job]) -> Vec<(String, Change)> {
    let mut v: Vec<_> = jobs
        .iter()
        .map(|j| (j.object.name.clone(), j.cause.change))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn changes_become_jobs_and_status_writes_do_not() {
    let h = Harness::start(
        SimConfig::default(),
        WatcherConfig::default(),
        |c, _| async move {
            create(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                worker_config("before", "c1", json!({})),
            )
            .await;
        },
    )
    .await;
    let c = &h.client;
    // Listed at startup: one Added job, with the cluster and a v7 id.
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "before", Change::Added)
        .await;
    let job = &jobs[0];
    assert_eq!(job.cluster.as_deref(), Some("c1"));
    assert_eq!(job.object.kind, "K0sWorkerConfig");
    assert!(!job.object.uid.is_empty());
    assert_eq!(uuid::Uuid::parse_str(&job.id).unwrap().get_version_num(), 7);

    create(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        worker_config("w1", "c1", json!({})),
    )
    .await;
    h.jobs_through(JobKind::Bootstrap, "w1", Change::Added)
        .await;

    // A status-only write, then a marker change on the same watch.
    patch_status(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        "w1",
        json!({"dataSecretName": "w1"}),
    )
    .await;
    patch(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        "before",
        json!({"spec": {"version": "v1.30.0+k0s.0"}}),
    )
    .await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "before", Change::Modified)
        .await;
    assert_eq!(
        names(&jobs),
        [("before".to_string(), Change::Modified)],
        "{}",
        describe(&jobs)
    );
    assert!(h.queued(JobKind::Bootstrap).await.is_empty());

    // A spec change of w1 is a job.
    patch(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        "w1",
        json!({"spec": {"version": "v1.31.0+k0s.0"}}),
    )
    .await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "w1", Change::Modified)
        .await;
    assert_eq!(jobs.len(), 1, "{}", describe(&jobs));
    assert!(jobs[0].cause.generation >= Some(2));

    api(c, ObjKind::K0sWorkerConfig, "default")
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    h.jobs_through(JobKind::Bootstrap, "w1", Change::Deleted)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn machines_and_cluster_initialization_wake_bootstrap_configs() {
    let h = Harness::start(
        SimConfig::default(),
        WatcherConfig::default(),
        |c, _| async move {
            create(
                &c,
                ObjKind::CapiCluster,
                "default",
                capi_cluster("c1", false),
            )
            .await;
            create(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                worker_config("waiting", "c1", json!({})),
            )
            .await;
            create(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                worker_config("ready", "c1", json!({})),
            )
            .await;
            patch_status(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                "ready",
                json!({"dataSecretName": "ready", "initialization": {"dataSecretCreated": true}}),
            )
            .await;
        },
    )
    .await;
    let c = &h.client;
    let jobs = h.jobs_until(JobKind::Bootstrap, |j| j.len() >= 2).await;
    assert_eq!(
        names(&jobs),
        [
            ("ready".to_string(), Change::Added),
            ("waiting".to_string(), Change::Added)
        ]
    );

    // A Machine naming a config still waiting for its data: a related job
    // for it, via the Machine. (A config that has its data hears nothing
    // of its Machine: the mapping's unit tests.)
    create(c, ObjKind::Machine, "default", json!({"metadata": {"name": "m1"}, "spec": {
        "clusterName": "c1",
        "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfig", "name": "waiting"}},
        "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachine", "name": "m1"}
    }})).await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "waiting", Change::Related)
        .await;
    let via = jobs[0].cause.via.as_ref().expect("via");
    assert_eq!((via.kind.as_str(), via.name.as_str()), ("Machine", "m1"));

    // The control plane initializes: only the waiting config hears of it.
    patch_status(
        c,
        ObjKind::CapiCluster,
        "default",
        "c1",
        json!({"initialization": {"controlPlaneInitialized": true}}),
    )
    .await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "waiting", Change::Related)
        .await;
    assert_eq!(
        names(&jobs),
        [("waiting".to_string(), Change::Related)],
        "{}",
        describe(&jobs)
    );
    assert_eq!(jobs[0].cause.via.as_ref().unwrap().kind, "Cluster");
    assert!(h.queued(JobKind::Bootstrap).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_referenced_secret_changing_wakes_the_config() {
    let h = Harness::start(SimConfig::default(), WatcherConfig::default(), |c, _| async move {
        let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
        secrets
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": "extra-files"}, "stringData": {"a": "1"}})).unwrap())
            .await
            .unwrap();
        create(&c, ObjKind::K0sWorkerConfig, "default", worker_config("w1", "c1", json!({
            "files": [{"path": "/etc/a", "contentFrom": {"secretRef": {"name": "extra-files", "key": "a"}}}]
        }))).await;
    })
    .await;
    h.jobs_through(JobKind::Bootstrap, "w1", Change::Added)
        .await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    secrets
        .patch(
            "extra-files",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"a": "2"}})),
        )
        .await
        .unwrap();
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "w1", Change::Related)
        .await;
    let via = jobs[0].cause.via.as_ref().unwrap();
    assert_eq!(
        (via.kind.as_str(), via.name.as_str()),
        ("Secret", "extra-files")
    );
    h.stop().await;
}

/// Forces `kind`'s watch to relist `times` more times: move the
/// resourceVersion on elsewhere and forget the history, so the next resume
/// (watches are cut often) is 410 Gone. Repeated until the watcher has relisted.
async fn force_relists(h: &Harness, kind: ObjKind, times: u64) {
    let target = h.events(kind, "init_done") + times;
    h.handle
        .faults
        .set_watch_drop_after(Some(Duration::from_millis(200)));
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(h.client.clone(), "default");
    let relisted = poll(|| async {
        let tick = serde_json::from_value(json!({"metadata": {"generateName": "tick-"}})).unwrap();
        config_maps
            .create(&PostParams::default(), &tick)
            .await
            .unwrap();
        h.handle.cluster.expire_history();
        h.events(kind, "init_done") >= target
    })
    .await;
    h.handle.faults.set_watch_drop_after(None);
    assert!(
        relisted,
        "the {} watch relisted {times} times",
        kind.label()
    );
}

#[tokio::test]
async fn a_forced_relist_publishes_only_what_changed() {
    // No bookmarks: a watch's resume point moves only with its own events,
    // so forgetting the history makes its next resume 410.
    let sim_config = SimConfig {
        history_limit: 5,
        bookmark_interval: Duration::from_secs(3600),
        ..SimConfig::default()
    };
    let h = Harness::start(
        sim_config,
        WatcherConfig::default(),
        |c, handle| async move {
            // Cut every watch often, from the first one on.
            handle
                .faults
                .set_watch_drop_after(Some(Duration::from_millis(200)));
            for i in 0..10 {
                create(
                    &c,
                    ObjKind::K0sWorkerConfig,
                    "default",
                    worker_config(&format!("w{i}"), "c1", json!({})),
                )
                .await;
            }
        },
    )
    .await;
    let c = &h.client;
    let kind = ObjKind::K0sWorkerConfig;
    let jobs = h.jobs_until(JobKind::Bootstrap, |j| j.len() >= 10).await;
    assert_eq!(jobs.len(), 10, "{}", describe(&jobs));

    force_relists(&h, kind, 1).await;
    assert!(
        h.queued(JobKind::Bootstrap).await.is_empty(),
        "a relist of unchanged objects is silent"
    );

    // Changes around the next relist: one spec change, one deletion,
    // status writes (churn without new fingerprints).
    patch(
        c,
        kind,
        "default",
        "w3",
        json!({"spec": {"version": "v1.30.0+k0s.0"}}),
    )
    .await;
    h.handle.cluster.expire_history();
    api(c, kind, "default")
        .delete("w7", &DeleteParams::default())
        .await
        .unwrap();
    for i in [1, 2, 4] {
        patch_status(
            c,
            kind,
            "default",
            &format!("w{i}"),
            json!({"dataSecretName": "x"}),
        )
        .await;
    }
    force_relists(&h, kind, 2).await;
    let jobs = h
        .jobs_until(JobKind::Bootstrap, |j| {
            j.iter().any(|j| j.object.name == "w3") && j.iter().any(|j| j.object.name == "w7")
        })
        .await;
    assert_eq!(
        names(&jobs),
        [
            ("w3".to_string(), Change::Modified),
            ("w7".to_string(), Change::Deleted)
        ],
        "{}",
        describe(&jobs)
    );
    // A marker after the relists: nothing else was queued before it.
    create(c, kind, "default", worker_config("marker", "c1", json!({}))).await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "marker", Change::Added)
        .await;
    assert_eq!(
        names(&jobs),
        [("marker".to_string(), Change::Added)],
        "{}",
        describe(&jobs)
    );
    assert!(
        h.events(kind, "init") >= 4,
        "initial list plus three relists"
    );
    h.stop().await;
}

#[tokio::test]
async fn only_the_namespace_and_watch_filter_are_watched() {
    let config = WatcherConfig {
        namespace: Some("team-a".into()),
        watch_filter: Some("mine".into()),
        ..WatcherConfig::default()
    };
    let h = Harness::start(SimConfig::default(), config, |c, _| async move {
        let namespaces: Api<Namespace> = Api::all(c.clone());
        for ns in ["team-a", "team-b"] {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await
                .unwrap();
        }
    })
    .await;
    let c = &h.client;
    let filtered = |name: &str| json!({"metadata": {"name": name, "labels": {"cluster.x-k8s.io/watch-filter": "mine"}}, "spec": {}});
    create(
        c,
        ObjKind::K0sWorkerConfig,
        "team-b",
        filtered("other-namespace"),
    )
    .await;
    create(
        c,
        ObjKind::K0sWorkerConfig,
        "team-a",
        worker_config("unlabelled", "c1", json!({})),
    )
    .await;
    create(c, ObjKind::K0sWorkerConfig, "team-a", filtered("mine")).await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "mine", Change::Added)
        .await;
    assert_eq!(
        names(&jobs),
        [("mine".to_string(), Change::Added)],
        "{}",
        describe(&jobs)
    );
    assert_eq!(jobs[0].object.namespace.as_deref(), Some("team-a"));
    assert!(h.queued(JobKind::Bootstrap).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_paused_cluster_gets_one_job_then_silence_until_unpaused() {
    let h = Harness::start(
        SimConfig::default(),
        WatcherConfig::default(),
        |c, _| async move {
            create(
                &c,
                ObjKind::CapiCluster,
                "default",
                capi_cluster("paused", true),
            )
            .await;
            create(
                &c,
                ObjKind::CapiCluster,
                "default",
                capi_cluster("running", false),
            )
            .await;
            create(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                worker_config("p1", "paused", json!({})),
            )
            .await;
            create(
                &c,
                ObjKind::K0sWorkerConfig,
                "default",
                worker_config("r1", "running", json!({})),
            )
            .await;
        },
    )
    .await;
    let c = &h.client;
    // At startup each gets one job (p1's lets its handler set Paused).
    let jobs = h.jobs_until(JobKind::Bootstrap, |j| j.len() >= 2).await;
    assert_eq!(
        names(&jobs),
        [
            ("p1".to_string(), Change::Added),
            ("r1".to_string(), Change::Added)
        ]
    );
    // A spec change while paused: nothing (r1's change is the marker).
    patch(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        "p1",
        json!({"spec": {"version": "v1.30.0+k0s.0"}}),
    )
    .await;
    patch(
        c,
        ObjKind::K0sWorkerConfig,
        "default",
        "r1",
        json!({"spec": {"version": "v1.30.0+k0s.0"}}),
    )
    .await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "r1", Change::Modified)
        .await;
    assert_eq!(
        names(&jobs),
        [("r1".to_string(), Change::Modified)],
        "{}",
        describe(&jobs)
    );
    // Unpausing the cluster wakes its objects.
    patch(
        c,
        ObjKind::CapiCluster,
        "default",
        "paused",
        json!({"spec": {"paused": false}}),
    )
    .await;
    let jobs = h
        .jobs_through(JobKind::Bootstrap, "p1", Change::Related)
        .await;
    assert_eq!(jobs[0].cause.via.as_ref().unwrap().name, "paused");
    h.stop().await;
}

#[tokio::test]
async fn resyncs_cover_every_object_except_paused_ones() {
    let sim_config = SimConfig::default();
    let (sim, handle, client) = sim(sim_config).await;
    create(
        &client,
        ObjKind::CapiCluster,
        "default",
        capi_cluster("paused", true),
    )
    .await;
    create(
        &client,
        ObjKind::K0sWorkerConfig,
        "default",
        worker_config("p1", "paused", json!({})),
    )
    .await;
    create(
        &client,
        ObjKind::RemoteCluster,
        "default",
        json!({"metadata": {"name": "rc"}, "spec": {}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Resyncs of an unchanged object share a dedupe id; a window shorter
    // than the resync period lets each one through.
    let queue_config = EmbeddedConfig {
        dedupe_window: Duration::from_millis(50),
        ..EmbeddedConfig::default()
    };
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q.redb"), queue_config).unwrap());
    let shutdown = CancellationToken::new();
    let watcher = tokio::spawn(drover_watcher::run(
        client.clone(),
        queue.clone(),
        WatcherConfig {
            resync: Some(Duration::from_millis(300)),
            ..WatcherConfig::default()
        },
        WatcherMetrics::register(&mut Registry::default()),
        Health::new(),
        shutdown.clone(),
    ));
    let h = Harness {
        _sim: sim,
        handle,
        client,
        queue,
        metrics: WatcherMetrics::default(),
        health: Health::new(),
        shutdown,
        watcher: Some(watcher),
        _dir: dir,
    };
    // RemoteCluster: Added, then Resync jobs; the paused config only its Added.
    let jobs = h
        .jobs_until(JobKind::RemoteCluster, |j| {
            j.iter()
                .filter(|j| j.cause.change == Change::Resync)
                .count()
                >= 2
        })
        .await;
    assert_eq!(jobs[0].cause.change, Change::Added, "{}", describe(&jobs));
    assert!(
        jobs.iter()
            .filter(|j| j.cause.change == Change::Resync)
            .count()
            >= 2,
        "{}",
        describe(&jobs)
    );
    let bootstrap = h.queued(JobKind::Bootstrap).await;
    assert_eq!(
        names(&bootstrap),
        [("p1".to_string(), Change::Added)],
        "{}",
        describe(&bootstrap)
    );
    assert!(
        h.queued(JobKind::Bootstrap).await.is_empty(),
        "no resync while paused"
    );
    h.stop().await;
}

/// Two watcher replicas on one queue (active-active, no leader election).
/// Replica A sees the objects created and then changed (`Added`, then
/// `Modified`); replica B starts afterwards and sees the same states in its
/// initial list (its sweep publishes them as `Added`). Every state is one
/// job: B's copies are recognised as duplicates, which needs dedupe ids
/// that name the state rather than the event.
#[tokio::test]
async fn two_replicas_publish_each_change_once() {
    let (_sim, _handle, client) = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(
        EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let shutdown = CancellationToken::new();
    let start = |metrics: &WatcherMetrics, health: &Health| {
        tokio::spawn(drover_watcher::run(
            client.clone(),
            queue.clone(),
            WatcherConfig {
                resync: None,
                ..WatcherConfig::default()
            },
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ))
    };
    let bootstrap = [("job_kind", "bootstrap")];
    let count = |m: &WatcherMetrics| {
        (
            m.published.get_or_create(&bootstrap).get()
                + m.coalesced.get_or_create(&bootstrap).get(),
            m.deduped.get_or_create(&bootstrap).get(),
        )
    };
    let (a, a_health) = (
        WatcherMetrics::register(&mut Registry::default()),
        Health::new(),
    );
    start(&a, &a_health);
    assert!(
        poll(|| async { a_health.ready().is_ok() }).await,
        "replica A ready"
    );
    const N: u64 = 10;
    for i in 0..N {
        create(
            &client,
            ObjKind::K0sWorkerConfig,
            "default",
            worker_config(&format!("r{i}"), "c", json!({})),
        )
        .await;
    }
    for i in 0..N {
        patch(
            &client,
            ObjKind::K0sWorkerConfig,
            "default",
            &format!("r{i}"),
            json!({"spec": {"args": ["--debug"]}}),
        )
        .await;
    }
    // A has published every state: N creations and N changes.
    assert!(
        poll(|| async {
            let (p, d) = count(&a);
            p + d == 2 * N
        })
        .await,
        "replica A publishes each state: {:?}",
        count(&a)
    );
    let (b, b_health) = (
        WatcherMetrics::register(&mut Registry::default()),
        Health::new(),
    );
    start(&b, &b_health);
    assert!(
        poll(|| async { b_health.ready().is_ok() }).await,
        "replica B ready"
    );
    assert!(
        poll(|| async {
            let (p, d) = count(&b);
            p + d == N
        })
        .await,
        "replica B's sweep publishes each current state: {:?}",
        count(&b)
    );
    assert_eq!(
        count(&b),
        (0, N),
        "all of B's copies are duplicates of A's changes"
    );
    shutdown.cancel();
}
