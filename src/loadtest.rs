//! `drover loadtest`: load tests, each printing a JSON report.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `drover loadtest queue`.
pub fn queue(
    backend: &str,
    jobs: usize,
    concurrency: usize,
    batch: usize,
    report: Option<PathBuf>,
) -> Result<()> {
    if backend != "embedded" {
        anyhow::bail!(
            "--backend {backend:?}: only \"embedded\" exists so far (JetStream comes with its backend)"
        );
    }
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = rt
        .block_on(drover_loadtest::queue::run_embedded(
            drover_loadtest::queue::QueueLoadOptions {
                jobs,
                concurrency,
                batch,
            },
        ))
        .map_err(|e| anyhow::anyhow!("load test failed: {e}"))?;
    crate::emit_report(&out, report)
}
