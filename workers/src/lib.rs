//! drover's workers: claim jobs from the queue, one pool per job kind,
//! and run each job's handler.
//!
//! # Layout
//!
//! - [`config`]: [`WorkerConfig`]: the pools (a concurrency limit per
//!   kind), the stand-in handlers, the shutdown deadline, lease renewal.
//! - [`runtime`]: the claim loops and job tasks: claims only as many jobs
//!   as there are free slots (no prefetch), renews leases while handlers
//!   run, maps outcomes to the queue, and drains on shutdown
//!   (stop claiming, let jobs finish, release them at the deadline).
//! - [`handler`]: the [`Handler`] trait, one implementation per job kind.
//! - [`handlers`]: the handler modules: `bootstrap` (K0sWorkerConfig,
//!   K0sControllerConfig) and the `noop` and `echo` stand-ins.
//! - [`context`]: [`Context`], what production handlers share: the
//!   management client, [`children`] (child cluster clients from their
//!   kubeconfig Secrets), an Event recorder, the field manager `drover`.
//! - [`outcome`]: [`Handled`] and its mapping onto the queue's `Outcome`.
//! - [`error`]: [`WorkerError`] (cannot start) and [`HandlerError`] (a job
//!   failed; [`HandlerError::is_retryable`] says whether to retry).
//! - [`metrics`]: [`WorkerMetrics`], the Prometheus families.
//!
//! # Shutdown
//!
//! [`run`] returns after its `shutdown` token is cancelled: claiming stops
//! at once (within one claim wait, [`runtime::CLAIM_WAIT`]); jobs in flight
//! run on until [`WorkerConfig::shutdown_deadline`]; jobs still running
//! then are dropped and finished with `RunAfter(0)`, so another worker runs
//! them at once without spending an attempt.

pub mod children;
pub mod config;
pub mod context;
pub mod error;
pub mod handler;
pub mod handlers;
pub mod metrics;
pub mod outcome;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

use drover_queue::JobQueue;
use drover_telemetry::Health;
use tokio_util::sync::CancellationToken;

pub use config::{PoolConfig, StandIn, WorkerConfig};
pub use context::{Context, FIELD_MANAGER};
pub use error::{HandlerError, WorkerError};
pub use handler::Handler;
pub use metrics::WorkerMetrics;
pub use outcome::{Handled, HandlerResult};

/// Serves `config.pools` from `queue` until `shutdown` is cancelled and
/// the jobs in flight have finished or been released.
///
/// Registers two readiness checks in `health`: `queue` (ready once a claim
/// call succeeded) and `kube` (ready once the management API answered
/// `GET /version`). Fails at once if a pool has no handler or no slots.
pub async fn run<Q: JobQueue>(
    mgmt: kube::Client,
    queue: Arc<Q>,
    config: WorkerConfig,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut pools = Vec::new();
    for (kind, pool) in &config.pools {
        pools.push(runtime::Pool {
            kind: *kind,
            concurrency: pool.concurrency,
            handler: handlers::for_kind(*kind, &config)?,
        });
    }
    let settings = runtime::Settings {
        shutdown_deadline: config.shutdown_deadline,
        lease_renew_every: config.lease_renew_every,
        claim_wait: runtime::CLAIM_WAIT,
        depth_every: runtime::DEPTH_EVERY,
    };
    let queue_check = health.check("queue");
    let kube_check = health.check("kube");
    let probe = tokio::spawn({
        let client = mgmt.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut wait = Duration::from_millis(200);
            loop {
                match client.apiserver_version().await {
                    Ok(v) => {
                        tracing::info!(version = %v.git_version, "management cluster answered");
                        kube_check.set_ready(true);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "management cluster not answering yet"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    });
    let ctx = Arc::new(Context::new(mgmt));
    let result = runtime::serve(queue, ctx, pools, settings, metrics, queue_check, shutdown).await;
    probe.abort();
    result
}
