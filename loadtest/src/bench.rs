//! `drover sim bench`: kube-sim's throughput and memory, measured through a
//! real `kube::Client` over loopback HTTP (the path every drover process
//! uses), reported as JSON. Figures, not asserts: the machines are shared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::sim::{Sim, SimConfig};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Objects to create (and update, and list).
    pub objects: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Watchers for the fan-out measurement.
    pub watchers: usize,
}

/// Runs the benchmark; returns the report.
pub async fn run(opts: BenchOptions) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let sim = Sim::new(SimConfig {
        tls: false,
        history_limit: 10_000,
        ..SimConfig::default()
    });
    let h = sim.add_cluster("bench").await?;
    let client = kube::Client::try_from(kube::Config::new(h.url.parse()?))?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rss_before = rss_bytes();

    // 1. Writes, nobody watching.
    let t = Instant::now();
    stream::iter(0..opts.objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i}"), "labels": {"bench": "yes", "shard": (i % 16).to_string()}},
                    "data": {"value": "x".repeat(64)}
                }))
                .expect("static object");
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        })
        .buffer_unordered(opts.concurrency)
        .try_collect::<()>()
        .await?;
    let create_s = t.elapsed().as_secs_f64();
    let rss_after_create = rss_bytes();

    let update_all = |round: usize| {
        let api = api.clone();
        async move {
            stream::iter(0..opts.objects)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let p =
                            Patch::Merge(json!({"data": {"value": format!("update-{round}-{i}")}}));
                        api.patch(&format!("cm-{i}"), &PatchParams::default(), &p)
                            .await
                            .map(|_| ())
                    }
                })
                .buffer_unordered(opts.concurrency)
                .try_collect::<()>()
                .await
        }
    };
    let t = Instant::now();
    update_all(1).await?;
    let update_s = t.elapsed().as_secs_f64();

    // 2. Lists.
    let t = Instant::now();
    let list = api.list(&ListParams::default()).await?;
    let list_s = t.elapsed().as_secs_f64();
    let listed = list.items.len();
    drop(list);
    let t = Instant::now();
    let selected = api
        .list(&ListParams::default().labels("shard=3"))
        .await?
        .items
        .len();
    let list_selected_s = t.elapsed().as_secs_f64();

    // 3. Fan-out: watchers count event lines (no decoding, so the figure is
    //    the server's), while a round of updates runs.
    let fanout_updates = opts.objects.min(10_000);
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let seen = Arc::new(AtomicU64::new(0));
    let mut watch_tasks = Vec::new();
    for _ in 0..opts.watchers {
        let req = http::Request::get(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=3600"
        ))
        .body(Vec::new())?;
        let body = client.request_stream(req).await?;
        let seen = seen.clone();
        watch_tasks.push(tokio::spawn(async move {
            use futures_util::AsyncBufReadExt;
            futures_util::pin_mut!(body);
            let mut lines = body.lines();
            while let Some(Ok(_)) = lines.next().await {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    stream::iter(0..fanout_updates)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = Patch::Merge(json!({"data": {"value": format!("fanout-{i}")}}));
                api.patch(&format!("cm-{i}"), &PatchParams::default(), &p)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(opts.concurrency)
        .try_collect::<()>()
        .await?;
    let want = (opts.watchers * fanout_updates) as u64;
    while seen.load(Ordering::Relaxed) < want && t.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fanout_s = t.elapsed().as_secs_f64();
    let delivered = seen.load(Ordering::Relaxed);
    for w in watch_tasks {
        w.abort();
    }

    let per_object =
        rss_after_create.saturating_sub(rss_before) as f64 / opts.objects.max(1) as f64;
    Ok(json!({
        "objects": opts.objects,
        "concurrency": opts.concurrency,
        "watchers": opts.watchers,
        "creates_per_s": opts.objects as f64 / create_s,
        "updates_per_s": opts.objects as f64 / update_s,
        "list_all_ms": list_s * 1000.0,
        "list_all_items": listed,
        "list_selected_ms": list_selected_s * 1000.0,
        "list_selected_items": selected,
        "fanout_updates": fanout_updates,
        "fanout_events_delivered": delivered,
        "fanout_events_expected": want,
        "fanout_s": fanout_s,
        "fanout_events_per_s": delivered as f64 / fanout_s,
        "rss_mib_end": rss_bytes() as f64 / 1048576.0,
        "rss_bytes_per_object_after_creates": per_object,
        "note": "client and server share one process and its 2 cores; rss per object is the growth during the creates (objects, watch history, allocator)",
    }))
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
