//! The runtime: per kind, a claim loop that claims only as many jobs as
//! its pool has free slots, and one task per claimed job that runs the
//! handler, renews the lease, and finishes the claim with the outcome.
//!
//! ```text
//! claim loop (one per kind) ──claim(kind, free slots)──► queue
//!      │ spawn, holding a slot
//!      ▼
//! job task: handler ┬ renew every N ┬ release at the deadline
//!      │            └── lease lost: drop the handler
//!      ▼
//! finish(claim, outcome)
//! ```
//!
//! Shutdown (`Drain`): the claim loops stop at once; jobs in flight
//! run on until [`Settings::shutdown_deadline`]; those still running then
//! are released (finished with "run again now", no attempt spent).
//!
//! Generic over the handlers' context `C`, so it is tested with handlers
//! that need no Kubernetes.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use drover_queue::{Claim, Finished, JobQueue, Outcome, QueueError};
use drover_shared::jobs::JobKind;
use drover_telemetry::HealthCheck;
use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::outcome::{self, Handled};
use crate::{Handler, HandlerError, WorkerError, WorkerMetrics};

/// How long one claim call waits for a first job. Bounds how long a claim
/// loop takes to notice shutdown.
pub const CLAIM_WAIT: Duration = Duration::from_millis(500);
/// How often the queue depth gauge is refreshed.
pub const DEPTH_EVERY: Duration = Duration::from_secs(5);
/// After the shutdown deadline, how long released jobs get to finish
/// their release before the runtime returns anyway.
const RELEASE_GRACE: Duration = Duration::from_secs(10);

/// One kind's pool: its handler and its concurrency limit.
pub struct Pool<C> {
    /// The kind it claims.
    pub kind: JobKind,
    /// Jobs it runs at once.
    pub concurrency: usize,
    /// The handler.
    pub handler: Arc<dyn Handler<C>>,
}

/// Timing of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long jobs in flight may run on after shutdown is signalled.
    pub shutdown_deadline: Duration,
    /// How often a running job's lease is renewed.
    pub lease_renew_every: Duration,
    /// How long one claim call waits.
    pub claim_wait: Duration,
    /// How often the depth gauge is polled.
    pub depth_every: Duration,
}

/// A pool's free slots: a job holds one from before its claim until it is
/// finished, so a pool never runs more than its concurrency, and a claim
/// asks for no more jobs than there are free slots (no prefetch).
#[derive(Clone)]
struct Slots(Arc<Semaphore>);

impl Slots {
    fn new(n: usize) -> Self {
        Self(Arc::new(Semaphore::new(n)))
    }

    /// Waits for one free slot, then takes every other free one.
    async fn take(&self) -> Vec<OwnedSemaphorePermit> {
        let Ok(first) = self.0.clone().acquire_owned().await else {
            return Vec::new(); // never closed
        };
        let mut held = vec![first];
        while let Ok(p) = self.0.clone().try_acquire_owned() {
            held.push(p);
        }
        held
    }
}

/// The shutdown protocol, in the style of mini-redis: each field is one
/// step.
#[derive(Clone)]
struct Drain {
    /// Cancelled by the caller: claim loops stop claiming.
    stop_claiming: CancellationToken,
    /// Cancelled at the shutdown deadline: job tasks drop their handlers
    /// and release their claims.
    release: CancellationToken,
    /// Every job task; the runtime returns when it is empty.
    jobs: TaskTracker,
}

/// Everything a job task needs, shared.
struct Shared<Q, C> {
    queue: Arc<Q>,
    ctx: Arc<C>,
    metrics: WorkerMetrics,
    settings: Settings,
    drain: Drain,
}

/// Runs the pools until `shutdown` is cancelled and the jobs in flight
/// have finished or been released. `queue_health` becomes ready once a
/// claim call has succeeded.
pub async fn serve<Q: JobQueue, C: Send + Sync + 'static>(
    queue: Arc<Q>,
    ctx: Arc<C>,
    pools: Vec<Pool<C>>,
    settings: Settings,
    metrics: WorkerMetrics,
    queue_health: HealthCheck,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    for p in &pools {
        if p.concurrency == 0 {
            return Err(WorkerError::ZeroConcurrency { kind: p.kind });
        }
    }
    if settings.lease_renew_every.is_zero() {
        return Err(WorkerError::Config {
            field: "lease_renew_every",
            message: "must be more than zero".into(),
        });
    }
    let drain = Drain {
        stop_claiming: shutdown.clone(),
        release: CancellationToken::new(),
        jobs: TaskTracker::new(),
    };
    let shared = Arc::new(Shared {
        queue,
        ctx,
        metrics,
        settings,
        drain: drain.clone(),
    });
    // The deadline starts when shutdown is signalled.
    let deadline = tokio::spawn({
        let drain = drain.clone();
        let after = settings.shutdown_deadline;
        async move {
            drain.stop_claiming.cancelled().await;
            tokio::time::sleep(after).await;
            if !drain.jobs.is_empty() {
                tracing::warn!(
                    jobs = drain.jobs.len(),
                    "shutdown deadline passed: releasing jobs in flight"
                );
            }
            drain.release.cancel();
        }
    });
    let kinds: Vec<JobKind> = pools.iter().map(|p| p.kind).collect();
    let loops = pools
        .into_iter()
        .map(|p| tokio::spawn(claim_loop(shared.clone(), p, queue_health.clone())));
    let depth = tokio::spawn(poll_depth(shared.clone(), kinds));
    for l in futures_util::future::join_all(loops).await {
        if let Err(e) = l {
            tracing::error!(error = %e, "a claim loop ended abnormally");
        }
    }
    let _ = depth.await;
    drain.jobs.close();
    tokio::select! {
        () = drain.jobs.wait() => {}
        () = async {
            drain.release.cancelled().await;
            tokio::time::sleep(RELEASE_GRACE).await;
        } => {
            tracing::error!(jobs = drain.jobs.len(), "released jobs did not finish; their leases will expire");
        }
    }
    deadline.abort();
    tracing::info!("workers stopped");
    Ok(())
}

/// Claims jobs of one kind while there are free slots and spawns a task
/// for each.
async fn claim_loop<Q: JobQueue, C: Send + Sync + 'static>(
    shared: Arc<Shared<Q, C>>,
    pool: Pool<C>,
    queue_health: HealthCheck,
) {
    let slots = Slots::new(pool.concurrency);
    let stop = shared.drain.stop_claiming.clone();
    let mut backoff = Duration::from_millis(100);
    tracing::info!(kind = %pool.kind, concurrency = pool.concurrency, handler = pool.handler.name(), "pool started");
    loop {
        let mut free = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            held = slots.take() => held,
        };
        let started = Instant::now();
        // Not raced against `stop`: dropping a claim call midway could
        // lose claims it made. It returns within `claim_wait`.
        let claimed = shared
            .queue
            .claim(pool.kind, free.len(), shared.settings.claim_wait)
            .await;
        shared
            .metrics
            .claim_waited(pool.kind, started.elapsed().as_secs_f64());
        let claims = match claimed {
            Ok(c) => {
                queue_health.set_ready(true);
                backoff = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::warn!(kind = %pool.kind, error = %e, retry_in = ?backoff, "claim failed");
                drop(free);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for claim in claims {
            let Some(slot) = free.pop() else {
                // More claims than asked for: a queue bug; give it back.
                tracing::error!(kind = %pool.kind, job = %claim.job.id, "the queue returned more claims than asked for");
                spawn_release(&shared, claim);
                continue;
            };
            if stop.is_cancelled() {
                spawn_release(&shared, claim);
                continue;
            }
            let span = job_span(&claim);
            let task = run_job(shared.clone(), pool.handler.clone(), claim, slot);
            shared.drain.jobs.spawn(task.instrument(span));
        }
        // Unused slots go back with `free`.
    }
    tracing::info!(kind = %pool.kind, "pool stopped claiming");
}

/// One span per job, a child of the job's trace context.
fn job_span(claim: &Claim) -> tracing::Span {
    let job = &claim.job;
    let span = tracing::info_span!(
        "job",
        job.id = %job.id,
        job.kind = %job.kind,
        job.object = %format_args!("{}/{}", job.object.kind, job.object_key()),
        job.attempt = job.attempt,
        // The watcher's trace, so log lines join the trace even without OTLP.
        trace_id = job.trace.as_ref().and_then(drover_telemetry::trace::trace_id),
    );
    drover_telemetry::trace::set_parent(&span, job.trace.as_ref());
    span
}

/// Gives a claim back at once (shutdown).
fn spawn_release<Q: JobQueue, C: Send + Sync + 'static>(shared: &Arc<Shared<Q, C>>, claim: Claim) {
    let shared2 = shared.clone();
    let span = job_span(&claim);
    shared.drain.jobs.spawn(
        async move {
            let kind = claim.job.kind;
            finish(&shared2, claim, Outcome::RunAfter(Duration::ZERO)).await;
            shared2.metrics.ended(kind, "released");
        }
        .instrument(span),
    );
}

/// How a job task's run ended.
enum Ended {
    Handled(crate::HandlerResult),
    LeaseLost,
    Released,
}

/// Runs the handler, renewing the lease meanwhile, and finishes the claim.
async fn run_job<Q: JobQueue, C: Send + Sync + 'static>(
    shared: Arc<Shared<Q, C>>,
    handler: Arc<dyn Handler<C>>,
    claim: Claim,
    _slot: OwnedSemaphorePermit,
) {
    let kind = claim.job.kind;
    let _in_flight = shared.metrics.in_flight(kind);
    let started = Instant::now();
    tracing::debug!(handler = handler.name(), "job started");
    let ended = {
        let handling = AssertUnwindSafe(handler.handle(&shared.ctx, &claim.job)).catch_unwind();
        let renewing = keep_renewed(&*shared.queue, &claim, shared.settings.lease_renew_every);
        tokio::pin!(handling, renewing);
        tokio::select! {
            biased;
            r = &mut handling => Ended::Handled(r.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(HandlerError::Panicked(what))
            })),
            () = &mut renewing => Ended::LeaseLost,
            () = shared.drain.release.cancelled() => Ended::Released,
        }
    };
    match ended {
        Ended::Handled(result) => {
            shared
                .metrics
                .handler_ran(kind, started.elapsed().as_secs_f64());
            let outcome = outcome::for_job(&claim.job, &result);
            match &result {
                Ok(Handled::Done) => tracing::debug!("job done"),
                Ok(Handled::RunAfter(d)) => tracing::debug!(after = ?d, "job runs again later"),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "job failed; it will be retried")
                }
                Err(e) if outcome == Outcome::Done => {
                    tracing::warn!(error = %e, "resync met bad input; its earlier dead letter stands")
                }
                Err(e) => tracing::error!(error = %e, "job failed for good"),
            }
            let label = outcome::label(&outcome);
            if finish(&shared, claim, outcome).await == Some(Finished::LeaseLost) {
                shared.metrics.ended(kind, "lease_lost");
            } else {
                shared.metrics.ended(kind, label);
            }
        }
        Ended::LeaseLost => {
            tracing::warn!("lease lost while the handler ran; another claim decides");
            shared.metrics.ended(kind, "lease_lost");
        }
        Ended::Released => {
            tracing::info!("released at the shutdown deadline; it runs again elsewhere");
            finish(&shared, claim, Outcome::RunAfter(Duration::ZERO)).await;
            shared.metrics.ended(kind, "released");
        }
    }
}

/// Renews `claim` every `every`; returns only when the lease is lost. A
/// failed renewal is tried again after a quarter of the period, not a whole
/// one: two slow retries in a row could let the lease run out while the
/// handler still works, and another worker would then claim the object.
async fn keep_renewed<Q: JobQueue>(queue: &Q, claim: &Claim, every: Duration) {
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match queue
            .renew(claim)
            .instrument(tracing::debug_span!("renew_lease"))
            .await
        {
            Ok(()) => {
                tracing::trace!("lease renewed");
                wait = every;
            }
            Err(QueueError::LeaseLost(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed; trying again soon");
                wait = (every / 4).max(Duration::from_millis(50));
            }
        }
    }
}

/// Finishes a claim, trying a few times on errors that may pass. `None`
/// when it could not be finished (its lease will expire and count an
/// attempt).
async fn finish<Q: JobQueue, C>(
    shared: &Shared<Q, C>,
    claim: Claim,
    outcome: Outcome,
) -> Option<Finished> {
    let kind = claim.job.kind;
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        match shared
            .queue
            .finish(claim.clone(), outcome.clone())
            .instrument(tracing::debug_span!("finish_claim"))
            .await
        {
            Ok(f) => {
                match f {
                    Finished::DeadLettered => shared.metrics.dead_lettered(kind),
                    Finished::LeaseLost => {
                        tracing::warn!("the lease had expired; the outcome was dropped");
                    }
                    Finished::Retrying(d) => tracing::debug!(after = ?d, "retry queued"),
                    Finished::Settled => {}
                }
                return Some(f);
            }
            Err(e) if e.is_retryable() && attempt < 4 => {
                tracing::warn!(error = %e, "finishing the claim failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, "the claim could not be finished; its lease will expire");
                return None;
            }
        }
    }
    None
}

/// Refreshes the depth gauge of the pools' kinds until shutdown.
async fn poll_depth<Q: JobQueue, C>(shared: Arc<Shared<Q, C>>, kinds: Vec<JobKind>) {
    let stop = shared.drain.stop_claiming.clone();
    loop {
        match shared.queue.depth().await {
            Ok(depth) => {
                let depth: BTreeMap<String, u64> = depth;
                for k in &kinds {
                    shared
                        .metrics
                        .set_depth(*k, depth.get(k.as_str()).copied().unwrap_or(0));
                }
            }
            Err(e) => tracing::debug!(error = %e, "queue depth unavailable"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(shared.settings.depth_every) => {}
        }
    }
}
