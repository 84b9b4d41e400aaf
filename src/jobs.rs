//! `drover jobs`: the queue for operators. Depth, claims in flight and dead
//! letters per kind; the dead letters themselves; replaying them after the
//! cause is fixed; purging. Tables for people, `-o json` for scripts.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue, NatsAuth, NatsTls};
use drover_queue::{AnyQueue, DeadLetter, JobQueue, JobSelector, PurgeScope, QueueStats};
use drover_shared::jobs::JobKind;
use serde_json::json;

/// Which queue, and how to reach it. Shared by every command that talks
/// to the queue.
#[derive(Args, Clone, Debug)]
pub struct QueueArgs {
    /// NATS server URLs, comma-separated: use the JetStream queue.
    #[arg(long, env = "DROVER_NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// The embedded queue's file (when no --nats-url). Only while no other
    /// drover process has it open.
    #[arg(
        long,
        env = "DROVER_QUEUE_FILE",
        default_value = "drover-queue.redb",
        global = true
    )]
    pub queue_file: PathBuf,
    /// NATS user (with --nats-password).
    #[arg(long, env = "DROVER_NATS_USER", global = true)]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(
        long,
        env = "DROVER_NATS_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "DROVER_NATS_TOKEN", global = true, hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS nkey seed.
    #[arg(long, env = "DROVER_NATS_NKEY", global = true, hide_env_values = true)]
    pub nats_nkey: Option<String>,
    /// NATS credentials file (JWT and seed).
    #[arg(long, env = "DROVER_NATS_CREDS", global = true)]
    pub nats_creds: Option<PathBuf>,
    /// CA bundle (PEM) to trust for NATS TLS; implies TLS.
    #[arg(long, env = "DROVER_NATS_CA", global = true)]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS mutual TLS, with --nats-key.
    #[arg(long, env = "DROVER_NATS_CERT", global = true, requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// Client key (PEM) for NATS mutual TLS.
    #[arg(long, env = "DROVER_NATS_KEY", global = true, requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// Require TLS to NATS.
    #[arg(long, env = "DROVER_NATS_TLS", global = true)]
    pub nats_tls: bool,
    /// How long a claim lasts without renewal: a dead worker's jobs run
    /// elsewhere after this. On JetStream it is the consumers' ack wait,
    /// so every process of one deployment must give the same value.
    #[arg(
        long,
        env = "DROVER_QUEUE_LEASE",
        default_value = "60s",
        value_parser = crate::run::parse_duration,
        global = true
    )]
    pub queue_lease: std::time::Duration,
}

impl QueueArgs {
    /// The JetStream settings these arguments name, if a URL is given.
    pub fn jetstream(&self) -> Result<Option<JetStreamConfig>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        let auth = match (
            &self.nats_user,
            &self.nats_password,
            &self.nats_token,
            &self.nats_nkey,
            &self.nats_creds,
        ) {
            (None, None, None, None, None) => NatsAuth::None,
            (Some(user), Some(password), None, None, None) => NatsAuth::UserPassword {
                user: user.clone(),
                password: password.clone(),
            },
            (None, None, Some(t), None, None) => NatsAuth::Token(t.clone()),
            (None, None, None, Some(seed), None) => NatsAuth::NKeySeed(seed.clone()),
            (None, None, None, None, Some(path)) => NatsAuth::CredsFile(path.clone()),
            (Some(_), None, ..) | (None, Some(_), ..) => {
                bail!("--nats-user and --nats-password go together")
            }
            _ => bail!(
                "give one kind of NATS credentials: user and password, --nats-token, --nats-nkey or --nats-creds"
            ),
        };
        let tls =
            (self.nats_tls || self.nats_ca.is_some() || self.nats_cert.is_some()).then(|| {
                NatsTls {
                    ca: self.nats_ca.clone(),
                    client_cert: self.nats_cert.clone().zip(self.nats_key.clone()),
                    required: true,
                }
            });
        Ok(Some(JetStreamConfig {
            auth,
            tls,
            lease: self.queue_lease,
            ..JetStreamConfig::new(url.clone())
        }))
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// `drover jobs` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum JobsAction {
    /// Dead letters: jobs that failed for good, with their errors.
    Dead {
        /// Only this job kind.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<JobKind>,
        /// Only this CAPI cluster.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Put dead letters back as fresh jobs (attempts reset). A dead letter
    /// whose object already has a newer pending job stays.
    Replay {
        /// One dead letter, by job id.
        id: Option<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with_all = ["id", "kind", "cluster"])]
        all: bool,
        /// Dead letters of this kind.
        #[arg(long, value_parser = parse_kind, conflicts_with = "id")]
        kind: Option<JobKind>,
        /// Dead letters of this CAPI cluster.
        #[arg(long, conflicts_with = "id")]
        cluster: Option<String>,
    },
    /// Delete pending jobs, dead letters or both. Asks first.
    Purge {
        /// What to delete.
        #[arg(long, value_enum, default_value = "dead")]
        what: PurgeWhat,
        /// Do not ask (for scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// What `purge` deletes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PurgeWhat {
    /// Pending jobs (not those in flight, nor the next change of an object
    /// in flight).
    Pending,
    /// Dead letters.
    Dead,
    /// Both.
    All,
}

fn parse_kind(s: &str) -> Result<JobKind, String> {
    JobKind::parse(s).ok_or_else(|| {
        let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown job kind {s:?}; one of: {}", kinds.join(", "))
    })
}

/// Runs `drover jobs [action]`.
pub fn run(queue: &QueueArgs, action: Option<JobsAction>, output: Output) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        if queue.nats_url.is_none() && !queue.queue_file.exists() {
            bail!(
                "no queue: {} does not exist (give --nats-url for JetStream, or --queue-file)",
                queue.queue_file.display()
            );
        }
        act(&queue.open().await?, action, output).await
    })
}

impl QueueArgs {
    /// Connects to JetStream (with `--nats-url`) or opens the embedded file.
    pub async fn open(&self) -> Result<AnyQueue> {
        if let Some(config) = self.jetstream()? {
            let q = JetStreamQueue::connect(config)
                .await
                .context("connecting to the JetStream queue")?;
            Ok(AnyQueue::JetStream(q))
        } else {
            let path = &self.queue_file;
            let config = EmbeddedConfig {
                lease: self.queue_lease,
                ..EmbeddedConfig::default()
            };
            let q = EmbeddedQueue::open(path, config).with_context(|| {
                format!(
                    "opening {} (a running drover holds it open; stop it, or use JetStream)",
                    path.display()
                )
            })?;
            Ok(AnyQueue::Embedded(q))
        }
    }
}

async fn act<Q: JobQueue>(q: &Q, action: Option<JobsAction>, output: Output) -> Result<()> {
    match action {
        None => {
            let s = q.stats().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Output::Table => print!("{}", stats_table(&s)),
            }
        }
        Some(JobsAction::Dead { kind, cluster }) => {
            let dead = q
                .dead_letters(&JobSelector {
                    id: None,
                    kind,
                    cluster,
                })
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&dead)?),
                Output::Table => print!("{}", dead_table(&dead)),
            }
        }
        Some(JobsAction::Replay {
            id,
            all,
            kind,
            cluster,
        }) => {
            if !all && id.is_none() && kind.is_none() && cluster.is_none() {
                bail!("say which dead letters to replay: an ID, --all, --kind or --cluster");
            }
            let selector = JobSelector { id, kind, cluster };
            let matching = q.dead_letters(&selector).await?.len();
            let replayed = q.replay(&selector).await?;
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"matched": matching, "replayed": replayed, "kept": matching - replayed.min(matching)})
                ),
                Output::Table => {
                    println!("replayed {replayed} of {matching} matching dead letters");
                    if replayed < matching {
                        println!(
                            "{} kept: a newer job of the object is pending, or the payload was not a job",
                            matching - replayed
                        );
                    }
                }
            }
        }
        Some(JobsAction::Purge { what, yes }) => {
            let s = q.stats().await?;
            let (scope, count, noun) = match what {
                PurgeWhat::Pending => (PurgeScope::Pending, total(&s.pending), "pending jobs"),
                PurgeWhat::Dead => (PurgeScope::Dead, total(&s.dead), "dead letters"),
                PurgeWhat::All => (
                    PurgeScope::All,
                    total(&s.pending) + total(&s.dead),
                    "pending jobs and dead letters",
                ),
            };
            if !yes && !confirm(&format!("delete {count} {noun}?"))? {
                bail!("not purged");
            }
            let n = q.purge(scope).await?;
            match output {
                Output::Json => println!("{}", json!({ "purged": n })),
                Output::Table => println!("purged {n} {noun}"),
            }
        }
    }
    Ok(())
}

fn total(m: &std::collections::BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// Asks on the terminal; refuses without one (use --yes in scripts).
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal to ask on; pass --yes to purge anyway");
    }
    eprint!("{question} Type 'yes' to confirm: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

fn stats_table(s: &QueueStats) -> String {
    let mut rows = vec![vec![
        "KIND".to_owned(),
        "PENDING".to_owned(),
        "IN-FLIGHT".to_owned(),
        "DEAD".to_owned(),
    ]];
    for kind in JobKind::ALL {
        let k = kind.as_str();
        let get = |m: &std::collections::BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0);
        rows.push(vec![
            k.to_owned(),
            get(&s.pending).to_string(),
            get(&s.in_flight).to_string(),
            get(&s.dead).to_string(),
        ]);
    }
    table(&rows)
}

fn dead_table(dead: &[DeadLetter]) -> String {
    if dead.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let mut rows = vec![
        [
            "ID",
            "KIND",
            "OBJECT",
            "CLUSTER",
            "ATTEMPTS",
            "DEAD SINCE",
            "ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for d in dead {
        let since = i64::try_from(d.dead_at_ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(
                || d.dead_at_ms.to_string(),
                |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
        let mut error = d.error.replace('\n', " ");
        if error.chars().count() > 100 {
            error = error.chars().take(99).collect::<String>() + "…";
        }
        rows.push(vec![
            d.job.id.clone(),
            d.job.kind.as_str().to_owned(),
            format!(
                "{}/{}",
                d.job.object.kind.to_lowercase(),
                d.job.object_key()
            ),
            d.job.cluster.clone().unwrap_or_else(|| "-".into()),
            d.history.len().to_string(),
            since,
            error,
        ]);
    }
    table(&rows)
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == r.len() {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
