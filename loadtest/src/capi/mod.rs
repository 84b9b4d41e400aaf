//! A **simulated CAPI core**: the parts of Cluster API's core controllers
//! that drover's providers depend on, for end-to-end tests, `drover up` and
//! load tests, where the real CAPI core does not run.
//!
//! It runs against any [`kube::Client`] (an in-process kube-sim, a kube-sim
//! process, or a real cluster with the CAPI CRDs and no CAPI core), built on
//! kube-runtime watchers used as triggers only: every decision is made from
//! a fresh `GET`/`LIST`, so a stale cache never creates a Machine twice.
//! Reconciles are level-triggered and idempotent, one object key at a time,
//! with a periodic resync of everything.
//!
//! # What it does
//!
//! - **MachineDeployment → MachineSet**: one MachineSet per MachineDeployment,
//!   named `<md>-<template hash>` (the hash of the template at creation,
//!   encoded like CAPI's), with a controller ownerReference to the
//!   MachineDeployment, the `cluster.x-k8s.io/cluster-name` and
//!   `cluster.x-k8s.io/deployment-name` labels, and the deployment's
//!   replicas and template (kept in sync in place). Deployment status:
//!   `replicas` (sum of its sets) and `selector`.
//! - **MachineSet → Machines**: `spec.replicas` Machines named
//!   `<ms>-<5 random chars>`, with a controller ownerReference to the set,
//!   the template's labels and annotations plus `cluster-name`, `set-name`
//!   and `deployment-name`, `spec.clusterName` and the template's
//!   `spec.version`. Before each Machine, the bootstrap config is **cloned
//!   from the template** in `spec.template.spec.bootstrap.configRef`
//!   (`FooTemplate` → `Foo` with the template's `spec.template.spec`, named
//!   after the Machine, with the template's `spec.template.metadata`, the
//!   cluster-name label, the `cloned-from-name`/`cloned-from-groupkind`
//!   annotations and, as CAPI does, an "on-create" controller owner
//!   reference to the MachineSet that the Machine reconcile replaces with
//!   one to the Machine). An infrastructure ref naming a `*Template` kind
//!   whose non-template kind is served is cloned the same way; any other
//!   infrastructure ref is referenced as is. Scaling down deletes Machines
//!   annotated `cluster.x-k8s.io/delete-machine` first, then the newest;
//!   their bootstrap configs go by garbage collection through their
//!   ownerReference. Set status: `replicas` and `selector`.
//! - **Machine**: the bootstrap config (cloned or created by a user) and an
//!   existing infrastructure object get a controller ownerReference to the
//!   Machine (on-create MachineSet/control-plane owners are removed) and the
//!   cluster-name label. Once the config reports
//!   `status.initialization.dataSecretCreated` (v1beta2) or `status.ready`
//!   (v1beta1) and a `status.dataSecretName`, the name is copied to
//!   `spec.bootstrap.dataSecretName` and
//!   `status.initialization.bootstrapDataSecretCreated` becomes true. Once
//!   the infrastructure object reports `status.initialization.provisioned`
//!   (or `status.ready`), `spec.providerID` and `status.addresses` are
//!   copied and `status.initialization.infrastructureProvisioned` set.
//!   Phase: `Pending`, `Provisioning`, `Provisioned`, `Running` (a
//!   `status.nodeRef` exists), `Deleting`.
//! - **Cluster**: `status.initialization.infrastructureProvisioned` (true
//!   without an `infrastructureRef`, else once the object reports
//!   `status.initialization.provisioned` or `status.ready`) and condition
//!   `InfrastructureReady`; `status.initialization.controlPlaneInitialized`
//!   and condition `ControlPlaneInitialized`, true when the
//!   `controlPlaneRef` object reports
//!   `status.initialization.controlPlaneInitialized` (or v1beta1
//!   `status.initialized`), or when the simulation is told to mark it:
//!   [`CapiSimConfig::mark_control_plane_initialized`], overridden per
//!   Cluster by the annotation [`CONTROL_PLANE_INITIALIZED_ANNOTATION`]
//!   (`"false"` holds it back, `"true"` forces it). Like CAPI, neither flag
//!   ever goes back to false. `spec.controlPlaneEndpoint`, when empty, is
//!   copied from the control plane or infrastructure object, else from
//!   [`CapiSimConfig::control_plane_endpoint`] if set. Phase: `Pending`,
//!   `Provisioning` (a ref is set), `Provisioned` (infrastructure
//!   provisioned and a valid endpoint), `Deleting`.
//! - Writes are JSON merge patches carrying `metadata.resourceVersion`
//!   (optimistic concurrency), status through the `/status` subresource; a
//!   409 requeues the key at once, other errors after
//!   [`CapiSimConfig::retry_delay`]. Everything it does is logged through
//!   `tracing` (target `drover_loadtest::capi`).
//! - Objects annotated `cluster.x-k8s.io/paused`, and Clusters with
//!   `spec.paused`, are left alone.
//!
//! # What it does not do (real CAPI core does)
//!
//! - No rolling updates: a changed MachineDeployment template is copied into
//!   its existing MachineSet and only new Machines use it; no
//!   `maxSurge`/`maxUnavailable`, no MachineSet per template revision.
//! - No Machine finalizer and no deletion ordering (drain, pre-drain and
//!   pre-terminate hooks, infra-then-bootstrap deletion, Node deletion):
//!   dependents go by garbage collection. Cluster deletion is not
//!   orchestrated either.
//! - No workload-cluster access: no Node lookup, no `nodeRef`, no node
//!   label/taint sync, no MachineHealthChecks, no remediation.
//! - No MachinePools, ClusterClass/topology, KubeadmControlPlane-style
//!   control-plane Machines, failure-domain spreading, or
//!   `Cluster.status.failureDomains`.
//! - Conditions other than Cluster `ControlPlaneInitialized` and
//!   `InfrastructureReady` are not computed; replica counters other than
//!   `replicas` are not set; webhooks (defaulting, validation) do not run.
//! - Provider objects are watched only for the kinds in
//!   [`CapiSimConfig::watched_kinds`]; others are seen on the periodic
//!   resync or on a short requeue while a Cluster or Machine waits for them.

mod kinds;
mod queue;
mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use drover_shared::api::capi::{Cluster, Machine, MachineDeployment, MachineSet};
use drover_shared::api::common::ApiEndpoint;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use kinds::Kinds;
use queue::WorkQueue;

/// Per-Cluster annotation overriding
/// [`CapiSimConfig::mark_control_plane_initialized`]: `"false"` holds the
/// simulated initialization back, `"true"` forces it. It does not stop a
/// control plane that reports itself initialized from counting.
pub const CONTROL_PLANE_INITIALIZED_ANNOTATION: &str = "sim.drover.dev/control-plane-initialized";

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "drover-capi-sim";

/// Settings of the [`SimulatedCapiCore`].
#[derive(Clone, Debug)]
pub struct CapiSimConfig {
    /// Only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Keys reconciled at once.
    pub workers: usize,
    /// How often everything is reconciled again without a change.
    pub resync_interval: Duration,
    /// Delay before a failed reconcile is retried (409s are retried at once).
    pub retry_delay: Duration,
    /// How often a Cluster or Machine waiting for a referenced object polls it.
    pub poll_interval: Duration,
    /// Mark every Cluster's control plane initialized, until drover's control
    /// plane providers report it themselves (see
    /// [`CONTROL_PLANE_INITIALIZED_ANNOTATION`] for the per-Cluster override).
    pub mark_control_plane_initialized: bool,
    /// Set this `spec.controlPlaneEndpoint` on Clusters that have none and
    /// get none from their control plane or infrastructure object.
    pub control_plane_endpoint: Option<ApiEndpoint>,
    /// Provider kinds (group, kind) watched so that their changes reach
    /// their Machine or Cluster at once. Kinds not served are skipped.
    pub watched_kinds: Vec<(String, String)>,
}

impl Default for CapiSimConfig {
    fn default() -> Self {
        let kinds = [
            ("bootstrap.cluster.x-k8s.io", "K0sWorkerConfig"),
            ("bootstrap.cluster.x-k8s.io", "K0sControllerConfig"),
            ("controlplane.cluster.x-k8s.io", "K0sControlPlane"),
            ("controlplane.cluster.x-k8s.io", "K0smotronControlPlane"),
            ("infrastructure.cluster.x-k8s.io", "RemoteCluster"),
            ("infrastructure.cluster.x-k8s.io", "RemoteMachine"),
        ];
        Self {
            namespace: None,
            workers: 4,
            resync_interval: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
            poll_interval: Duration::from_secs(2),
            mark_control_plane_initialized: true,
            control_plane_endpoint: None,
            watched_kinds: kinds
                .iter()
                .map(|(g, k)| ((*g).to_owned(), (*k).to_owned()))
                .collect(),
        }
    }
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum CapiSimError {
    /// The API server refused or failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// An object is not shaped as CAPI requires.
    #[error("{0}")]
    Invalid(String),
}

impl CapiSimError {
    fn is_conflict(&self) -> bool {
        matches!(self, Self::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

/// The kinds the simulation reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyKind {
    Cluster,
    MachineDeployment,
    MachineSet,
    Machine,
}

/// One object to reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) kind: KeyKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

pub(crate) struct Ctx {
    pub(crate) client: kube::Client,
    pub(crate) config: CapiSimConfig,
    pub(crate) kinds: Kinds,
    pub(crate) queue: WorkQueue,
    stop: watch::Receiver<bool>,
}

impl Ctx {
    fn enqueue_later(self: &Arc<Self>, key: Key, after: Duration) {
        let ctx = self.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => ctx.queue.add(key),
                _ = stop.changed() => {}
            }
        });
    }
}

/// The running simulation: watcher, resync and worker tasks.
///
/// ```no_run
/// # async fn f(client: kube::Client) {
/// use drover_loadtest::capi::{CapiSimConfig, SimulatedCapiCore};
/// let core = SimulatedCapiCore::start(client, CapiSimConfig::default());
/// // ... create Clusters, MachineDeployments ...
/// core.shutdown().await;
/// # }
/// ```
pub struct SimulatedCapiCore {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimulatedCapiCore {
    /// Starts the simulation on the current tokio runtime.
    pub fn start(client: kube::Client, config: CapiSimConfig) -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            kinds: Kinds::new(client.clone()),
            client,
            config,
            queue: WorkQueue::default(),
            stop: stop_rx,
        });
        tracing::info!(
            target: "drover_loadtest::capi",
            namespace = ?ctx.config.namespace,
            workers = ctx.config.workers,
            mark_control_plane_initialized = ctx.config.mark_control_plane_initialized,
            "simulated CAPI core starting"
        );
        let mut tasks = Vec::new();
        tasks.push(spawn_watch(
            &ctx,
            ApiResource::erase::<Cluster>(&()),
            |_, o, out| {
                out.push(key_of(KeyKind::Cluster, o));
            },
        ));
        tasks.push(spawn_watch(
            &ctx,
            ApiResource::erase::<MachineDeployment>(&()),
            |_, o, out| out.push(key_of(KeyKind::MachineDeployment, o)),
        ));
        tasks.push(spawn_watch(
            &ctx,
            ApiResource::erase::<MachineSet>(&()),
            |_, o, out| {
                out.push(key_of(KeyKind::MachineSet, o));
                owner_keys(o, out);
            },
        ));
        tasks.push(spawn_watch(
            &ctx,
            ApiResource::erase::<Machine>(&()),
            |_, o, out| {
                out.push(key_of(KeyKind::Machine, o));
                owner_keys(o, out);
            },
        ));
        {
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                let mut watches = Vec::new();
                for (group, kind) in ctx.config.watched_kinds.clone() {
                    match ctx.kinds.resolve(&group, &kind).await {
                        Ok(Some(ar)) => watches.push(spawn_watch(&ctx, ar, provider_keys)),
                        Ok(None) => tracing::debug!(
                            target: "drover_loadtest::capi",
                            %group, %kind, "kind not served; not watched"
                        ),
                        Err(e) => tracing::warn!(
                            target: "drover_loadtest::capi",
                            %group, %kind, error = %e, "cannot resolve kind; not watched"
                        ),
                    }
                }
                // They end with the stop signal.
                for w in watches {
                    let _ = w.await;
                }
            }));
        }
        tasks.push(tokio::spawn(resync(ctx.clone())));
        for _ in 0..ctx.config.workers.max(1) {
            tasks.push(tokio::spawn(worker(ctx.clone())));
        }
        Self {
            stop: stop_tx,
            tasks,
        }
    }

    /// Stops every task and waits for them (an in-flight reconcile finishes first).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        tracing::info!(target: "drover_loadtest::capi", "simulated CAPI core stopped");
    }
}

/// Runs the simulation until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: CapiSimConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let core = SimulatedCapiCore::start(client, config);
    shutdown.await;
    core.shutdown().await;
}

fn key_of(kind: KeyKind, o: &DynamicObject) -> Key {
    Key {
        kind,
        namespace: o.metadata.namespace.clone().unwrap_or_default(),
        name: o.metadata.name.clone().unwrap_or_default(),
    }
}

/// Keys of the CAPI owners (Machine, MachineSet, MachineDeployment, Cluster) of `o`.
fn owner_keys(o: &DynamicObject, out: &mut Vec<Key>) {
    for r in o.metadata.owner_references.as_deref().unwrap_or_default() {
        if drover_shared::owners::group_of(&r.api_version) != drover_shared::api::capi::GROUP {
            continue;
        }
        let kind = match r.kind.as_str() {
            "Machine" => KeyKind::Machine,
            "MachineSet" => KeyKind::MachineSet,
            "MachineDeployment" => KeyKind::MachineDeployment,
            "Cluster" => KeyKind::Cluster,
            _ => continue,
        };
        out.push(Key {
            kind,
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: r.name.clone(),
        });
    }
}

/// A provider object concerns its CAPI owners and the Cluster it is labelled with.
fn provider_keys(_: &Ctx, o: &DynamicObject, out: &mut Vec<Key>) {
    owner_keys(o, out);
    if let Some(c) = o
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(drover_shared::labels::CLUSTER_NAME))
    {
        out.push(Key {
            kind: KeyKind::Cluster,
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: c.clone(),
        });
    }
}

fn api_for(ctx: &Ctx, ar: &ApiResource) -> Api<DynamicObject> {
    match &ctx.config.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, ar),
        None => Api::all_with(ctx.client.clone(), ar),
    }
}

fn spawn_watch(
    ctx: &Arc<Ctx>,
    ar: ApiResource,
    map: fn(&Ctx, &DynamicObject, &mut Vec<Key>),
) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let api = api_for(&ctx, &ar);
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut stop = ctx.stop.clone();
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = stop.changed() => return,
            };
            let Some(ev) = ev else { return };
            match ev {
                Ok(
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o),
                ) => {
                    let mut keys = Vec::new();
                    map(&ctx, &o, &mut keys);
                    for k in keys {
                        ctx.queue.add(k);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    target: "drover_loadtest::capi",
                    kind = %ar.kind, error = %e, "watch failed; retrying"
                ),
            }
        }
    })
}

async fn resync(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.config.resync_interval) => {}
            _ = stop.changed() => return,
        }
        for (kind, ar) in [
            (KeyKind::Cluster, ApiResource::erase::<Cluster>(&())),
            (
                KeyKind::MachineDeployment,
                ApiResource::erase::<MachineDeployment>(&()),
            ),
            (KeyKind::MachineSet, ApiResource::erase::<MachineSet>(&())),
            (KeyKind::Machine, ApiResource::erase::<Machine>(&())),
        ] {
            match api_for(&ctx, &ar)
                .list_metadata(&ListParams::default())
                .await
            {
                Ok(list) => {
                    for o in list.items {
                        ctx.queue.add(Key {
                            kind,
                            namespace: o.metadata.namespace.unwrap_or_default(),
                            name: o.metadata.name.unwrap_or_default(),
                        });
                    }
                }
                Err(e) => tracing::warn!(
                    target: "drover_loadtest::capi",
                    kind = %ar.kind, error = %e, "resync list failed"
                ),
            }
        }
    }
}

async fn worker(ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        let key = tokio::select! {
            k = ctx.queue.next() => k,
            _ = stop.changed() => return,
        };
        let result = reconcile::reconcile(&ctx, &key).await;
        ctx.queue.done(&key);
        match result {
            Ok(None) => {}
            Ok(Some(after)) => ctx.enqueue_later(key, after),
            Err(e) if e.is_conflict() => {
                tracing::debug!(
                    target: "drover_loadtest::capi",
                    kind = ?key.kind, namespace = %key.namespace, name = %key.name,
                    "conflict; retrying"
                );
                ctx.queue.add(key);
            }
            Err(e) => {
                tracing::warn!(
                    target: "drover_loadtest::capi",
                    kind = ?key.kind, namespace = %key.namespace, name = %key.name,
                    error = %e, "reconcile failed; retrying"
                );
                ctx.enqueue_later(key, ctx.config.retry_delay);
            }
        }
    }
}
