//! The runtime with the embedded queue and test handlers (no Kubernetes):
//! concurrency limits, outcome mapping, lease renewal, shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::{JobQueue, JobSelector, RetryPolicy};
use drover_shared::jobs::{Job, JobKind};
use drover_telemetry::{Health, Registry};
use drover_workers::runtime::{self, Pool, Settings};
use drover_workers::{Handled, Handler, HandlerError, HandlerResult, WorkerMetrics};
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    min_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(40),
};

/// A job for object `name` (the queue's own test helper, at resourceVersion 1).
fn job(kind: JobKind, name: &str) -> Job {
    drover_queue::conformance::job(kind, name, 1)
}

/// What the test handler saw.
#[derive(Default)]
struct Seen {
    running: Mutex<HashMap<JobKind, usize>>,
    max_running: Mutex<HashMap<JobKind, usize>>,
    /// Runs per object name, with the attempt each run saw.
    runs: Mutex<HashMap<String, Vec<u32>>>,
    /// The queue's own count of claims in flight exceeded the pool's limit.
    queue_over_limit: AtomicUsize,
}

struct Ctx {
    queue: Arc<EmbeddedQueue>,
    limits: HashMap<JobKind, usize>,
    seen: Seen,
    /// Jobs named `stuck` wait for this.
    unstick: CancellationToken,
}

impl Ctx {
    fn runs(&self, name: &str) -> Vec<u32> {
        self.seen
            .runs
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

/// Behaves by the object's name: `sleep-*` sleeps 40 ms, `long` 1 s,
/// `later` runs again in an hour, `flaky` conflicts, `bad` is bad input,
/// `panics` panics, `stuck` waits until unstuck; anything else is done.
struct TestHandler;

impl Handler<Ctx> for TestHandler {
    fn name(&self) -> &'static str {
        "test"
    }

    fn handle<'a>(&'a self, ctx: &'a Ctx, job: &'a Job) -> BoxFuture<'a, HandlerResult> {
        Box::pin(async move {
            let kind = job.kind;
            {
                let mut running = ctx.seen.running.lock().unwrap();
                let n = running.entry(kind).or_default();
                *n += 1;
                let mut max = ctx.seen.max_running.lock().unwrap();
                let m = max.entry(kind).or_default();
                *m = (*m).max(*n);
            }
            ctx.seen
                .runs
                .lock()
                .unwrap()
                .entry(job.object.name.clone())
                .or_default()
                .push(job.attempt);
            // No prefetch: the queue never holds more claims of this kind
            // than the pool has slots.
            let stats = ctx.queue.stats().await.unwrap();
            let in_flight = stats.in_flight.get(kind.as_str()).copied().unwrap_or(0);
            if in_flight > ctx.limits[&kind] as u64 {
                ctx.seen.queue_over_limit.fetch_add(1, Ordering::Relaxed);
            }
            let name = job.object.name.as_str();
            let result = match name {
                n if n.starts_with("sleep-") => {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Ok(Handled::Done)
                }
                "long" => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(Handled::Done)
                }
                "later" => Ok(Handled::RunAfter(Duration::from_secs(3600))),
                "flaky" => Err(HandlerError::Conflict("flaky changed".into())),
                "bad" => Err(HandlerError::bad_input("spec.version", "not a version")),
                "panics" => panic!("the handler broke"),
                "stuck" => {
                    ctx.unstick.cancelled().await;
                    Ok(Handled::Done)
                }
                _ => Ok(Handled::Done),
            };
            *ctx.seen.running.lock().unwrap().get_mut(&kind).unwrap() -= 1;
            result
        })
    }
}

struct Running {
    ctx: Arc<Ctx>,
    queue: Arc<EmbeddedQueue>,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), drover_workers::WorkerError>>,
    _dir: tempfile::TempDir,
}

fn start(pools: &[(JobKind, usize)], lease: Duration, settings: Settings) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(
        EmbeddedQueue::open(
            &dir.path().join("q.redb"),
            EmbeddedConfig {
                lease,
                dedupe_window: Duration::from_secs(5),
                policy: |_| RETRY,
            },
        )
        .unwrap(),
    );
    let ctx = Arc::new(Ctx {
        queue: queue.clone(),
        limits: pools.iter().copied().collect(),
        seen: Seen::default(),
        unstick: CancellationToken::new(),
    });
    let metrics = WorkerMetrics::register(&mut Registry::default());
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let handler: Arc<dyn Handler<Ctx>> = Arc::new(TestHandler);
    let pools = pools
        .iter()
        .map(|(kind, concurrency)| Pool {
            kind: *kind,
            concurrency: *concurrency,
            handler: handler.clone(),
        })
        .collect();
    let task = tokio::spawn(runtime::serve(
        queue.clone(),
        ctx.clone(),
        pools,
        settings,
        metrics.clone(),
        health.check("queue"),
        shutdown.clone(),
    ));
    Running {
        ctx,
        queue,
        metrics,
        health,
        shutdown,
        task,
        _dir: dir,
    }
}

fn settings() -> Settings {
    Settings {
        shutdown_deadline: Duration::from_secs(5),
        lease_renew_every: Duration::from_millis(100),
        claim_wait: Duration::from_millis(100),
        depth_every: Duration::from_millis(50),
    }
}

/// Polls `cond` until it holds, failing with `what` after 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn concurrency_per_kind_is_never_exceeded() {
    let r = start(
        &[(JobKind::Bootstrap, 3), (JobKind::RemoteMachine, 1)],
        Duration::from_secs(30),
        settings(),
    );
    for i in 0..12 {
        r.queue
            .publish(&job(JobKind::Bootstrap, &format!("sleep-b{i}")))
            .await
            .unwrap();
    }
    for i in 0..4 {
        r.queue
            .publish(&job(JobKind::RemoteMachine, &format!("sleep-r{i}")))
            .await
            .unwrap();
    }
    eventually("every job done", || {
        r.metrics.outcome_count(JobKind::Bootstrap, "done") == 12
            && r.metrics.outcome_count(JobKind::RemoteMachine, "done") == 4
    })
    .await;
    let max = r.ctx.seen.max_running.lock().unwrap().clone();
    assert_eq!(max[&JobKind::Bootstrap], 3, "the pool ran up to its limit");
    assert_eq!(max[&JobKind::RemoteMachine], 1);
    assert_eq!(
        r.ctx.seen.queue_over_limit.load(Ordering::Relaxed),
        0,
        "a pool claimed more than its free slots"
    );
    assert!(r.health.ready().is_ok(), "a claim succeeded: queue ready");
    eventually("nothing in flight", || {
        r.metrics.jobs_in_flight(JobKind::Bootstrap) == 0
    })
    .await;
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn outcomes_reach_the_queue() {
    let r = start(
        &[(JobKind::Bootstrap, 4)],
        Duration::from_secs(30),
        settings(),
    );
    for name in ["done", "later", "flaky", "bad", "panics"] {
        r.queue
            .publish(&job(JobKind::Bootstrap, name))
            .await
            .unwrap();
    }
    let m = &r.metrics;
    eventually("every job settled", || {
        m.outcome_count(JobKind::Bootstrap, "done") == 1
            && m.outcome_count(JobKind::Bootstrap, "run_after") == 1
            && m.dead_letter_count(JobKind::Bootstrap) == 3
    })
    .await;
    // Retryable failures ran `max_attempts` times, each seeing its attempt.
    assert_eq!(r.ctx.runs("flaky"), [0, 1, 2]);
    assert_eq!(r.ctx.runs("panics"), [0, 1, 2]);
    assert_eq!(m.outcome_count(JobKind::Bootstrap, "retry"), 6);
    // Bad input is dead-lettered at once, naming the field.
    assert_eq!(r.ctx.runs("bad"), [0]);
    assert_eq!(m.outcome_count(JobKind::Bootstrap, "dead_letter"), 1);
    let dead = r.queue.dead_letters(&JobSelector::all()).await.unwrap();
    let error_of = |name: &str| {
        dead.iter()
            .find(|d| d.job.object.name == name)
            .map(|d| d.error.clone())
            .unwrap_or_else(|| panic!("{name} is not dead-lettered: {dead:?}"))
    };
    assert!(error_of("bad").contains("spec.version"));
    assert!(error_of("flaky").contains("conflict"));
    assert!(error_of("panics").contains("the handler broke"));
    // "Run again after an hour" is pending, not dead and not lost.
    let stats = r.queue.stats().await.unwrap();
    assert_eq!(stats.pending.get("bootstrap"), Some(&1), "{stats:?}");
    assert_eq!(r.ctx.runs("later"), [0]);
    assert_eq!(r.ctx.runs("done"), [0]);
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn long_jobs_renew_their_lease() {
    // A 300 ms lease, renewed every 100 ms, for a 1 s job: without renewal
    // the lease expires, the job comes back as a failed attempt and runs
    // again in the pool's second slot.
    let r = start(
        &[(JobKind::RemoteMachine, 2)],
        Duration::from_millis(300),
        settings(),
    );
    r.queue
        .publish(&job(JobKind::RemoteMachine, "long"))
        .await
        .unwrap();
    eventually("the long job done", || {
        r.metrics.outcome_count(JobKind::RemoteMachine, "done") == 1
    })
    .await;
    assert_eq!(r.ctx.runs("long"), [0], "one run, no failed attempt");
    assert_eq!(
        r.metrics
            .outcome_count(JobKind::RemoteMachine, "lease_lost"),
        0
    );
    // Nothing is left to run: the lease was never lost.
    let stats = r.queue.stats().await.unwrap();
    assert!(
        stats.pending.is_empty() && stats.in_flight.is_empty(),
        "{stats:?}"
    );
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_releases_jobs_still_running_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let r = start(
        &[(JobKind::Bootstrap, 1)],
        Duration::from_secs(30),
        Settings {
            shutdown_deadline: deadline,
            ..settings()
        },
    );
    r.queue
        .publish(&job(JobKind::Bootstrap, "stuck"))
        .await
        .unwrap();
    eventually("the stuck job running", || r.ctx.runs("stuck").len() == 1).await;
    // The pool is full: more jobs wait in the queue, counted by the gauge.
    for i in 0..3 {
        r.queue
            .publish(&job(JobKind::Bootstrap, &format!("waiting-{i}")))
            .await
            .unwrap();
    }
    eventually("the depth gauge shows the waiting jobs", || {
        r.metrics.queue_depth(JobKind::Bootstrap) == 3
    })
    .await;
    let stopping = Instant::now();
    r.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("the runtime stops after the deadline")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() >= deadline, "jobs got their deadline");
    assert_eq!(r.metrics.outcome_count(JobKind::Bootstrap, "released"), 1);
    assert_eq!(r.metrics.jobs_in_flight(JobKind::Bootstrap), 0);
    // Released: claimable again at once, without a spent attempt; the
    // waiting jobs were never claimed.
    let claims = r
        .queue
        .claim(JobKind::Bootstrap, 10, Duration::ZERO)
        .await
        .unwrap();
    let mut names: Vec<_> = claims.iter().map(|c| c.job.object.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["stuck", "waiting-0", "waiting-1", "waiting-2"]);
    let stuck = claims
        .iter()
        .find(|c| c.job.object.name == "stuck")
        .unwrap();
    assert_eq!(stuck.job.attempt, 0);
    assert!(stuck.history.is_empty());
    assert_eq!(r.ctx.runs("waiting-0"), Vec::<u32>::new());
}

#[tokio::test]
async fn shutdown_lets_jobs_finish_before_the_deadline() {
    let r = start(
        &[(JobKind::Bootstrap, 1)],
        Duration::from_secs(30),
        settings(),
    );
    r.queue
        .publish(&job(JobKind::Bootstrap, "stuck"))
        .await
        .unwrap();
    eventually("the job running", || r.ctx.runs("stuck").len() == 1).await;
    r.shutdown.cancel();
    // It finishes well inside the 5 s deadline; the runtime returns then.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !r.task.is_finished(),
        "the runtime waits for jobs in flight"
    );
    r.ctx.unstick.cancel();
    tokio::time::timeout(Duration::from_secs(3), r.task)
        .await
        .expect("the runtime stops once the job finished")
        .unwrap()
        .unwrap();
    assert_eq!(r.metrics.outcome_count(JobKind::Bootstrap, "done"), 1);
    assert_eq!(r.metrics.outcome_count(JobKind::Bootstrap, "released"), 0);
    assert!(
        r.queue
            .claim(JobKind::Bootstrap, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_pool_without_slots_is_refused() {
    let r = start(
        &[(JobKind::Bootstrap, 0)],
        Duration::from_secs(30),
        settings(),
    );
    let e = r.task.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("bootstrap"), "{e}");
}
