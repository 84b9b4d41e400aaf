//! `drover up`: all of drover in one process on embedded defaults — kube-sim
//! with a management cluster, the simulated CAPI core, a child cluster per
//! CAPI Cluster, the embedded queue (or JetStream with `--nats`), the
//! watcher and the workers — fed with the examples or a generated fleet,
//! with progress bars until every bootstrap config is Ready.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use drover_loadtest::stack::{self, ReadinessTracker, Stack, StackConfig};
use drover_telemetry::{LogFormat, TelemetryConfig};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

/// The examples, built in so that `drover up` needs no files. All of them
/// are applied; only the bootstrap configs have a handler so far, the other
/// kinds are stored and queued.
const EXAMPLES: [(&str, &str); 5] = [
    (
        "examples/hosted-control-plane.yaml",
        include_str!("../examples/hosted-control-plane.yaml"),
    ),
    (
        "examples/remote-machines.yaml",
        include_str!("../examples/remote-machines.yaml"),
    ),
    (
        "examples/control-plane-on-machines.yaml",
        include_str!("../examples/control-plane-on-machines.yaml"),
    ),
    (
        "examples/standalone-cluster.yaml",
        include_str!("../examples/standalone-cluster.yaml"),
    ),
    (
        "examples/join-token-request.yaml",
        include_str!("../examples/join-token-request.yaml"),
    ),
];

/// `drover up`'s arguments.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Generate N clusters instead of applying the examples.
    #[arg(long)]
    pub fleet: Option<usize>,
    /// Worker Machines per generated cluster (one MachineDeployment).
    #[arg(long, default_value_t = 3)]
    pub machines_per_cluster: usize,
    /// Where to write the management cluster's kubeconfig.
    #[arg(long, default_value = "drover-up.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Use JetStream at this URL instead of the embedded queue.
    #[arg(long)]
    pub nats: Option<String>,
    /// The embedded queue's file (default: a temporary one).
    #[arg(long)]
    pub queue_file: Option<PathBuf>,
    /// Exit 0 once every bootstrap config is Ready (non-zero on failure or
    /// after --timeout), instead of serving on.
    #[arg(long)]
    pub exit_when_ready: bool,
    /// Give up waiting for Ready after this long.
    #[arg(long, default_value = "5m", value_parser = crate::run::parse_duration)]
    pub timeout: Duration,
    /// Bootstrap jobs run at once.
    #[arg(long, default_value_t = 16)]
    pub bootstrap_concurrency: usize,
    /// Lifetime of minted bootstrap tokens.
    #[arg(long, default_value = "1h", value_parser = crate::run::parse_duration)]
    pub bootstrap_token_ttl: Duration,
    /// Namespace of the examples' objects (fleet clusters get a namespace
    /// each, named like the cluster).
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

/// Runs `drover up`.
pub fn run(args: UpArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(up(args))
}

async fn up(args: UpArgs) -> Result<()> {
    // Progress bars own the terminal: only warnings are logged (RUST_LOG
    // overrides).
    let _telemetry = drover_telemetry::init(&TelemetryConfig {
        service: "drover-up".into(),
        log_format: LogFormat::Text,
        otlp_endpoint: None,
        default_filter: Some("warn".into()),
    })?;
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("making a temporary folder")?;
    let queue = match &args.nats {
        Some(url) => drover_queue::AnyQueue::JetStream(
            drover_queue::jetstream::JetStreamQueue::connect(
                drover_queue::jetstream::JetStreamConfig::new(url.clone()),
            )
            .await
            .with_context(|| format!("connecting to JetStream at {url}"))?,
        ),
        None => {
            let path = args
                .queue_file
                .clone()
                .unwrap_or_else(|| tmp.path().join("queue.redb"));
            drover_queue::AnyQueue::Embedded(
                drover_queue::embedded::EmbeddedQueue::open(
                    &path,
                    drover_queue::embedded::EmbeddedConfig::default(),
                )
                .with_context(|| format!("opening the embedded queue {}", path.display()))?,
            )
        }
    };
    let queue_name = if args.nats.is_some() {
        "JetStream"
    } else {
        "embedded (redb)"
    };
    let config = StackConfig {
        bootstrap_concurrency: args.bootstrap_concurrency,
        token_ttl: args.bootstrap_token_ttl,
        ..StackConfig::default()
    };
    let stack = Stack::start(Arc::new(queue), config).await?;
    std::fs::write(&args.kubeconfig, &stack.mgmt.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    let tracker = ReadinessTracker::start(&stack.client);

    let (created, clusters) = match args.fleet {
        Some(n) => {
            let objects = stack::fleet(n, args.machines_per_cluster, "v1.33.1+k0s.0");
            let all = objects.clone();
            stack::create_all(&stack.client, &args.namespace, objects, 16).await?;
            (all, n)
        }
        None => {
            let mut all = Vec::new();
            for (name, yaml) in EXAMPLES {
                all.extend(stack::apply_yaml(&stack.client, &args.namespace, yaml, name).await?);
            }
            // CAPI Clusters (the k0smotron.io Cluster is a hosted control plane).
            let clusters = all
                .iter()
                .filter(|o| o["kind"] == "Cluster" && o["apiVersion"] == "cluster.x-k8s.io/v1beta2")
                .count();
            (all, clusters)
        }
    };
    let expected = stack::expected_configs(&created);
    eprintln!(
        "drover up: kube-sim at {}, queue {queue_name}; {} objects applied, {clusters} clusters, {expected} bootstrap configs expected",
        stack.mgmt.url,
        created.len()
    );
    eprintln!(
        "drover up: kubectl --kubeconfig {} get k0sworkerconfigs -A",
        args.kubeconfig.display()
    );

    let outcome = wait_ready(&stack, &tracker, clusters, expected, &args, started).await;
    let p = tracker.progress();
    let elapsed = started.elapsed().as_secs_f64();
    match &outcome {
        Ok(()) => {
            eprintln!(
                "drover up: {} of {expected} bootstrap configs Ready in {elapsed:.1} s ({:.0} configs/s); from config to Ready: p50 {:.0} ms, p99 {:.0} ms",
                p.ready,
                p.ready as f64 / elapsed.max(0.001),
                p.quantile_ms(0.5),
                p.quantile_ms(0.99)
            );
        }
        Err(e) => {
            eprintln!("drover up: {e}");
            for (k, m) in p.failed.iter().chain(p.waiting.iter()).take(10) {
                eprintln!("  {k}: {m}");
            }
        }
    }
    if args.exit_when_ready || outcome.is_err() {
        stack.shutdown().await?;
        return outcome;
    }
    eprintln!("drover up: serving until Ctrl-C");
    shutdown_signal().await;
    stack.shutdown().await?;
    Ok(())
}

async fn wait_ready(
    stack: &Stack,
    tracker: &ReadinessTracker,
    clusters: usize,
    expected: usize,
    args: &UpArgs,
    started: Instant,
) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let bars = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>18} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let child_bar = bars.add(ProgressBar::new(clusters as u64));
    child_bar.set_style(style.clone());
    child_bar.set_prefix("child clusters");
    let ready_bar = bars.add(ProgressBar::new(expected as u64));
    ready_bar.set_style(style);
    ready_bar.set_prefix("configs Ready");
    let deadline = started + args.timeout;
    let mut last_line = Instant::now();
    loop {
        let p = tracker.progress();
        child_bar.set_position(stack.children_provisioned().min(clusters) as u64);
        ready_bar.set_position(p.ready.min(expected) as u64);
        ready_bar.set_message(if p.failed.is_empty() {
            String::new()
        } else {
            format!("{} failed", p.failed.len())
        });
        if !tty && last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "drover up: {}/{clusters} child clusters, {}/{expected} configs Ready",
                stack.children_provisioned(),
                p.ready
            );
            last_line = Instant::now();
        }
        if p.ready >= expected && p.seen >= expected {
            child_bar.finish();
            ready_bar.finish();
            return Ok(());
        }
        if let Some((k, m)) = p.failed.first() {
            // Bad input stays bad until someone fixes it.
            bail!("{k} failed: {m}");
        }
        if stack.failed() {
            bail!("the watcher or the workers stopped; see the log above");
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:?}: {}/{expected} bootstrap configs Ready",
                args.timeout,
                p.ready
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
