//! `drover loadtest queue`: queue throughput. So far the embedded (redb)
//! backend only: publish N jobs from concurrent publishers, then claim and
//! finish them with concurrent workers, end to end. The JetStream
//! comparison (raw async-nats against drover's queue) comes with the
//! JetStream backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::{JobQueue, Outcome};
use drover_shared::jobs::{Cause, Change, Job, JobKind, ObjectRef};
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

/// Runs the embedded-backend measurement in a temporary folder.
pub async fn run_embedded(
    opts: QueueLoadOptions,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("drover-queue-load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let q = Arc::new(EmbeddedQueue::open(
        &dir.join("queue.redb"),
        EmbeddedConfig::default(),
    )?);
    let sample = serde_json::to_vec(&job(0))?.len();

    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for _ in 0..opts.concurrency {
        let (q, next) = (q.clone(), next.clone());
        let n = opts.jobs as u64;
        publishers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, drover_queue::QueueError>(());
                }
                q.publish(&job(i as usize)).await?;
            }
        }));
    }
    for p in publishers {
        p.await??;
    }
    let publish_s = t.elapsed().as_secs_f64();

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
                for c in claims {
                    q.finish(c, Outcome::Done).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, drover_queue::QueueError>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let drain_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "backend": "embedded",
        "jobs": opts.jobs,
        "payload_bytes": sample,
        "concurrency": opts.concurrency,
        "batch": opts.batch,
        "publish_per_s": opts.jobs as f64 / publish_s,
        "claim_finish_per_s": opts.jobs as f64 / drain_s,
        "end_to_end_per_s": opts.jobs as f64 / (publish_s + drain_s),
        "note": "publish phase, then claim+finish phase, same process; every publish and finish is committed to disk before it returns",
    }))
}
