//! `drover loadtest`: load tests, each printing a JSON report.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `drover loadtest queue`.
pub fn queue(
    backend: &str,
    opts: drover_loadtest::queue::QueueLoadOptions,
    nats_url: Option<String>,
    report: Option<PathBuf>,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = match backend {
        "embedded" => rt.block_on(drover_loadtest::queue::run_embedded(opts)),
        "jetstream" => rt.block_on(drover_loadtest::queue::run_jetstream(opts, nats_url)),
        other => anyhow::bail!("--backend {other:?}: expected \"embedded\" or \"jetstream\""),
    }
    .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    crate::emit_report(&out, report)
}

/// `drover loadtest bootstrap`.
pub fn bootstrap(
    opts: drover_loadtest::bootstrap::BootstrapLoadOptions,
    report: Option<PathBuf>,
) -> Result<()> {
    // Quiet: a log line per config would cost more than the work.
    let _telemetry = drover_telemetry::init(&drover_telemetry::TelemetryConfig {
        service: "drover-loadtest".into(),
        log_format: drover_telemetry::LogFormat::Text,
        otlp_endpoint: None,
        default_filter: Some("warn".into()),
    })?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = rt
        .block_on(drover_loadtest::bootstrap::run(opts))
        .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    crate::emit_report(&out, report)
}

/// `drover loadtest pipeline`.
#[allow(clippy::too_many_arguments)] // one per flag
pub fn pipeline(
    objects: usize,
    workers: Vec<usize>,
    handler: &str,
    echo_delay: std::time::Duration,
    concurrency: usize,
    rate: Option<f64>,
    timeout: std::time::Duration,
    report: Option<PathBuf>,
) -> Result<()> {
    use drover_loadtest::pipeline::{PipelineOptions, StandIn};
    let stand_in = match handler {
        "noop" => StandIn::Noop,
        "echo" => StandIn::Echo(echo_delay),
        other => anyhow::bail!("--handler {other:?}: expected \"noop\" or \"echo\""),
    };
    if workers.is_empty() || workers.contains(&0) {
        anyhow::bail!("--workers: give one or more positive counts, e.g. 2 or 1,2,4");
    }
    let opts = PipelineOptions {
        objects,
        workers,
        stand_in,
        concurrency: concurrency.max(1),
        rate,
        timeout,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = rt
        .block_on(drover_loadtest::pipeline::run(&opts))
        .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    crate::emit_report(&out, report)
}
