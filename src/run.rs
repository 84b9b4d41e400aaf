//! `drover watcher` and `drover worker`: the two long-running processes of
//! the pipeline. Each is a thin shell: flags, telemetry, the kube client and
//! the queue, then the crate's `run` until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use drover_shared::jobs::JobKind;
use drover_telemetry::{Health, LogFormat, Registry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

use crate::jobs::QueueArgs;

/// Flags every long-running process shares.
#[derive(Args, Clone, Debug)]
pub struct ProcessArgs {
    /// Kubeconfig of the management cluster; without it, the usual
    /// inference (KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, env = "DROVER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz (port 0: any free port).
    #[arg(long, env = "DROVER_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
    /// Log format on stderr.
    #[arg(long, env = "DROVER_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// OTLP/gRPC endpoint for traces (`http://collector:4317`); off without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `drover watcher` flags.
#[derive(Args, Clone, Debug)]
pub struct WatcherArgs {
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Watch only this namespace.
    #[arg(long, env = "DROVER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only objects labelled `cluster.x-k8s.io/watch-filter=<value>` (CAPI's --watch-filter).
    #[arg(long, env = "DROVER_WATCH_FILTER")]
    pub watch_filter: Option<String>,
    /// Periodic resync of every object (`10m`, `90s`; `0` disables).
    #[arg(long, env = "DROVER_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// Publishes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub max_publishes_in_flight: usize,
}

/// `drover worker` flags.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub process: ProcessArgs,
    /// A job kind this process serves and its concurrency, `KIND=N`
    /// (repeatable), e.g. `--pool bootstrap=32 --pool remote-machine=8`.
    #[arg(long = "pool", value_parser = parse_pool, required = true)]
    pub pools: Vec<(JobKind, usize)>,
    /// Serve the pools' kinds with a stand-in handler instead of the real
    /// one (tests and load tests): `noop`, or `echo`, which waits `--echo-delay`.
    #[arg(long, value_enum)]
    pub stand_in: Option<StandInArg>,
    /// How long the echo stand-in waits per job.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub echo_delay: Duration,
    /// On SIGTERM: how long in-flight jobs may finish before they are released.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_deadline: Duration,
    /// How often a running job renews its claim.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub lease_renew_every: Duration,
    /// Lifetime of the bootstrap tokens minted in child clusters (kept
    /// alive until the Machine has a Node; expired ones are deleted).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub bootstrap_token_ttl: Duration,
}

/// `--stand-in`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StandInArg {
    /// Writes the Handled condition and nothing else.
    Noop,
    /// Waits, then does what noop does.
    Echo,
}

/// `10m`, `90s`, `250ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (e.g. 30s, 10m, 250ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration out of range: {s:?}"))
}

fn parse_pool(s: &str) -> Result<(JobKind, usize), String> {
    let (kind, n) = s.split_once('=').unwrap_or((s, "16"));
    let kind = JobKind::parse(kind).ok_or_else(|| {
        let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown job kind {kind:?}; one of: {}", kinds.join(", "))
    })?;
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("concurrency of {kind} must be a positive number, got {n:?}"))?;
    Ok((kind, n))
}

/// What both processes set up before their loop.
struct Process {
    client: kube::Client,
    queue: Arc<drover_queue::AnyQueue>,
    health: Health,
    shutdown: CancellationToken,
    _telemetry: drover_telemetry::TelemetryGuard,
}

async fn start(service: &str, args: &ProcessArgs) -> Result<Process> {
    let telemetry = drover_telemetry::init(&TelemetryConfig {
        service: service.to_owned(),
        log_format: match args.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        },
        otlp_endpoint: args.otlp_endpoint.clone(),
        default_filter: None,
    })?;
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig (give --kubeconfig)")?,
    };
    let client = kube::Client::try_from(config).context("building the kube client")?;
    // The watcher and the workers register their own readiness checks
    // (the queue's among them) in it.
    let health = Health::new();
    let queue = Arc::new(args.queue.open().await?);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    Ok(Process {
        client,
        queue,
        health,
        shutdown,
        _telemetry: telemetry,
    })
}

async fn cancel_on_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    token.cancel();
}

async fn serve_telemetry(
    addr: SocketAddr,
    registry: Registry,
    p: &Process,
) -> Result<drover_telemetry::TelemetryServer> {
    let srv = drover_telemetry::serve(
        addr,
        Arc::new(registry),
        p.health.clone(),
        p.shutdown.clone(),
    )
    .await?;
    // Scripts and the load test read this line to find the endpoint.
    eprintln!("drover telemetry: http://{}", srv.addr);
    Ok(srv)
}

/// Runs a process's main loop, then stops its telemetry endpoint.
async fn run_then_stop<E>(
    p: &Process,
    srv: drover_telemetry::TelemetryServer,
    main: impl std::future::Future<Output = Result<(), E>>,
    what: &'static str,
) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let result = main.await;
    p.shutdown.cancel();
    let _ = srv.task.await;
    result.context(what)
}

/// Runs `drover watcher` until SIGTERM or Ctrl-C.
pub fn watcher(args: WatcherArgs) -> Result<()> {
    // A resync of an unchanged object inside the queue's dedupe window is
    // recognised as a duplicate and does nothing.
    let window = drover_queue::embedded::EmbeddedConfig::default().dedupe_window;
    if !args.resync.is_zero() && args.resync <= window {
        bail!(
            "--resync {:?} must be longer than the queue's dedupe window ({window:?}), or 0 to turn resyncs off",
            args.resync
        );
    }
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let p = start("drover-watcher", &args.process).await?;
        let mut registry = Registry::default();
        let metrics = drover_watcher::WatcherMetrics::register(&mut registry);
        let srv = serve_telemetry(args.process.metrics_addr, registry, &p).await?;
        let config = drover_watcher::WatcherConfig {
            namespace: args.namespace,
            watch_filter: args.watch_filter,
            resync: (!args.resync.is_zero()).then_some(args.resync),
            max_publishes_in_flight: args.max_publishes_in_flight.max(1),
        };
        let main = drover_watcher::run(
            p.client.clone(),
            p.queue.clone(),
            config,
            metrics,
            p.health.clone(),
            p.shutdown.clone(),
        );
        run_then_stop(&p, srv, main, "watcher").await
    })
}

/// Runs `drover worker` until SIGTERM or Ctrl-C.
pub fn worker(args: WorkerArgs) -> Result<()> {
    let mut pools = BTreeMap::new();
    for (kind, concurrency) in &args.pools {
        if pools
            .insert(
                *kind,
                drover_workers::PoolConfig {
                    concurrency: *concurrency,
                },
            )
            .is_some()
        {
            bail!("--pool {kind} is given twice");
        }
    }
    if args.lease_renew_every >= args.process.queue.queue_lease {
        bail!(
            "--lease-renew-every ({:?}) must be shorter than --queue-lease ({:?}), or long jobs lose their claims",
            args.lease_renew_every,
            args.process.queue.queue_lease
        );
    }
    if args.bootstrap_token_ttl < Duration::from_secs(60) {
        bail!(
            "--bootstrap-token-ttl ({:?}) must be at least 1m: nodes need time to boot",
            args.bootstrap_token_ttl
        );
    }
    let stand_in = args.stand_in.map(|s| match s {
        StandInArg::Noop => drover_workers::StandIn::Noop,
        StandInArg::Echo => drover_workers::StandIn::Echo {
            delay: args.echo_delay,
        },
    });
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let p = start("drover-worker", &args.process).await?;
        let mut registry = Registry::default();
        let metrics = drover_workers::WorkerMetrics::register(&mut registry);
        let srv = serve_telemetry(args.process.metrics_addr, registry, &p).await?;
        let config = drover_workers::WorkerConfig {
            pools,
            stand_in,
            shutdown_deadline: args.shutdown_deadline,
            lease_renew_every: args.lease_renew_every,
            bootstrap: drover_workers::handlers::bootstrap::BootstrapSettings {
                token_ttl: args.bootstrap_token_ttl,
            },
        };
        let main = drover_workers::run(
            p.client.clone(),
            p.queue.clone(),
            config,
            metrics,
            p.health.clone(),
            p.shutdown.clone(),
        );
        run_then_stop(&p, srv, main, "worker").await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_pools_parse() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("99999999999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(parse_pool("bootstrap=8"), Ok((JobKind::Bootstrap, 8)));
        assert!(parse_pool("bootstrap=0").unwrap_err().contains("positive"));
        assert!(
            parse_pool("nope=1")
                .unwrap_err()
                .contains("unknown job kind")
        );
    }
}
