//! All of drover in one process on kube-sim: the management cluster with
//! drover's CRDs, the [simulated CAPI core](crate::capi), the
//! [child-cluster stand-in](crate::children), the watcher and the workers
//! on one queue (embedded redb or JetStream, chosen by the caller).
//!
//! `drover up`, `drover loadtest bootstrap` and the bootstrap end-to-end
//! test all run this. [`fleet`] makes N clusters of M workers each;
//! [`apply_yaml`] applies manifests (the examples) as `kubectl create` would.

use std::sync::Arc;
use std::time::Duration;

use drover_queue::AnyQueue;
use drover_shared::jobs::JobKind;
use drover_telemetry::{Health, Registry};
use kube::api::{Api, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capi::{CapiSimConfig, SimulatedCapiCore};
use crate::children::{ChildClusterConfig, ChildClusterStandIn};
use crate::sim::cluster::{Target, WriteOptions};
use crate::sim::{ClusterHandle, Sim, SimConfig};

/// The management cluster's name in the sim.
pub const MANAGEMENT: &str = "management";

/// Settings of a [`Stack`].
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Bootstrap jobs run at once.
    pub bootstrap_concurrency: usize,
    /// Bootstrap token lifetime.
    pub token_ttl: Duration,
    /// The simulated CAPI core.
    pub capi: CapiSimConfig,
    /// The child-cluster stand-in.
    pub children: ChildClusterConfig,
    /// Publishes the watcher keeps in flight.
    pub max_publishes_in_flight: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            // Measured on 2 cores, 10k configs: 16 slots 28 s, 8 and 32
            // about 31 s, 64 slots 64-68 s (loadtest/reports/2026-12-01).
            bootstrap_concurrency: 16,
            token_ttl: Duration::from_secs(3600),
            capi: CapiSimConfig {
                workers: 8,
                // CAPI core resyncs every 10 minutes; the simulation's 30 s
                // default re-reconciled every Machine four times a 10k run.
                resync_interval: Duration::from_secs(300),
                ..CapiSimConfig::default()
            },
            children: ChildClusterConfig::default(),
            max_publishes_in_flight: 64,
        }
    }
}

/// Why the stack could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// kube-sim failed.
    #[error("kube-sim: {0}")]
    Sim(String),
    /// The kube client could not be made.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    /// The watcher failed.
    #[error("watcher: {0}")]
    Watcher(#[from] drover_watcher::WatcherError),
    /// The workers failed.
    #[error("workers: {0}")]
    Workers(#[from] drover_workers::WorkerError),
    /// A manifest could not be applied.
    #[error("{0}")]
    Apply(String),
}

/// The running stack.
pub struct Stack {
    /// The sim (management and child clusters).
    pub sim: Arc<Sim>,
    /// The management cluster.
    pub mgmt: Arc<ClusterHandle>,
    /// A client of the management cluster.
    pub client: kube::Client,
    /// The queue.
    pub queue: Arc<AnyQueue>,
    /// Readiness of the watcher and workers.
    pub health: Health,
    /// The watcher's and workers' metrics.
    pub registry: Arc<std::sync::Mutex<Registry>>,
    capi: SimulatedCapiCore,
    children: ChildClusterStandIn,
    shutdown: CancellationToken,
    watcher: Option<RunningWatcher>,
    watcher_metrics: drover_watcher::WatcherMetrics,
    max_publishes_in_flight: usize,
    workers: JoinHandle<Result<(), drover_workers::WorkerError>>,
}

struct RunningWatcher {
    stop: CancellationToken,
    task: JoinHandle<Result<(), drover_watcher::WatcherError>>,
}

fn spawn_watcher(
    client: &kube::Client,
    queue: &Arc<AnyQueue>,
    max_publishes_in_flight: usize,
    metrics: drover_watcher::WatcherMetrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> RunningWatcher {
    let stop = shutdown.child_token();
    let task = tokio::spawn(drover_watcher::run(
        client.clone(),
        queue.clone(),
        drover_watcher::WatcherConfig {
            namespace: None,
            watch_filter: None,
            resync: None,
            max_publishes_in_flight: max_publishes_in_flight.max(1),
        },
        metrics,
        health.clone(),
        stop.clone(),
    ));
    RunningWatcher { stop, task }
}

/// A client for a sim cluster, from its kubeconfig.
pub async fn client_for(h: &ClusterHandle) -> Result<kube::Client, StackError> {
    let kc = Kubeconfig::from_yaml(&h.kubeconfig)
        .map_err(|e| StackError::Sim(format!("kubeconfig: {e}")))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| StackError::Sim(format!("kubeconfig: {e}")))?;
    Ok(kube::Client::try_from(cfg)?)
}

impl Stack {
    /// Starts kube-sim with drover's CRDs, then everything else on `queue`.
    pub async fn start(queue: Arc<AnyQueue>, config: StackConfig) -> Result<Self, StackError> {
        let sim = Arc::new(Sim::new(SimConfig {
            history_limit: 200_000,
            ..SimConfig::default()
        }));
        let mgmt = sim
            .add_cluster(MANAGEMENT)
            .await
            .map_err(|e| StackError::Sim(e.to_string()))?;
        install_crds(&mgmt)?;
        let client = client_for(&mgmt).await?;
        let capi = SimulatedCapiCore::start(client.clone(), config.capi.clone());
        let children = ChildClusterStandIn::start(sim.clone(), client.clone(), config.children);
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let mut registry = Registry::default();
        let watcher_metrics = drover_watcher::WatcherMetrics::register(&mut registry);
        let worker_metrics = drover_workers::WorkerMetrics::register(&mut registry);
        let watcher = spawn_watcher(
            &client,
            &queue,
            config.max_publishes_in_flight,
            watcher_metrics.clone(),
            &health,
            &shutdown,
        );
        let workers = tokio::spawn(drover_workers::run(
            client.clone(),
            queue.clone(),
            drover_workers::WorkerConfig {
                pools: [(
                    JobKind::Bootstrap,
                    drover_workers::PoolConfig {
                        concurrency: config.bootstrap_concurrency.max(1),
                    },
                )]
                .into(),
                bootstrap: drover_workers::handlers::bootstrap::BootstrapSettings {
                    token_ttl: config.token_ttl,
                },
                shutdown_deadline: Duration::from_secs(5),
                ..drover_workers::WorkerConfig::default()
            },
            worker_metrics,
            health.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            sim,
            mgmt,
            client,
            queue,
            health,
            registry: Arc::new(std::sync::Mutex::new(registry)),
            capi,
            children,
            shutdown,
            watcher: Some(watcher),
            watcher_metrics,
            max_publishes_in_flight: config.max_publishes_in_flight,
            workers,
        })
    }

    /// Stops the watcher (the workers go on): changes made meanwhile make
    /// no jobs, as when every watcher replica is down.
    pub async fn stop_watcher(&mut self) -> Result<(), StackError> {
        if let Some(w) = self.watcher.take() {
            w.stop.cancel();
            w.task
                .await
                .map_err(|e| StackError::Sim(format!("watcher task: {e}")))??;
        }
        Ok(())
    }

    /// Starts the watcher again after [`Stack::stop_watcher`].
    pub fn start_watcher(&mut self) {
        if self.watcher.is_none() {
            self.watcher = Some(spawn_watcher(
                &self.client,
                &self.queue,
                self.max_publishes_in_flight,
                self.watcher_metrics.clone(),
                &self.health,
                &self.shutdown,
            ));
        }
    }

    /// The watcher's and workers' metrics, in Prometheus text.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }

    /// Clusters that have their child cluster and kubeconfig so far.
    pub fn children_provisioned(&self) -> usize {
        self.children.provisioned()
    }

    /// Whether the watcher or the workers stopped (with an error, or a panic).
    pub fn failed(&self) -> bool {
        self.watcher.as_ref().is_some_and(|w| w.task.is_finished()) || self.workers.is_finished()
    }

    /// Stops everything: the watcher and workers first (jobs in flight get
    /// the workers' shutdown deadline), then the simulations.
    pub async fn shutdown(self) -> Result<(), StackError> {
        self.shutdown.cancel();
        let w = match self.watcher {
            Some(w) => Some(w.task.await),
            None => None,
        };
        let k = self.workers.await;
        self.children.shutdown().await;
        self.capi.shutdown().await;
        if let Some(w) = w {
            w.map_err(|e| StackError::Sim(format!("watcher task: {e}")))??;
        }
        k.map_err(|e| StackError::Sim(format!("workers task: {e}")))??;
        Ok(())
    }
}

/// Installs drover's CRDs and the CAPI core subset into a sim cluster,
/// in-process (no HTTP round trips).
pub fn install_crds(mgmt: &ClusterHandle) -> Result<(), StackError> {
    let reg = mgmt.cluster.registry();
    let info = reg
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| StackError::Sim("the sim serves no CRDs".into()))?;
    let target = Target {
        info,
        namespace: None,
        name: None,
        subresource: None,
    };
    for (_, crd) in drover_shared::crds::all_crds() {
        let body = serde_json::to_value(&crd).map_err(|e| StackError::Sim(e.to_string()))?;
        mgmt.cluster
            .create(&target, body, &WriteOptions::default())
            .map_err(|e| StackError::Sim(format!("installing a CRD: {e}")))?;
    }
    Ok(())
}

/// The resource of an apiVersion and kind: drover's kinds, and the core
/// kinds manifests carry (Secret, ConfigMap, Namespace).
fn resource_of(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let core = match kind {
        "Secret" => Some(("secrets", true)),
        "ConfigMap" => Some(("configmaps", true)),
        "Namespace" => Some(("namespaces", false)),
        _ => None,
    };
    if api_version == "v1"
        && let Some((plural, namespaced)) = core
    {
        let gvk = GroupVersionKind::gvk("", "v1", kind);
        return Some((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced));
    }
    drover_shared::crds::served_kinds()
        .into_iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
        .map(|k| {
            let gvk = GroupVersionKind::gvk(&k.group, &k.version, &k.kind);
            (
                ApiResource::from_gvk_with_plural(&gvk, &k.plural),
                k.namespaced,
            )
        })
}

/// Creates every object of a multi-document YAML text in `namespace` (when
/// the object names none), as `kubectl create -f` does; objects that
/// exist already are left as they are. Returns the objects created.
pub async fn apply_yaml(
    client: &kube::Client,
    namespace: &str,
    yaml: &str,
    source: &str,
) -> Result<Vec<Value>, StackError> {
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| StackError::Apply(format!("{source}: not YAML: {e}")))?;
    // What others reference first (as `kubectl apply` users order their
    // files), so the simulated CAPI core does not start on a
    // MachineDeployment whose template is not there yet.
    docs.sort_by_key(|d| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("Secret" | "ConfigMap") => 1,
        Some(k) if k.ends_with("Template") => 2,
        _ => 3,
    });
    let mut created = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let (ar, namespaced) = resource_of(&api_version, &kind).ok_or_else(|| {
            StackError::Apply(format!(
                "{source}: {api_version} {kind} is not a kind drover serves"
            ))
        })?;
        let obj: DynamicObject = serde_json::from_value(doc.clone())
            .map_err(|e| StackError::Apply(format!("{source}: {kind}: {e}")))?;
        let api: Api<DynamicObject> = if namespaced {
            let ns = obj.metadata.namespace.as_deref().unwrap_or(namespace);
            Api::namespaced_with(client.clone(), ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => created.push(doc),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(StackError::Apply(format!(
                    "{source}: {kind} {}: {e}",
                    obj.metadata.name.unwrap_or_default()
                )));
            }
        }
    }
    Ok(created)
}

/// How many bootstrap configs the objects will make: the replicas of
/// MachineDeployments and MachineSets, plus Machines, whose bootstrap
/// configRef is a drover kind (or its template).
pub fn expected_configs(objects: &[Value]) -> usize {
    let ours = |r: &Value| {
        matches!(
            r["kind"].as_str(),
            Some("K0sWorkerConfig" | "K0sWorkerConfigTemplate" | "K0sControllerConfig")
        )
    };
    objects
        .iter()
        .map(|o| match o["kind"].as_str() {
            Some("MachineDeployment" | "MachineSet")
                if ours(&o["spec"]["template"]["spec"]["bootstrap"]["configRef"]) =>
            {
                o["spec"]["replicas"].as_u64().unwrap_or(1) as usize
            }
            Some("Machine") if ours(&o["spec"]["bootstrap"]["configRef"]) => 1,
            _ => 0,
        })
        .sum()
}

/// The group and kind fleet Machines name as infrastructure: served by
/// nothing, so the simulated CAPI core references it as is and no
/// infrastructure handler is involved.
pub const FLEET_INFRASTRUCTURE: (&str, &str) =
    ("infrastructure.sim.drover.dev", "SimulatedMachine");

/// The objects of a fleet: `clusters` CAPI Clusters `fleet-NNNN`, each in
/// a namespace of the same name (as fleets are usually laid out; it also
/// keeps each MachineSet's label-selected list small), with a
/// K0sWorkerConfigTemplate and a MachineDeployment of
/// `machines_per_cluster` workers. Control planes are simulated (the CAPI
/// core marks them initialized; the child-cluster stand-in gives each
/// cluster its API, CA and kubeconfig).
pub fn fleet(clusters: usize, machines_per_cluster: usize, version: &str) -> Vec<Value> {
    let mut out = Vec::with_capacity(clusters * 4);
    for i in 0..clusters {
        let name = format!("fleet-{i:04}");
        let labels = json!({"cluster.x-k8s.io/cluster-name": name, "pool": "md-0"});
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
        out.push(json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
            "metadata": {"name": name, "namespace": name},
            "spec": {"clusterNetwork": {"pods": {"cidrBlocks": ["10.244.0.0/16"]},
                "services": {"cidrBlocks": ["10.96.0.0/12"]}}}}));
        out.push(json!({
            "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfigTemplate",
            "metadata": {"name": format!("{name}-md-0"), "namespace": name},
            "spec": {"template": {"spec": {"version": version,
                "args": ["--labels=drover.dev/fleet=true"]}}}}));
        out.push(json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
            "metadata": {"name": format!("{name}-md-0"), "namespace": name},
            "spec": {"clusterName": name, "replicas": machines_per_cluster,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"clusterName": name, "version": version,
                        "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io",
                            "kind": "K0sWorkerConfigTemplate", "name": format!("{name}-md-0")}},
                        "infrastructureRef": {"apiGroup": FLEET_INFRASTRUCTURE.0,
                            "kind": FLEET_INFRASTRUCTURE.1, "name": format!("{name}-md-0")}}}}}));
    }
    out
}

/// Creates `objects` (those that name no namespace in `namespace`),
/// `concurrency` at a time, Namespaces first.
pub async fn create_all(
    client: &kube::Client,
    namespace: &str,
    objects: Vec<Value>,
    concurrency: usize,
) -> Result<(), StackError> {
    let (namespaces, rest): (Vec<Value>, Vec<Value>) =
        objects.into_iter().partition(|o| o["kind"] == "Namespace");
    create_concurrently(client, namespace, namespaces, concurrency).await?;
    create_concurrently(client, namespace, rest, concurrency).await
}

async fn create_concurrently(
    client: &kube::Client,
    namespace: &str,
    objects: Vec<Value>,
    concurrency: usize,
) -> Result<(), StackError> {
    use futures_util::StreamExt as _;
    let results: Vec<Result<(), StackError>> = futures_util::stream::iter(objects)
        .map(|doc| {
            let client = client.clone();
            async move {
                let text =
                    serde_json::to_string(&doc).map_err(|e| StackError::Apply(e.to_string()))?;
                apply_yaml(&client, namespace, &text, "fleet")
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_expects_its_machines() {
        let f = fleet(3, 4, "v1.33.1+k0s.0");
        assert_eq!(f.len(), 12);
        assert_eq!(expected_configs(&f), 12);
    }

    #[test]
    fn the_examples_expect_their_worker_configs() {
        let yaml = include_str!("../../examples/hosted-control-plane.yaml");
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
        assert_eq!(expected_configs(&docs), 2);
        let yaml = include_str!("../../examples/remote-machines.yaml");
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
        assert_eq!(expected_configs(&docs), 1);
    }
}

/// What a [`ReadinessTracker`] has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Bootstrap configs seen.
    pub seen: usize,
    /// Of those, `Ready=True`.
    pub ready: usize,
    /// Of those, `Ready=False` with `DataSecretGenerationFailed`, with the
    /// message (config key → message).
    pub failed: Vec<(String, String)>,
    /// Not ready yet, with their `Ready` message (at most 20).
    pub waiting: Vec<(String, String)>,
    /// For each Ready config: from the watch event that first showed it to
    /// the one that showed it Ready, in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

impl Progress {
    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
        self.latencies_ms[i.min(self.latencies_ms.len() - 1)]
    }
}

struct Seen {
    first: tokio::time::Instant,
    ready_after: Option<Duration>,
    failed: Option<String>,
    message: String,
}

/// Watches every K0sWorkerConfig and K0sControllerConfig and counts the
/// Ready ones (for progress bars, `--exit-when-ready` and load tests).
pub struct ReadinessTracker {
    state: Arc<std::sync::Mutex<std::collections::HashMap<String, Seen>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReadinessTracker {
    /// Starts watching through `client`.
    pub fn start(client: &kube::Client) -> Self {
        use futures_util::StreamExt as _;
        use kube::runtime::{WatchStreamExt as _, watcher};
        let state = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let mut tasks = Vec::new();
        for kind in ["K0sWorkerConfig", "K0sControllerConfig"] {
            let Some((ar, _)) = resource_of("bootstrap.cluster.x-k8s.io/v1beta2", kind) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream =
                    std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
                while let Some(item) = stream.next().await {
                    let Ok(obj) = item else { continue };
                    let key = format!(
                        "{kind}/{}/{}",
                        obj.metadata.namespace.as_deref().unwrap_or_default(),
                        obj.metadata.name.as_deref().unwrap_or_default()
                    );
                    let ready = obj.data["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                        .cloned();
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    let seen = st.entry(key).or_insert_with(|| Seen {
                        first: tokio::time::Instant::now(),
                        ready_after: None,
                        failed: None,
                        message: String::new(),
                    });
                    if let Some(c) = ready {
                        seen.message = c["message"].as_str().unwrap_or_default().to_owned();
                        if c["status"] == "True" {
                            if seen.ready_after.is_none() {
                                seen.ready_after = Some(seen.first.elapsed());
                            }
                            seen.failed = None;
                        } else if c["reason"] == "NotReady"
                            && obj.data["status"]["conditions"]
                                .as_array()
                                .is_some_and(|cs| {
                                    cs.iter().any(|c| {
                                        c["type"] == "DataSecretAvailable"
                                            && c["reason"] == "DataSecretGenerationFailed"
                                    })
                                })
                        {
                            seen.failed = Some(seen.message.clone());
                        }
                    }
                }
            }));
        }
        Self { state, tasks }
    }

    /// What has been seen so far.
    pub fn progress(&self) -> Progress {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = Progress {
            seen: st.len(),
            ..Progress::default()
        };
        for (k, s) in st.iter() {
            match s.ready_after {
                Some(d) => {
                    p.ready += 1;
                    p.latencies_ms.push(d.as_secs_f64() * 1000.0);
                }
                None => {
                    if let Some(m) = &s.failed {
                        p.failed.push((k.clone(), m.clone()));
                    } else if p.waiting.len() < 20 {
                        p.waiting.push((k.clone(), s.message.clone()));
                    }
                }
            }
        }
        p.latencies_ms.sort_by(f64::total_cmp);
        p.failed.sort();
        p.waiting.sort();
        p
    }
}

impl Drop for ReadinessTracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
