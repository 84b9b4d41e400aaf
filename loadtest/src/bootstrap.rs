//! `drover loadtest bootstrap`: the bootstrap provider end to end, in one
//! process ([`crate::stack`]): C clusters of M workers are created at once;
//! the simulated CAPI core makes the Machines and clones their
//! K0sWorkerConfigs, the child-cluster stand-in gives each cluster its API,
//! and drover's watcher and workers render every config's Secret and mint
//! its token in the child cluster.
//!
//! Reported: `configs`, `converge_s` (from the first create call to the
//! watch event showing the last config Ready), `configs_per_s`
//! (`configs / converge_s`), `p50_ms`/`p95_ms`/`p99_ms` (per config, from
//! the watch event that first showed it to the one that showed it Ready),
//! `create_s`, `children_s` (until every cluster had its kubeconfig), the
//! process's CPU seconds and peak RSS, and the queue backend.

use std::sync::Arc;
use std::time::Duration;

use drover_queue::AnyQueue;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::stack::{self, ReadinessTracker, Stack, StackConfig};

/// What to run.
#[derive(Clone, Debug)]
pub struct BootstrapLoadOptions {
    /// CAPI Clusters.
    pub clusters: usize,
    /// Worker Machines (and K0sWorkerConfigs) per cluster.
    pub machines_per_cluster: usize,
    /// `embedded` or `jetstream`.
    pub backend: String,
    /// nats-server for `jetstream`; without it one is started from PATH.
    pub nats_url: Option<String>,
    /// Bootstrap jobs at once.
    pub concurrency: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Errors of the load test.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn self_cpu_and_rss() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime and stime are 14 and 15 (1-based).
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// Runs the load test; returns the report.
pub async fn run(opts: BootstrapLoadOptions) -> Result<Value, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut _server = None;
    let queue = match opts.backend.as_str() {
        "embedded" => AnyQueue::Embedded(drover_queue::embedded::EmbeddedQueue::open(
            &dir.path().join("queue.redb"),
            drover_queue::embedded::EmbeddedConfig::default(),
        )?),
        "jetstream" => {
            let url = match &opts.nats_url {
                Some(u) => u.clone(),
                None => {
                    let s = drover_queue::nats_server::NatsServer::start(dir.path()).await?;
                    let u = s.url();
                    _server = Some(s);
                    u
                }
            };
            AnyQueue::JetStream(
                drover_queue::jetstream::JetStreamQueue::connect(
                    drover_queue::jetstream::JetStreamConfig::new(url),
                )
                .await?,
            )
        }
        other => return Err(format!("--backend {other:?}: expected embedded or jetstream").into()),
    };
    let stack = Stack::start(
        Arc::new(queue),
        StackConfig {
            bootstrap_concurrency: opts.concurrency,
            ..StackConfig::default()
        },
    )
    .await?;
    let tracker = ReadinessTracker::start(&stack.client);
    let expected = opts.clusters * opts.machines_per_cluster;
    let (cpu0, _) = self_cpu_and_rss();
    let started = Instant::now();
    let objects = stack::fleet(opts.clusters, opts.machines_per_cluster, "v1.33.1+k0s.0");
    stack::create_all(&stack.client, "default", objects, 32).await?;
    let create_s = started.elapsed().as_secs_f64();
    let mut children_s = None;
    let deadline = started + opts.timeout;
    let converge_s = loop {
        if children_s.is_none() && stack.children_provisioned() >= opts.clusters {
            children_s = Some(started.elapsed().as_secs_f64());
        }
        let p = tracker.progress();
        if p.ready >= expected {
            break started.elapsed().as_secs_f64();
        }
        if let Some((k, m)) = p.failed.first() {
            return Err(format!("{k} failed: {m}").into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {:?}: {}/{expected} configs Ready",
                opts.timeout, p.ready
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (cpu1, rss) = self_cpu_and_rss();
    let p = tracker.progress();
    let metrics = stack.metrics_text();
    let sum = |name: &str| crate::procs::counter_sum(&metrics, name);
    let outcome = |o: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("drover_worker_outcomes_total")
                    && l.contains(&format!("outcome=\"{o}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let handler_count = sum("drover_worker_handler_duration_seconds_count");
    let handler_mean_ms = if handler_count > 0.0 {
        sum("drover_worker_handler_duration_seconds_sum") / handler_count * 1000.0
    } else {
        0.0
    };
    drop(tracker);
    stack.shutdown().await?;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    Ok(json!({
        "test": "bootstrap",
        "backend": opts.backend,
        "clusters": opts.clusters,
        "machines_per_cluster": opts.machines_per_cluster,
        "configs": p.ready,
        "concurrency": opts.concurrency,
        "create_s": round(create_s),
        "children_s": children_s.map(round),
        "converge_s": round(converge_s),
        "configs_per_s": round(p.ready as f64 / converge_s.max(0.001)),
        "p50_ms": round(p.quantile_ms(0.5)),
        "p95_ms": round(p.quantile_ms(0.95)),
        "p99_ms": round(p.quantile_ms(0.99)),
        "cpu_s": round(cpu1 - cpu0),
        "jobs_published": sum("drover_watcher_jobs_published"),
        "jobs_coalesced": sum("drover_watcher_jobs_coalesced"),
        "jobs_deduped": sum("drover_watcher_jobs_deduped"),
        "jobs_done": outcome("done"),
        "jobs_run_after": outcome("run_after"),
        "jobs_retried": outcome("retry"),
        "jobs_dead": outcome("dead_letter"),
        "handler_mean_ms": round(handler_mean_ms),
        "peak_rss_mib": round(rss),
        "note": "one process: kube-sim (management and child clusters), the simulated CAPI core, the child-cluster stand-in, the watcher, the workers and the embedded queue (JetStream: a nats-server process besides)",
    }))
}
