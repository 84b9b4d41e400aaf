//! `drover loadtest`: load tests, each printing a JSON report.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `drover loadtest queue`.
pub fn queue(
    backend: &str,
    jobs: usize,
    concurrency: usize,
    batch: usize,
    nats_url: Option<String>,
    report: Option<PathBuf>,
) -> Result<()> {
    let opts = drover_loadtest::queue::QueueLoadOptions {
        jobs,
        concurrency,
        batch,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = match backend {
        "embedded" => rt.block_on(drover_loadtest::queue::run_embedded(opts)),
        "jetstream" => rt.block_on(drover_loadtest::queue::run_jetstream(opts, nats_url)),
        other => anyhow::bail!("--backend {other:?}: expected \"embedded\" or \"jetstream\""),
    }
    .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    crate::emit_report(&out, report)
}
