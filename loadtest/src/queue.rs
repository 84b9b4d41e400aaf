//! `drover loadtest queue`: queue throughput. Publish N jobs from
//! concurrent publishers, then claim and finish them with concurrent
//! workers.
//!
//! - Embedded (redb): drover's queue alone.
//! - JetStream: in one run against one server, with the same payload,
//!   first raw async-nats (publish to one subject per object, pull and ack
//!   on a WorkQueue stream), then drover's queue (coalescing, dedupe and
//!   per-object exclusivity on). The report's `ratio` is drover's end-to-end
//!   rate over raw's.

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
}

fn job(i: usize) -> Job {
    Job {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Noop,
        object: ObjectRef {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
            kind: "K0sWorkerConfig".into(),
            namespace: Some("default".into()),
            name: format!("worker-{i}"),
            uid: format!("00000000-0000-0000-0000-{i:012}"),
        },
        cluster: Some(format!("cluster-{}", i % 100)),
        cause: Cause {
            change: Change::Added,
            generation: Some(1),
            resource_version: i.to_string(),
            via: None,
        },
        attempt: 0,
        trace: None,
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    let payload: bytes::Bytes = serde_json::to_vec(&job(0))?.into();
    let publish_s = {
        let (js, payload) = (js.clone(), payload.clone());
        publish_all(opts.jobs, opts.concurrency, move |i| {
            let (js, payload) = (js.clone(), payload.clone());
            async move {
                js.publish(format!("raw.worker-{i}"), payload)
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
    let t = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (consumer, done) = (consumer.clone(), done.clone());
        let (total, batch) = (opts.jobs as u64, opts.batch);
        workers.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total {
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
                let n = got.len() as u64;
                futures_util::future::try_join_all(got.iter().map(|m| m.double_ack())).await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let drain_s = t.elapsed().as_secs_f64();
    js.delete_stream("RAW").await?;
    Ok((publish_s, drain_s))
}

/// drover's JetStream queue on `url`, same jobs. Returns (publish s, drain s).
async fn drover_jetstream(url: &str, opts: &QueueLoadOptions) -> Result<(f64, f64), BoxError> {
    let q = Arc::new(JetStreamQueue::connect(JetStreamConfig::new(url)).await?);
    q.purge(drover_queue::PurgeScope::All).await?;
    let publish_s = publish_jobs(q.clone(), opts).await?;
    let drain_s = drain(q, opts).await?;
    Ok((publish_s, drain_s))
}

/// Publishes `opts.jobs` noop jobs through `q`; seconds taken.
async fn publish_jobs<Q: JobQueue>(q: Arc<Q>, opts: &QueueLoadOptions) -> Result<f64, BoxError> {
    publish_all(opts.jobs, opts.concurrency, move |i| {
        let q = q.clone();
        async move {
            q.publish(&job(i)).await?;
            Ok(())
        }
    })
    .await
}

/// Claims and finishes `opts.jobs` noop jobs with `opts.concurrency`
/// workers; seconds taken.
async fn drain<Q: JobQueue>(q: Arc<Q>, opts: &QueueLoadOptions) -> Result<f64, BoxError> {
    let t = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (q, done) = (q.clone(), done.clone());
        let (total, batch) = (opts.jobs as u64, opts.batch);
        workers.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let claims = q
                    .claim(JobKind::Noop, batch, Duration::from_millis(50))
                    .await?;
                let n = claims.len() as u64;
                futures_util::future::try_join_all(
                    claims.into_iter().map(|c| q.finish(c, Outcome::Done)),
                )
                .await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<_, drover_queue::QueueError>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Raw async-nats against drover's JetStream queue, one server, one run.
/// With no `url`, starts a nats-server (from `PATH`) in a temporary folder.
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
    let (raw_pub, raw_drain) = raw_jetstream(&url, &opts).await?;
    let (dr_pub, dr_drain) = drover_jetstream(&url, &opts).await?;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let n = opts.jobs as f64;
    let raw_per_s = n / (raw_pub + raw_drain);
    let drover_per_s = n / (dr_pub + dr_drain);
    Ok(json!({
        "backend": "jetstream",
        "nats_server": version,
        "jobs": opts.jobs,
        "payload_bytes": serde_json::to_vec(&job(0))?.len(),
        "concurrency": opts.concurrency,
        "batch": opts.batch,
        "raw_publish_per_s": n / raw_pub,
        "raw_consume_ack_per_s": n / raw_drain,
        "raw_per_s": raw_per_s,
        "drover_publish_per_s": n / dr_pub,
        "drover_claim_finish_per_s": n / dr_drain,
        "drover_per_s": drover_per_s,
        "ratio": drover_per_s / raw_per_s,
        "note": "one server, one run: raw async-nats (publish with ack; pull, double-ack), then drover (publish with dedupe and coalescing; claim with a per-object record; finish: release the record, double-ack). *_per_s without a phase: jobs over publish plus drain time",
    }))
}

/// Runs the embedded-backend measurement in a temporary folder.
pub async fn run_embedded(opts: QueueLoadOptions) -> Result<Value, BoxError> {
    let dir = std::env::temp_dir().join(format!("drover-queue-load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let q = Arc::new(EmbeddedQueue::open(
        &dir.join("queue.redb"),
        EmbeddedConfig::default(),
    )?);
    let sample = serde_json::to_vec(&job(0))?.len();

    let publish_s = publish_jobs(q.clone(), &opts).await?;
    let drain_s = drain(q, &opts).await?;

    // As in a running system: publishers and workers at the same time, on
    // a fresh file; from the first publish to the last finish.
    let q = Arc::new(EmbeddedQueue::open(
        &dir.join("overlapped.redb"),
        EmbeddedConfig::default(),
    )?);
    let t = Instant::now();
    let publishing = {
        let (q, opts) = (q.clone(), opts.clone());
        tokio::spawn(async move { publish_jobs(q, &opts).await })
    };
    drain(q, &opts).await?;
    publishing.await??;
    let overlapped_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "backend": "embedded",
        "jobs": opts.jobs,
        "payload_bytes": sample,
        "concurrency": opts.concurrency,
        "batch": opts.batch,
        "publish_per_s": opts.jobs as f64 / publish_s,
        "claim_finish_per_s": opts.jobs as f64 / drain_s,
        "phases_back_to_back_per_s": opts.jobs as f64 / (publish_s + drain_s),
        "end_to_end_per_s": opts.jobs as f64 / overlapped_s,
        "note": "publish phase, then claim+finish phase; then end to end: publishers and workers together on a fresh file, first publish to last finish. Same process; every publish and finish is committed to disk before it returns",
    }))
}
