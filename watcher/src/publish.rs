//! Publishing: a bounded number of publishes in flight, each retried with
//! capped exponential backoff until the queue takes it.
//!
//! [`Publisher::publish`] waits for a free slot, so when the queue is slow
//! or down the dispatcher waits, the watch channels fill up and the watch
//! tasks stop reading events: backpressure all the way to the API server
//! connection instead of an unbounded buffer.

use std::sync::Arc;
use std::time::Duration;

use drover_queue::{JobQueue, Published};
use drover_shared::jobs::Job;
use drover_telemetry::HealthCheck;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::WatcherMetrics;

/// First retry delay after a failed publish.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest retry delay while running.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// After shutdown, how long a failing publish is still retried before it
/// is given up (the next start re-publishes every object anyway).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Publishes jobs with at most N in flight.
pub(crate) struct Publisher<Q> {
    queue: Arc<Q>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    metrics: WatcherMetrics,
    queue_health: HealthCheck,
    shutdown: CancellationToken,
}

impl<Q: JobQueue> Publisher<Q> {
    pub(crate) fn new(
        queue: Arc<Q>,
        max_in_flight: usize,
        metrics: WatcherMetrics,
        queue_health: HealthCheck,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            queue,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            tasks: TaskTracker::new(),
            metrics,
            queue_health,
            shutdown,
        }
    }

    /// Starts publishing `job` once a slot is free; returns when it has one.
    /// The publish runs in the current span.
    pub(crate) async fn publish(&self, job: Job) {
        // After shutdown no new publish starts: during a queue outage each
        // would wait out its own grace period, and a fan-out (a Secret used
        // by thousands of objects) would hold the process past its
        // termination grace. The next start's sweep publishes them anyway.
        let slot = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return,
            slot = self.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // never closed
            },
        };
        let queue = self.queue.clone();
        let metrics = self.metrics.clone();
        let health = self.queue_health.clone();
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!("publish", job_kind = %job.kind, subject = %job.subject());
        self.tasks.spawn(
            async move {
                publish_until_taken(&*queue, &job, &metrics, &health, &shutdown).await;
                drop(slot);
            }
            .instrument(span),
        );
    }

    /// Waits for every publish in flight.
    pub(crate) async fn finish(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn publish_until_taken<Q: JobQueue>(
    queue: &Q,
    job: &Job,
    metrics: &WatcherMetrics,
    health: &HealthCheck,
    shutdown: &CancellationToken,
) {
    let mut delay = FIRST_RETRY;
    let mut give_up_at = None;
    loop {
        match queue.publish(job).await {
            Ok(published) => {
                health.set_ready(true);
                let family = match published {
                    Published::Queued => &metrics.published,
                    Published::Coalesced => &metrics.coalesced,
                    Published::Duplicate => &metrics.deduped,
                };
                WatcherMetrics::job(family, job.kind);
                tracing::debug!(?published, dedupe_id = %job.dedupe_id(), "published");
                return;
            }
            Err(e) => {
                metrics.publish_errors.inc();
                health.set_ready(false);
                if shutdown.is_cancelled() {
                    let deadline = *give_up_at
                        .get_or_insert_with(|| tokio::time::Instant::now() + SHUTDOWN_GRACE);
                    if tokio::time::Instant::now() >= deadline {
                        tracing::error!(error = %e, job = %job.object_key(), "giving up a publish at shutdown");
                        return;
                    }
                    delay = delay.min(Duration::from_secs(1));
                }
                tracing::warn!(error = %e, retry_in = ?delay, job = %job.object_key(), "publish failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use drover_queue::QueueError;
    use drover_queue::model::{
        Claim, DeadLetter, Finished, JobSelector, Outcome, PurgeScope, QueueStats,
    };
    use drover_shared::jobs::{Cause, Change, JobKind, ObjectRef};

    use super::*;

    /// A queue whose first `failures` publishes fail.
    struct FlakyQueue {
        failures: AtomicUsize,
        taken: Mutex<Vec<String>>,
    }

    impl JobQueue for FlakyQueue {
        async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(QueueError::Closed);
            }
            self.taken.lock().unwrap().push(job.object.name.clone());
            Ok(Published::Queued)
        }
        async fn claim(&self, _: JobKind, _: usize, _: Duration) -> Result<Vec<Claim>, QueueError> {
            Err(QueueError::Closed)
        }
        async fn renew(&self, _: &Claim) -> Result<(), QueueError> {
            Err(QueueError::Closed)
        }
        async fn finish(&self, _: Claim, _: Outcome) -> Result<Finished, QueueError> {
            Err(QueueError::Closed)
        }
        async fn stats(&self) -> Result<QueueStats, QueueError> {
            Err(QueueError::Closed)
        }
        async fn depth(&self) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
            Err(QueueError::Closed)
        }
        async fn dead_letters(&self, _: &JobSelector) -> Result<Vec<DeadLetter>, QueueError> {
            Err(QueueError::Closed)
        }
        async fn replay(&self, _: &JobSelector) -> Result<usize, QueueError> {
            Err(QueueError::Closed)
        }
        async fn purge(&self, _: PurgeScope) -> Result<usize, QueueError> {
            Err(QueueError::Closed)
        }
    }

    fn job(name: &str) -> Job {
        Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind: JobKind::Bootstrap,
            object: ObjectRef {
                api_version: "v1".into(),
                kind: "K0sWorkerConfig".into(),
                namespace: Some("default".into()),
                name: name.into(),
                uid: name.into(),
            },
            cluster: None,
            cause: Cause {
                change: Change::Added,
                generation: None,
                resource_version: "1".into(),
                via: None,
            },
            attempt: 0,
            trace: None,
        }
    }

    #[tokio::test]
    async fn failed_publishes_are_retried_and_a_full_pipeline_waits() {
        let queue = Arc::new(FlakyQueue {
            failures: AtomicUsize::new(3),
            taken: Mutex::new(Vec::new()),
        });
        let metrics = WatcherMetrics::default();
        let health = drover_telemetry::Health::new();
        let check = health.check("queue");
        let publisher = Publisher::new(
            queue.clone(),
            1,
            metrics.clone(),
            check.clone(),
            CancellationToken::new(),
        );
        publisher.publish(job("a")).await;
        // One slot: the second publish waits until "a" got through its failures.
        publisher.publish(job("b")).await;
        assert_eq!(*queue.taken.lock().unwrap(), ["a"]);
        assert_eq!(metrics.publish_errors.get(), 3);
        publisher.finish().await;
        assert_eq!(*queue.taken.lock().unwrap(), ["a", "b"]);
        assert!(check.is_ready());
    }
}
