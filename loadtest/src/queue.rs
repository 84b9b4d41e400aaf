//! `drover loadtest queue`: queue throughput. Publish N jobs from
//! concurrent publishers, then claim and finish them with concurrent
//! workers.
//!
//! - Embedded (redb): drover's queue alone.
//! - JetStream: in one run against one server, with the same payload,
//!   raw async-nats (publish to one subject per object, pull and ack on a
//!   WorkQueue stream) and drover's queue (coalescing, dedupe and
//!   per-object exclusivity on), in rounds that alternate which goes
//!   first. The report's `raw_per_s` and `drover_per_s` are medians over
//!   the rounds, and `ratio` is the median of each round's ratio: the
//!   machines are shared and noisy, and a pair measured back to back sees
//!   the same noise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::NatsServer;
use drover_queue::{JobQueue, Outcome};
use drover_shared::jobs::{Cause, Change, Job, JobKind, ObjectRef};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// What to measure.
#[derive(Clone, Debug)]
pub struct QueueLoadOptions {
    /// Jobs (one object each).
    pub jobs: usize,
    /// Concurrent publishers, and concurrent workers.
    pub concurrency: usize,
    /// Jobs a worker claims at once.
    pub batch: usize,
    /// Rounds; the report gives medians.
    pub rounds: usize,
}

/// A drain that finishes nothing for this long has stalled: it fails
/// instead of waiting forever.
const STALL: Duration = Duration::from_secs(30);

/// Job `i` of a run. `run` (8 hex digits) makes the uids, and so the
/// dedupe ids, new in every run: a second run on the same server inside
/// the duplicate window would otherwise publish nothing but duplicates.
/// Fixed-width names keep every payload the same size.
fn job(run: &str, i: usize) -> Job {
    Job {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Noop,
        object: ObjectRef {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
            kind: "K0sWorkerConfig".into(),
            namespace: Some("default".into()),
            name: format!("worker-{i:06}"),
            uid: format!("{run}-0000-0000-0000-{i:012}"),
        },
        cluster: Some(format!("cluster-{:03}", i % 100)),
        cause: Cause {
            change: Change::Added,
            generation: Some(1),
            resource_version: format!("{i:07}"),
            via: None,
        },
        attempt: 0,
        trace: None,
    }
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// The run's jobs, built before the clock starts (the raw side's payload
/// is built beforehand too): the load generator's work is not the queue's.
fn jobs(n: usize) -> Arc<Vec<Job>> {
    let run = run_id();
    Arc::new((0..n).map(|i| job(&run, i)).collect())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Publishes `n` jobs from `concurrency` tasks; seconds taken.
async fn publish_all<F, Fut>(n: usize, concurrency: usize, publish: F) -> Result<f64, BoxError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, publish) = (next.clone(), publish.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, BoxError>(());
                }
                publish(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `concurrency` copies of `work` (each returns how many it
/// finished) until `total` are done; seconds taken. Fails when nothing
/// finishes for [`STALL`].
async fn drain_all<F, Fut>(total: u64, concurrency: usize, work: F) -> Result<f64, BoxError>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, BoxError>> + Send,
{
    let t = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    // A JoinSet: a stalled drain that returns aborts its workers.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (done, work) = (done.clone(), work.clone());
        workers.spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let n = work().await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(())
        });
    }
    let watchdog = {
        let done = done.clone();
        async move {
            let (mut seen, mut since) = (0, tokio::time::Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = done.load(Ordering::Relaxed);
                if now != seen {
                    (seen, since) = (now, tokio::time::Instant::now());
                } else if since.elapsed() >= STALL {
                    return now;
                }
            }
        }
    };
    let all = async {
        while let Some(w) = workers.join_next().await {
            w??;
        }
        Ok::<_, BoxError>(())
    };
    tokio::select! {
        r = all => r?,
        stuck = watchdog => {
            return Err(format!(
                "the drain stalled: {stuck} of {total} jobs finished, none in the last {}s",
                STALL.as_secs()
            )
            .into());
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Raw async-nats on `url`: a WorkQueue stream with one subject per
/// object (`max_msgs_per_subject = 1`, as drover's), publish with acks,
/// then pull in batches and ack every message. Returns (publish s, drain s).
async fn raw_jetstream(url: &str, opts: &QueueLoadOptions) -> Result<(f64, f64), BoxError> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let _ = js.delete_stream("RAW").await;
    let raw = js
        .create_stream(stream::Config {
            name: "RAW".into(),
            subjects: vec!["raw.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let payload: bytes::Bytes = serde_json::to_vec(&job(&run_id(), 0))?.into();
    let publish_s = {
        let (js, payload) = (js.clone(), payload.clone());
        publish_all(opts.jobs, opts.concurrency, move |i| {
            let (js, payload) = (js.clone(), payload.clone());
            async move {
                js.publish(format!("raw.worker-{i:06}"), payload)
                    .await?
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let consumer = raw
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: -1,
            ..Default::default()
        })
        .await?;
    let batch = opts.batch;
    let drain_s = drain_all(opts.jobs as u64, opts.concurrency, move || {
        let consumer = consumer.clone();
        async move {
            let mut msgs = consumer
                .fetch()
                .max_messages(batch)
                .expires(Duration::from_millis(50))
                .messages()
                .await?;
            let mut got = Vec::new();
            while let Some(m) = msgs.next().await {
                got.push(m?);
            }
            futures_util::future::try_join_all(got.iter().map(|m| m.double_ack())).await?;
            Ok(got.len() as u64)
        }
    })
    .await?;
    js.delete_stream("RAW").await?;
    Ok((publish_s, drain_s))
}

/// drover's JetStream queue on `url`, same jobs. Returns (publish s, drain s).
async fn drover_jetstream(url: &str, opts: &QueueLoadOptions) -> Result<(f64, f64), BoxError> {
    let q = Arc::new(JetStreamQueue::connect(JetStreamConfig::new(url)).await?);
    q.purge(drover_queue::PurgeScope::All).await?;
    // A round starts with no object records, as the first did.
    q.context()
        .get_stream(drover_queue::jetstream::OBJECTS_STREAM)
        .await?
        .purge()
        .await?;
    let publish_s = publish_jobs(q.clone(), jobs(opts.jobs), opts.concurrency).await?;
    let drain_s = drain(q, opts).await?;
    Ok((publish_s, drain_s))
}

/// Publishes `jobs` through `q` from `concurrency` tasks; seconds taken.
async fn publish_jobs<Q: JobQueue>(
    q: Arc<Q>,
    jobs: Arc<Vec<Job>>,
    concurrency: usize,
) -> Result<f64, BoxError> {
    publish_all(jobs.len(), concurrency, move |i| {
        let (q, jobs) = (q.clone(), jobs.clone());
        async move {
            q.publish(&jobs[i]).await?;
            Ok(())
        }
    })
    .await
}

/// Claims and finishes `opts.jobs` noop jobs with `opts.concurrency`
/// workers; seconds taken.
async fn drain<Q: JobQueue>(q: Arc<Q>, opts: &QueueLoadOptions) -> Result<f64, BoxError> {
    let batch = opts.batch;
    drain_all(opts.jobs as u64, opts.concurrency, move || {
        let q = q.clone();
        async move {
            let claims = q
                .claim(JobKind::Noop, batch, Duration::from_millis(50))
                .await?;
            let n = claims.len() as u64;
            futures_util::future::try_join_all(
                claims.into_iter().map(|c| q.finish(c, Outcome::Done)),
            )
            .await?;
            Ok(n)
        }
    })
    .await
}

/// Raw async-nats against drover's JetStream queue, one server, one run
/// of `opts.rounds` rounds. With no `url`, starts a nats-server (from
/// `PATH`) in a temporary folder.
pub async fn run_jetstream(opts: QueueLoadOptions, url: Option<String>) -> Result<Value, BoxError> {
    let dir = std::env::temp_dir().join(format!("drover-queue-load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let (server, url) = match url {
        Some(u) => (None, u),
        None => {
            let s = NatsServer::start(&dir).await?;
            let u = s.url();
            (Some(s), u)
        }
    };
    let version = async_nats::connect(url.as_str())
        .await?
        .server_info()
        .version;
    let n = opts.jobs as f64;
    let mut rounds = Vec::new();
    for r in 0..opts.rounds.max(1) {
        // Alternate which goes first, so that a drift in the machine's
        // load does not always favour the same side.
        let (raw, dr) = if r % 2 == 0 {
            let raw = raw_jetstream(&url, &opts).await?;
            (raw, drover_jetstream(&url, &opts).await?)
        } else {
            let dr = drover_jetstream(&url, &opts).await?;
            (raw_jetstream(&url, &opts).await?, dr)
        };
        let raw_per_s = n / (raw.0 + raw.1);
        let drover_per_s = n / (dr.0 + dr.1);
        rounds.push(json!({
            "first": if r % 2 == 0 { "raw" } else { "drover" },
            "raw_publish_per_s": n / raw.0,
            "raw_consume_ack_per_s": n / raw.1,
            "raw_per_s": raw_per_s,
            "drover_publish_per_s": n / dr.0,
            "drover_claim_finish_per_s": n / dr.1,
            "drover_per_s": drover_per_s,
            "ratio": drover_per_s / raw_per_s,
        }));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let med = |key: &str| median(rounds.iter().filter_map(|r| r[key].as_f64()).collect());
    Ok(json!({
        "backend": "jetstream",
        "nats_server": version,
        "jobs": opts.jobs,
        "payload_bytes": serde_json::to_vec(&job(&run_id(), 0))?.len(),
        "concurrency": opts.concurrency,
        "batch": opts.batch,
        "rounds": rounds.len(),
        "raw_publish_per_s": med("raw_publish_per_s"),
        "raw_consume_ack_per_s": med("raw_consume_ack_per_s"),
        "raw_per_s": med("raw_per_s"),
        "drover_publish_per_s": med("drover_publish_per_s"),
        "drover_claim_finish_per_s": med("drover_claim_finish_per_s"),
        "drover_per_s": med("drover_per_s"),
        "ratio": med("ratio"),
        "ratio_min": rounds.iter().filter_map(|r| r["ratio"].as_f64()).fold(f64::INFINITY, f64::min),
        "per_round": rounds,
        "note": "one server, one run, rounds alternating which side goes first: raw async-nats (publish with ack; pull, double-ack), and drover (publish with dedupe and coalescing; claim with a per-object record; finish: release the record, double-ack). *_per_s: medians over the rounds; without a phase, jobs over publish plus drain time. ratio: the median of the rounds' ratios",
    }))
}

/// Runs the embedded-backend measurement in a temporary folder, in
/// `opts.rounds` rounds (medians reported).
pub async fn run_embedded(opts: QueueLoadOptions) -> Result<Value, BoxError> {
    let dir = std::env::temp_dir().join(format!("drover-queue-load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let sample = serde_json::to_vec(&job(&run_id(), 0))?.len();
    let n = opts.jobs as f64;
    let mut rounds = Vec::new();
    for r in 0..opts.rounds.max(1) {
        let q = Arc::new(EmbeddedQueue::open(
            &dir.join(format!("queue-{r}.redb")),
            EmbeddedConfig::default(),
        )?);
        let publish_s = publish_jobs(q.clone(), jobs(opts.jobs), opts.concurrency).await?;
        let drain_s = drain(q, &opts).await?;

        // As in a running system: publishers and workers at the same
        // time, on a fresh file; from the first publish to the last finish.
        let q = Arc::new(EmbeddedQueue::open(
            &dir.join(format!("overlapped-{r}.redb")),
            EmbeddedConfig::default(),
        )?);
        let t = Instant::now();
        let publishing = {
            let (q, jobs, c) = (q.clone(), jobs(opts.jobs), opts.concurrency);
            tokio::spawn(async move { publish_jobs(q, jobs, c).await })
        };
        drain(q, &opts).await?;
        publishing.await??;
        let overlapped_s = t.elapsed().as_secs_f64();
        rounds.push(json!({
            "publish_per_s": n / publish_s,
            "claim_finish_per_s": n / drain_s,
            "phases_back_to_back_per_s": n / (publish_s + drain_s),
            "end_to_end_per_s": n / overlapped_s,
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med = |key: &str| median(rounds.iter().filter_map(|r| r[key].as_f64()).collect());
    Ok(json!({
        "backend": "embedded",
        "jobs": opts.jobs,
        "payload_bytes": sample,
        "concurrency": opts.concurrency,
        "batch": opts.batch,
        "rounds": rounds.len(),
        "publish_per_s": med("publish_per_s"),
        "claim_finish_per_s": med("claim_finish_per_s"),
        "phases_back_to_back_per_s": med("phases_back_to_back_per_s"),
        "end_to_end_per_s": med("end_to_end_per_s"),
        "per_round": rounds,
        "note": "publish phase, then claim+finish phase; then end to end: publishers and workers together on a fresh file, first publish to last finish. Same process; every publish and finish is committed to disk before it returns. Medians over the rounds",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn every_run_has_its_own_dedupe_ids_and_one_payload_size() {
        let (a, b) = (job(&run_id(), 7), job(&run_id(), 7));
        assert_ne!(a.dedupe_id(), b.dedupe_id());
        assert_eq!(a.subject(), b.subject(), "the same objects in every run");
        let size = |j: &Job| serde_json::to_vec(j).unwrap().len();
        assert_eq!(size(&job(&run_id(), 0)), size(&job(&run_id(), 99_999)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_that_finishes_nothing_fails_instead_of_hanging() {
        let e = drain_all(10, 2, || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(0)
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("stalled: 0 of 10"), "{e}");
    }
}
