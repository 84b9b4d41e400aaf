//! `drover sim`: kube-sim as a process, for scripts, CI and `drover up`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use drover_loadtest::sim::{Sim, SimConfig};

/// What `drover sim` was asked for.
pub struct Options {
    pub kubeconfig: PathBuf,
    pub children: Vec<String>,
    pub tls: bool,
    pub history: usize,
    pub install_crds: bool,
}

/// The name of the management cluster.
const MANAGEMENT: &str = "management";

pub fn run(opts: Options) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(serve(opts))
}

/// `drover sim bench`: prints the report and optionally writes it.
pub fn bench(
    objects: usize,
    concurrency: usize,
    watchers: usize,
    report: Option<PathBuf>,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let out = rt
        .block_on(drover_loadtest::bench::run(
            drover_loadtest::bench::BenchOptions {
                objects,
                concurrency,
                watchers,
            },
        ))
        .map_err(|e| anyhow::anyhow!("benchmark failed: {e}"))?;
    crate::emit_report(&out, report)
}

async fn serve(opts: Options) -> Result<()> {
    let sim = Sim::new(SimConfig {
        tls: opts.tls,
        history_limit: opts.history,
        // Hosted control planes in the management cluster get child clusters.
        hosted_control_planes_in: Some(MANAGEMENT.to_owned()),
        ..SimConfig::default()
    });
    let mgmt = sim.add_cluster(MANAGEMENT).await?;
    for child in &opts.children {
        sim.add_cluster(child).await?;
    }
    if opts.install_crds {
        drover_loadtest::stack::install_crds(&mgmt)?;
    }
    sim.write_kubeconfigs(&opts.kubeconfig, MANAGEMENT)?;
    // The one line scripts wait for.
    println!(
        "kube-sim ready: {} at {} kubeconfig {}",
        MANAGEMENT,
        mgmt.url,
        opts.kubeconfig.display()
    );
    for child in &opts.children {
        if let Some(h) = sim.cluster(child) {
            println!(
                "kube-sim child: {child} at {} kubeconfig {}",
                h.url,
                drover_loadtest::sim::server::sibling(&opts.kubeconfig, child).display()
            );
        }
    }
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
