//! `drover`: one binary, one subcommand per job. Each subcommand is a thin
//! shell around a library crate; see ARCHITECTURE.md for the map.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use drover_shared::crds;
use drover_shared::manifests::{self, SchemaRegistry};

/// mimalloc, not glibc's malloc: the queue client and kube-sim allocate
/// many small, short-lived buffers, and glibc's free lists were a quarter of
/// the client's CPU in profiles of `drover loadtest queue`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod jobs;
mod loadtest;
mod run;
mod sim;
mod up;

/// k0smotron-compatible Cluster API providers: a thin watcher, a durable job
/// queue and a pool of workers.
#[derive(Parser)]
#[command(name = "drover", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on embedded defaults: kube-sim, the
    /// simulated CAPI core, a child cluster per CAPI Cluster, the embedded
    /// queue, the watcher and the workers; applies the examples (or
    /// `--fleet N` clusters) and shows progress until every bootstrap
    /// config is Ready, then serves on (or exits, `--exit-when-ready`).
    Up(up::UpArgs),
    /// Write the CRDs generated from the API types, one YAML file each, and
    /// the JSON schema of queue jobs (`jobs/job.schema.json`).
    Crds {
        /// Folder to write into: `crds/` (drover's kinds) and `capi/` (the
        /// CAPI core subset for the simulated API server) are created in it.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
        /// Do not write; exit non-zero if the files on disk differ.
        #[arg(long)]
        check: bool,
    },
    /// Check manifests against drover's CRDs as an API server would: prune
    /// unknown fields, apply defaults, validate. Prints each object's verdict.
    Validate {
        /// Files or folders of YAML manifests.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print each valid object as the API server would store it (defaults applied).
        #[arg(long)]
        show_defaults: bool,
    },
    /// The job queue: depth, claims in flight and dead letters per kind
    /// (no subcommand); dead letters; replay; purge.
    Jobs {
        #[command(flatten)]
        queue: jobs::QueueArgs,
        /// Output: a table, or JSON for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
        output: jobs::Output,
        #[command(subcommand)]
        action: Option<jobs::JobsAction>,
    },
    /// The watcher: turns object changes into queue jobs, until SIGTERM.
    Watcher(run::WatcherArgs),
    /// A worker: claims jobs of its pools' kinds and runs their handlers,
    /// until SIGTERM (in-flight jobs finish or are released).
    Worker(run::WorkerArgs),
    /// Load tests; each prints a JSON report.
    Loadtest {
        #[command(subcommand)]
        action: LoadtestAction,
    },
    /// Run kube-sim, the simulated Kubernetes API server, until stopped.
    /// Prints one line starting with `kube-sim ready` once every cluster serves.
    Sim {
        #[command(subcommand)]
        action: Option<SimAction>,
        /// Where to write the management cluster's kubeconfig; child
        /// clusters' kubeconfigs go beside it as `<stem>-<child>.<ext>`.
        #[arg(long, default_value = "kubeconfig.yaml")]
        kubeconfig: PathBuf,
        /// Child clusters to start besides the management cluster.
        #[arg(long = "child")]
        children: Vec<String>,
        /// Serve plain HTTP without authentication instead of HTTPS.
        #[arg(long)]
        plain_http: bool,
        /// Watch events kept for resumes (older resume points get 410 Gone).
        #[arg(long, default_value_t = 10_000)]
        history: usize,
        /// Install drover's CRDs and the CAPI core subset at start.
        #[arg(long)]
        install_crds: bool,
    },
}

#[derive(Subcommand)]
enum LoadtestAction {
    /// The bootstrap provider end to end in one process: C clusters of M
    /// workers; reports configs/s and latency percentiles.
    Bootstrap {
        /// CAPI Clusters.
        #[arg(long, default_value_t = 1000)]
        clusters: usize,
        /// Worker Machines per cluster.
        #[arg(long, default_value_t = 10)]
        machines_per_cluster: usize,
        /// `embedded` (redb) or `jetstream`.
        #[arg(long, default_value = "embedded")]
        backend: String,
        /// nats-server for `--backend jetstream`; without it one is started
        /// from PATH in a temporary folder.
        #[arg(long)]
        nats_url: Option<String>,
        /// Bootstrap jobs run at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_parser = run::parse_duration)]
        timeout: std::time::Duration,
        /// Also write the JSON report here, and an SVG chart beside it.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Queue throughput: publish, then claim and finish, N jobs.
    Queue {
        /// Backend to measure: `embedded` (redb), or `jetstream` (raw
        /// async-nats and drover's queue on one server, with their ratio).
        #[arg(long, default_value = "embedded")]
        backend: String,
        /// nats-server for `--backend jetstream`; without it one is started
        /// from PATH in a temporary folder.
        #[arg(long)]
        nats_url: Option<String>,
        /// Jobs.
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Concurrent publishers and workers.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Jobs claimed at once by a worker.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Rounds (on JetStream each runs raw and drover, alternating which
        /// goes first); the report gives medians and each round.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The whole pipeline as real processes: kube-sim, nats-server, one
    /// watcher and W workers; N objects created and handled.
    Pipeline {
        /// Objects (K0sWorkerConfigs) per round.
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Worker processes; a list runs one round each and reports the
        /// speedup (`--workers 1,2,4`).
        #[arg(long, value_delimiter = ',', default_value = "2")]
        workers: Vec<usize>,
        /// Stand-in handler: `noop`, or `echo` (waits `--echo-delay`).
        #[arg(long, default_value = "noop")]
        handler: String,
        /// Echo's wait per job.
        #[arg(long, default_value = "200ms", value_parser = run::parse_duration)]
        echo_delay: std::time::Duration,
        /// Jobs each worker runs at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Objects created per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Give up on a round after this long.
        #[arg(long, default_value = "10m", value_parser = run::parse_duration)]
        timeout: std::time::Duration,
        /// Also write the JSON report here, and an SVG chart beside it.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SimAction {
    /// Measure kube-sim through a real client over loopback; prints JSON.
    Bench {
        /// Objects to create, update and list.
        #[arg(long, default_value_t = 100_000)]
        objects: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Watchers receiving every event.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Also write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { dir, check } => write_crds(&dir, check),
        Command::Validate {
            paths,
            show_defaults,
        } => validate(&paths, show_defaults),
        Command::Jobs {
            queue,
            output,
            action,
        } => jobs::run(&queue, action, output),
        Command::Loadtest {
            action:
                LoadtestAction::Queue {
                    backend,
                    jobs,
                    concurrency,
                    batch,
                    rounds,
                    nats_url,
                    report,
                },
        } => loadtest::queue(
            &backend,
            drover_loadtest::queue::QueueLoadOptions {
                jobs,
                concurrency,
                batch,
                rounds,
            },
            nats_url,
            report,
        ),
        Command::Loadtest {
            action:
                LoadtestAction::Pipeline {
                    objects,
                    workers,
                    handler,
                    echo_delay,
                    concurrency,
                    rate,
                    timeout,
                    report,
                },
        } => loadtest::pipeline(
            objects,
            workers,
            &handler,
            echo_delay,
            concurrency,
            rate,
            timeout,
            report,
        ),
        Command::Up(args) => up::run(args),
        Command::Loadtest {
            action:
                LoadtestAction::Bootstrap {
                    clusters,
                    machines_per_cluster,
                    backend,
                    nats_url,
                    concurrency,
                    timeout,
                    report,
                },
        } => loadtest::bootstrap(
            drover_loadtest::bootstrap::BootstrapLoadOptions {
                clusters,
                machines_per_cluster,
                backend,
                nats_url,
                concurrency,
                timeout,
            },
            report,
        ),
        Command::Watcher(args) => run::watcher(args),
        Command::Worker(args) => run::worker(args),
        Command::Sim {
            action:
                Some(SimAction::Bench {
                    objects,
                    concurrency,
                    watchers,
                    report,
                }),
            ..
        } => sim::bench(objects, concurrency, watchers, report),
        Command::Sim {
            action: None,
            kubeconfig,
            children,
            plain_http,
            history,
            install_crds,
        } => sim::run(sim::Options {
            kubeconfig,
            children,
            tls: !plain_http,
            history,
            install_crds,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a JSON report and, when asked, writes it to a file too.
fn emit_report(report: &serde_json::Value, file: Option<PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    println!("{text}");
    if let Some(path) = file {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        // A chart of the rates beside the JSON.
        let bars = drover_loadtest::chart::report_bars(report);
        if !bars.is_empty() {
            let svg = path.with_extension("svg");
            let title = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            std::fs::write(&svg, drover_loadtest::chart::bar_chart_svg(&title, &bars))
                .with_context(|| format!("writing {}", svg.display()))?;
            eprintln!("wrote {} and {}", path.display(), svg.display());
        }
    }
    Ok(())
}

fn write_crds(dir: &Path, check: bool) -> Result<()> {
    let mut stale = Vec::new();
    for (rel, content) in crds::rendered_files()? {
        let path = dir.join(&rel);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                stale.push(path.display().to_string());
            }
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if !stale.is_empty() {
        bail!(
            "generated files are not up to date; run `drover crds`:\n  {}",
            stale.join("\n  ")
        );
    }
    Ok(())
}

fn validate(paths: &[PathBuf], show_defaults: bool) -> Result<()> {
    let registry = SchemaRegistry::new().context("compiling the CRD schemas")?;
    let mut files = Vec::new();
    for p in paths {
        collect_yaml(p, &mut files)?;
    }
    let (mut ok, mut bad, mut skipped) = (0, 0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let docs = manifests::parse_documents(&text)
            .with_context(|| format!("parsing {}", file.display()))?;
        for mut doc in docs {
            let kind = doc
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("?")
                .to_owned();
            let name = doc
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_owned();
            let api_version = doc
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_owned();
            if !registry.knows(&api_version, &kind) {
                skipped += 1;
                println!(
                    "{}: {kind}/{name}: skipped (not a drover or CAPI kind)",
                    file.display()
                );
                continue;
            }
            match registry.admit(&mut doc) {
                Ok(()) => {
                    ok += 1;
                    println!("{}: {kind}/{name}: valid", file.display());
                    if show_defaults {
                        print!(
                            "{}",
                            serde_saphyr::to_string(&doc).map_err(|e| anyhow::anyhow!("{e}"))?
                        );
                    }
                }
                Err(e) => {
                    bad += 1;
                    println!("{}: {kind}/{name}: INVALID: {e}", file.display());
                }
            }
        }
    }
    println!("{ok} valid, {bad} invalid, {skipped} skipped");
    if bad > 0 {
        bail!("{bad} invalid object(s)");
    }
    Ok(())
}

fn collect_yaml(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            collect_yaml(&e.path(), out)?;
        }
    } else if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    ) {
        out.push(path.to_path_buf());
    }
    Ok(())
}
