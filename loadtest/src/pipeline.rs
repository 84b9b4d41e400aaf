//! `drover loadtest pipeline`: the whole pipeline as real processes.
//!
//! Per round: kube-sim (`drover sim`), a nats-server, one `drover watcher`
//! and W `drover worker` processes serving bootstrap jobs with a stand-in
//! handler (noop, or echo with a delay). The driver creates N
//! K0sWorkerConfigs and watches them until every one carries the `Handled`
//! condition for its generation, which the stand-in writes back. Latency is
//! measured per object from the start of its create call to the watch event
//! that shows it handled, so it covers the watch, the publish, the queue,
//! the claim, the handler and the status write. Every round starts fresh.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_queue::nats_server::NatsServer;
use drover_shared::api::bootstrap::K0sWorkerConfig;
use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};

use crate::procs::{self, Proc};

/// The stand-in handler the workers run.
#[derive(Clone, Copy, Debug)]
pub enum StandIn {
    /// Writes the condition and nothing else.
    Noop,
    /// Waits this long first (slow SSH, simulated).
    Echo(Duration),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Objects to create per round.
    pub objects: usize,
    /// Worker processes, one round each (`[1, 2, 4]` measures the speedup).
    pub workers: Vec<usize>,
    /// Stand-in handler.
    pub stand_in: StandIn,
    /// Jobs each worker process runs at once.
    pub concurrency: usize,
    /// Objects created per second (`None`: as fast as the driver can).
    pub rate: Option<f64>,
    /// Give up on a round after this long.
    pub timeout: Duration,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A process or server could not start or misbehaved.
    #[error("{0}")]
    Setup(String),
    /// The kube API failed.
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    /// Not every object was handled in time.
    #[error(
        "round with {workers} worker(s): {handled} of {objects} objects handled within {timeout:?}"
    )]
    Timeout {
        /// Worker processes.
        workers: usize,
        /// Objects handled.
        handled: usize,
        /// Objects created.
        objects: usize,
        /// The limit.
        timeout: Duration,
    },
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> PipelineError + '_ {
    move |e| PipelineError::Setup(format!("{what}: {e}"))
}

/// Runs every round and returns the report.
pub async fn run(opts: &PipelineOptions) -> Result<Value, PipelineError> {
    let mut rounds = Vec::new();
    for &w in &opts.workers {
        eprintln!(
            "pipeline: round with {w} worker(s), {} objects",
            opts.objects
        );
        rounds.push(round(opts, w).await?);
    }
    let base = rounds[0]["jobs_per_s"].as_f64().unwrap_or(0.0);
    let mut report = rounds.last().cloned().unwrap_or_default();
    let mut speedup = serde_json::Map::new();
    for r in &rounds {
        let w = r["workers"].as_u64().unwrap_or(0);
        let rate = r["jobs_per_s"].as_f64().unwrap_or(0.0);
        report[format!("w{w}_jobs_per_s")] = json!(rate);
        if base > 0.0 {
            speedup.insert(w.to_string(), json!(round2(rate / base)));
        }
    }
    report["speedup_vs_first_round"] = Value::Object(speedup);
    report["rounds"] = json!(rounds);
    Ok(report)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn round(opts: &PipelineOptions, workers: usize) -> Result<Value, PipelineError> {
    let dir = tempfile::tempdir().map_err(setup("temporary folder"))?;
    let result = round_in(dir.path(), opts, workers).await;
    if result.is_err() || std::env::var_os("DROVER_LOADTEST_KEEP").is_some() {
        // Keep the processes' output for a post-mortem.
        let kept = dir.keep();
        eprintln!("pipeline: the round's files are kept in {}", kept.display());
    }
    result
}

async fn round_in(
    dir: &Path,
    opts: &PipelineOptions,
    workers: usize,
) -> Result<Value, PipelineError> {
    let log = dir.join("processes.log");
    let drover = procs::drover_binary().map_err(PipelineError::Setup)?;
    let kubeconfig = dir.join("kubeconfig.yaml");
    let kc = kubeconfig.display().to_string();
    let (sim, _) = Proc::spawn(
        "kube-sim",
        &drover,
        &[
            "sim".into(),
            "--plain-http".into(),
            "--install-crds".into(),
            "--history".into(),
            (opts.objects * 4).max(10_000).to_string(),
            "--kubeconfig".into(),
            kc.clone(),
        ],
        "kube-sim ready",
        &log,
        Duration::from_secs(30),
    )
    .await
    .map_err(PipelineError::Setup)?;
    let nats_dir = dir.join("nats");
    std::fs::create_dir_all(&nats_dir).map_err(setup("nats folder"))?;
    let nats = NatsServer::start(&nats_dir)
        .await
        .map_err(PipelineError::Setup)?;
    let common = |sub: &str| -> Vec<String> {
        vec![
            sub.into(),
            "--kubeconfig".into(),
            kc.clone(),
            "--nats-url".into(),
            nats.url(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let mut procs_: Vec<Proc> = vec![sim];
    let mut endpoints = Vec::new();
    let (watcher_proc, line) = Proc::spawn(
        "watcher",
        &drover,
        &common("watcher"),
        "drover telemetry:",
        &log,
        Duration::from_secs(30),
    )
    .await
    .map_err(PipelineError::Setup)?;
    endpoints.push((
        "watcher".to_owned(),
        procs::telemetry_addr(&line).unwrap_or_default(),
    ));
    procs_.push(watcher_proc);
    for i in 1..=workers {
        let mut args = common("worker");
        args.extend([
            "--pool".into(),
            format!("bootstrap={}", opts.concurrency),
            "--stand-in".into(),
        ]);
        match opts.stand_in {
            StandIn::Noop => args.push("noop".into()),
            StandIn::Echo(d) => {
                args.extend([
                    "echo".into(),
                    "--echo-delay".into(),
                    format!("{}ms", d.as_millis()),
                ]);
            }
        }
        let name = format!("worker-{i}");
        let (p, line) = Proc::spawn(
            &name,
            &drover,
            &args,
            "drover telemetry:",
            &log,
            Duration::from_secs(30),
        )
        .await
        .map_err(PipelineError::Setup)?;
        endpoints.push((name, procs::telemetry_addr(&line).unwrap_or_default()));
        procs_.push(p);
    }
    for (name, addr) in &endpoints {
        procs::wait_ready(addr, Duration::from_secs(60))
            .await
            .map_err(|e| PipelineError::Setup(format!("{name}: {e}")))?;
    }

    let client = {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).map_err(setup("kubeconfig"))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(setup("kubeconfig"))?;
        kube::Client::try_from(cfg)?
    };
    let ns = "load";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
        )
        .await?;
    let api: Api<K0sWorkerConfig> = Api::namespaced(client.clone(), ns);

    // Done times, by name, from a watch of the objects.
    let done: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let done = done.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Ok(Some(ev)) = events.try_next().await {
                let objs: Vec<K0sWorkerConfig> = match ev {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                    _ => continue,
                };
                let now = Instant::now();
                for o in objs {
                    let generation = o.metadata.generation.unwrap_or(0);
                    let handled = o.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().any(|c| {
                            c.r#type == "Handled"
                                && c.observed_generation.unwrap_or(-1) >= generation
                        })
                    });
                    if handled && let Some(name) = o.metadata.name {
                        done.lock().expect("lock").entry(name).or_insert(now);
                    }
                }
            }
        })
    };

    // Create, paced, with requests in flight.
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    let creates = futures_util::stream::iter(0..opts.objects)
        .map(|i| {
            let api = api.clone();
            let started = started.clone();
            async move {
                if let Some(iv) = interval {
                    let at = t0 + iv * i as u32;
                    tokio::time::sleep_until(at.into()).await;
                }
                let name = format!("w-{i:06}");
                let obj: K0sWorkerConfig = serde_json::from_value(json!({
                    "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
                    "kind": "K0sWorkerConfig",
                    "metadata": {"name": name, "labels": {"cluster.x-k8s.io/cluster-name": format!("c{}", i % 100)}},
                    "spec": {}
                }))
                .expect("object");
                let t = Instant::now();
                started.lock().expect("lock").insert(name.clone(), t);
                api.create(&PostParams::default(), &obj).await.map(|_| (t, t.elapsed()))
            }
        })
        .buffer_unordered(64);
    let mut usage_samples: HashMap<String, (f64, f64)> = HashMap::new();
    let mut cpu_at_start: HashMap<String, f64> = HashMap::new();
    for p in procs_.iter_mut() {
        if let Some(u) = p.sample() {
            cpu_at_start.insert(p.name.clone(), u.cpu_s);
        }
    }
    let mut creates = creates.boxed();
    let mut sampler = tokio::time::interval(Duration::from_millis(500));
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut created = 0usize;
    // The slowest create call in each second: the API server's share of latency.
    let mut create_by_second: Vec<f64> = Vec::new();
    loop {
        let handled = done.lock().expect("lock").len();
        if created == opts.objects && handled >= opts.objects {
            break;
        }
        tokio::select! {
            r = creates.next(), if created < opts.objects => {
                match r {
                    Some(Ok((at, took))) => {
                        created += 1;
                        let sec = at.saturating_duration_since(t0).as_secs() as usize;
                        if create_by_second.len() <= sec {
                            create_by_second.resize(sec + 1, 0.0);
                        }
                        create_by_second[sec] = f64::max(create_by_second[sec], (took.as_secs_f64() * 1000.0).round());
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
            _ = sampler.tick() => {
                for p in procs_.iter_mut() {
                    if let Some(u) = p.sample() {
                        usage_samples.insert(p.name.clone(), (u.cpu_s, u.rss as f64));
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                watch.abort();
                return Err(PipelineError::Timeout { workers, handled, objects: opts.objects, timeout: opts.timeout });
            }
        }
    }
    let end = Instant::now();
    watch.abort();
    for p in procs_.iter_mut() {
        if let Some(u) = p.sample() {
            usage_samples.insert(p.name.clone(), (u.cpu_s, u.rss as f64));
        }
    }

    // Metrics before stopping: jobs done and published, where time went.
    let mut jobs_done = 0.0;
    let mut jobs_published = 0.0;
    let (mut claim_sum, mut claim_n, mut handler_sum, mut handler_n) = (0.0, 0.0, 0.0, 0.0);
    for (name, addr) in &endpoints {
        let text = procs::http_get(addr, "/metrics").await.unwrap_or_default();
        if name.starts_with("worker") {
            jobs_done += procs::counter_sum(&text, "drover_worker_outcomes");
            claim_sum += procs::counter_sum(&text, "drover_worker_claim_wait_seconds_sum");
            claim_n += procs::counter_sum(&text, "drover_worker_claim_wait_seconds_count");
            handler_sum += procs::counter_sum(&text, "drover_worker_handler_duration_seconds_sum");
            handler_n += procs::counter_sum(&text, "drover_worker_handler_duration_seconds_count");
        } else {
            jobs_published += procs::counter_sum(&text, "drover_watcher_jobs_published")
                + procs::counter_sum(&text, "drover_watcher_jobs_coalesced");
        }
    }
    let mean_ms = |sum: f64, n: f64| {
        if n > 0.0 {
            round2(sum / n * 1000.0)
        } else {
            0.0
        }
    };

    let started = started.lock().expect("lock").clone();
    let done = done.lock().expect("lock").clone();
    let first = started.values().min().copied().unwrap_or(t0);
    let last_done = done.values().max().copied().unwrap_or(end);
    let mut lat: Vec<f64> = started
        .iter()
        .filter_map(|(n, s)| {
            Some(done.get(n)?.saturating_duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    // The slowest object created in each second of the run: shows stalls.
    let mut by_second: Vec<f64> = Vec::new();
    for (n, s) in &started {
        if let Some(d) = done.get(n) {
            let sec = s.saturating_duration_since(first).as_secs() as usize;
            if by_second.len() <= sec {
                by_second.resize(sec + 1, 0.0);
            }
            let ms = d.saturating_duration_since(*s).as_secs_f64() * 1000.0;
            by_second[sec] = by_second[sec].max(ms.round());
        }
    }
    let converge_s = last_done.saturating_duration_since(first).as_secs_f64();
    let create_s = started
        .values()
        .max()
        .copied()
        .unwrap_or(first)
        .saturating_duration_since(first)
        .as_secs_f64();
    let wall = end.saturating_duration_since(t0).as_secs_f64().max(1e-9);
    let mut processes = Vec::new();
    let mut worker_rss: f64 = 0.0;
    let mut watcher_rss = 0.0;
    for p in &procs_ {
        let (cpu, _) = usage_samples.get(&p.name).copied().unwrap_or_default();
        let cpu_run = cpu - cpu_at_start.get(&p.name).copied().unwrap_or(0.0);
        let peak_mib = p.peak_rss as f64 / (1024.0 * 1024.0);
        if p.name.starts_with("worker") {
            worker_rss = worker_rss.max(peak_mib);
        } else if p.name == "watcher" {
            watcher_rss = peak_mib;
        }
        processes.push(json!({
            "name": p.name,
            "peak_rss_mib": round2(peak_mib),
            "cpu_s": round2(cpu_run),
            "cpu_pct": round2(cpu_run / wall * 100.0),
        }));
    }
    let nats_usage = nats_pid_usage(&nats);
    processes.push(json!({
        "name": "nats-server",
        "peak_rss_mib": round2(nats_usage.rss as f64 / (1024.0 * 1024.0)),
        "cpu_s_total": round2(nats_usage.cpu_s),
    }));
    for p in procs_.iter_mut().rev() {
        p.stop(Duration::from_secs(10)).await;
    }
    drop(nats);
    Ok(json!({
        "objects": opts.objects,
        "workers": workers,
        "concurrency_per_worker": opts.concurrency,
        "handler": match opts.stand_in { StandIn::Noop => "noop".to_string(), StandIn::Echo(d) => format!("echo {}ms", d.as_millis()) },
        "rate_per_s": opts.rate,
        "create_s": round2(create_s),
        "converge_s": round2(converge_s),
        "jobs_per_s": round2(opts.objects as f64 / converge_s.max(1e-9)),
        "jobs_done": jobs_done,
        "jobs_published": jobs_published,
        "p50_ms": round2(percentile(&lat, 0.50)),
        "p95_ms": round2(percentile(&lat, 0.95)),
        "p99_ms": round2(percentile(&lat, 0.99)),
        "max_ms": round2(lat.last().copied().unwrap_or(0.0)),
        "latency_max_ms_by_creation_second": by_second,
        "create_call_max_ms_by_second": create_by_second,
        "worker_claim_wait_mean_ms": mean_ms(claim_sum, claim_n),
        "worker_handler_mean_ms": mean_ms(handler_sum, handler_n),
        "watcher_rss_mib": round2(watcher_rss),
        "worker_rss_mib": round2(worker_rss),
        "processes": processes,
    }))
}

fn nats_pid_usage(nats: &NatsServer) -> procs::Usage {
    nats.pid().and_then(procs::usage).unwrap_or_default()
}
