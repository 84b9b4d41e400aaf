//! drover's watcher: turns Kubernetes object changes into jobs on the queue.
//! No business logic: it never writes to Kubernetes, it only decides which
//! objects need a handler to look at them, and why.
//!
//! # How a change becomes a job
//!
//! ```text
//! API server ──watch──► watch task (one per kind)   summarize, drop the object
//!                           │ bounded channel (backpressure)
//!                           ▼
//!                       dispatcher                  cache of summaries + indexes,
//!                           │                       mapping table, sweeps, resyncs
//!                           ▼
//!                       publisher                   N publishes in flight, retried
//!                           │
//!                           ▼
//!                       JobQueue (JetStream or redb)
//! ```
//!
//! # Layout
//!
//! - [`mapping`]: the kinds table and the relations table: which jobs a
//!   change implies, and the pause rules. Pure; read it first.
//! - [`summary`]: the compact [`summary::Summary`] kept per object instead of
//!   the object (about 300 bytes), its fingerprint, and string interning.
//! - [`index`]: the cache of summaries and its reverse indexes.
//! - `dispatch`: the task that owns the cache: applies events, runs the
//!   mapping, startup sweeps, relist reconciliation and resyncs.
//! - `watch`: one kube-runtime `watcher` per kind.
//! - `publish`: bounded, retrying publishes.
//! - [`metrics`], [`config`], [`error`].
//!
//! # Running two replicas
//!
//! Replicas run active-active, without leader election: every job has a
//! deterministic dedupe id ([`Job::dedupe_id`]) that names the object's
//! state (`<job kind>/<uid>@<resourceVersion>`, plus the `via` object's uid
//! for related jobs), not the event. So the queue drops the second
//! replica's copy whether that replica saw the state in its initial list
//! (`Added`), as a change (`Modified`) or in a resync. A copy that slips
//! through (outside the queue's dedupe window) costs one extra handler run,
//! not a wrong result: jobs are hints and workers re-read the object.
//!
//! Two publishes for one object may be in flight at once and land out of
//! order; that is harmless for the same reason: workers re-read the object.
//!
//! [`Job::dedupe_id`]: drover_shared::jobs::Job::dedupe_id

pub mod config;
mod dispatch;
pub mod error;
pub mod index;
pub mod mapping;
pub mod metrics;
mod publish;
pub mod summary;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use drover_queue::JobQueue;
use drover_shared::api::bootstrap::{K0sControllerConfig, K0sWorkerConfig};
use drover_shared::api::capi;
use drover_shared::api::controlplane::{K0sControlPlane, K0smotronControlPlane};
use drover_shared::api::infrastructure::{PooledRemoteMachine, RemoteCluster, RemoteMachine};
use drover_shared::api::k0smotron::{self, JoinTokenRequest};
use drover_telemetry::Health;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::WatcherConfig;
pub use error::WatcherError;
pub use mapping::ObjKind;
pub use metrics::WatcherMetrics;

use crate::dispatch::{Dispatcher, Input};
use crate::publish::Publisher;
use crate::summary::{Interner, Summarize};

/// Events buffered between the watch tasks and the dispatcher. Small: a
/// full buffer is what stops the watches from reading.
const INPUT_BUFFER: usize = 256;

/// Watches every kind drover acts on and publishes the jobs their changes
/// imply until `shutdown` is cancelled; then waits for publishes in flight
/// and returns `Ok(())`.
///
/// Registers the health checks `watch/<Kind>` (ready after the kind's first
/// complete list) and `queue` (ready once the queue answers).
pub async fn run<Q: JobQueue>(
    client: kube::Client,
    queue: Arc<Q>,
    config: WatcherConfig,
    metrics: WatcherMetrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), WatcherError> {
    if config.max_publishes_in_flight == 0 {
        return Err(WatcherError::Config(
            "max_publishes_in_flight must be at least 1".into(),
        ));
    }
    let watch_health: Vec<_> = ObjKind::ALL
        .iter()
        .map(|k| health.check(format!("watch/{}", k.label())))
        .collect();
    let queue_health = health.check("queue");
    tokio::spawn(probe_queue(
        queue.clone(),
        queue_health.clone(),
        shutdown.clone(),
    ));

    let interner = Arc::new(Interner::default());
    let (inputs, received) = mpsc::channel(INPUT_BUFFER);
    // The watches stop after the dispatcher, so none blocks on a full channel.
    let stop_watches = CancellationToken::new();
    let mut watches = JoinSet::new();
    let mut watched = std::collections::HashMap::new();
    for kind in ObjKind::ALL {
        let w = Watch {
            client: &client,
            config: &config,
            interner: &interner,
            inputs: &inputs,
            metrics: &metrics,
            shutdown: &stop_watches,
        };
        let handle = match kind {
            ObjKind::K0sWorkerConfig => w.spawn::<K0sWorkerConfig>(&mut watches),
            ObjKind::K0sControllerConfig => w.spawn::<K0sControllerConfig>(&mut watches),
            ObjKind::K0sControlPlane => w.spawn::<K0sControlPlane>(&mut watches),
            ObjKind::K0smotronControlPlane => w.spawn::<K0smotronControlPlane>(&mut watches),
            ObjKind::K0smotronCluster => w.spawn::<k0smotron::Cluster>(&mut watches),
            ObjKind::JoinTokenRequest => w.spawn::<JoinTokenRequest>(&mut watches),
            ObjKind::RemoteCluster => w.spawn::<RemoteCluster>(&mut watches),
            ObjKind::RemoteMachine => w.spawn::<RemoteMachine>(&mut watches),
            ObjKind::PooledRemoteMachine => w.spawn::<PooledRemoteMachine>(&mut watches),
            ObjKind::CapiCluster => w.spawn::<capi::Cluster>(&mut watches),
            ObjKind::Machine => w.spawn::<capi::Machine>(&mut watches),
            ObjKind::Secret => w.spawn::<PartialObjectMeta<Secret>>(&mut watches),
            ObjKind::ConfigMap => w.spawn::<PartialObjectMeta<ConfigMap>>(&mut watches),
        };
        watched.insert(handle, kind);
    }
    drop(inputs);

    let publisher = Publisher::new(
        queue,
        config.max_publishes_in_flight,
        metrics.clone(),
        queue_health,
        shutdown.clone(),
    );
    let dispatcher = Dispatcher::new(publisher, metrics, watch_health, interner);
    let mut dispatcher = tokio::spawn(dispatcher.run(received, config.resync, shutdown.clone()));

    let result = loop {
        tokio::select! {
            done = &mut dispatcher => break done.map_err(WatcherError::Dispatcher),
            Some(ended) = watches.join_next_with_id() => {
                // A watch ends on its own only by panicking (its stream is endless).
                if let Err(e) = ended {
                    let kind = watched.get(&e.id()).map_or("?", |k| k.label());
                    shutdown.cancel();
                    let _ = (&mut dispatcher).await;
                    break Err(WatcherError::WatchTask { kind, source: e });
                }
            }
        }
    };
    stop_watches.cancel();
    while watches.join_next().await.is_some() {}
    result
}

/// What every watch task is started with.
struct Watch<'a> {
    client: &'a kube::Client,
    config: &'a WatcherConfig,
    interner: &'a Arc<Interner>,
    inputs: &'a mpsc::Sender<Input>,
    metrics: &'a WatcherMetrics,
    shutdown: &'a CancellationToken,
}

impl Watch<'_> {
    fn spawn<K>(&self, set: &mut JoinSet<()>) -> tokio::task::Id
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Summarize
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let api: Api<K> = match &self.config.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut cfg = watcher::Config::default();
        if K::KIND.row().watch_filtered
            && let Some(value) = &self.config.watch_filter
        {
            cfg = cfg.labels(&format!("{}={value}", drover_shared::labels::WATCH_FILTER));
        }
        set.spawn(watch::forward(
            api,
            cfg,
            self.interner.clone(),
            self.inputs.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ))
        .id()
    }
}

/// Marks the queue healthy once it answers (publishes keep the check current).
async fn probe_queue<Q: JobQueue>(
    queue: Arc<Q>,
    check: drover_telemetry::HealthCheck,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        // `depth` is cheap on every backend; `stats` reads every object record on JetStream.
        match queue.depth().await {
            Ok(_) => {
                check.set_ready(true);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "queue not reachable yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
