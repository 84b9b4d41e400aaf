//! A minimal worker process for the queue's process-level tests (SIGKILL
//! mid-job, server restarts, cluster node loss). It claims jobs of one kind
//! from JetStream, "works" on each for a while (renewing the claim), and
//! finishes it. Only a finish that settles is recorded, one line per job
//! in the output file, so a test can check each job completed exactly once.
//!
//! Usage: `drover-queue-probe URL KIND WORK_MS LEASE_MS OUT_FILE [CONCURRENCY]`.
//! Prints `claimed <object name>` on stdout for each claim. Payload names
//! starting with `fail-` always fail (for dead-letter counts).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::{Finished, JobQueue, Outcome, RetryPolicy};
use drover_shared::jobs::JobKind;

fn policy(_: JobKind) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: drover-queue-probe URL KIND WORK_MS LEASE_MS OUT_FILE [CONCURRENCY]");
        std::process::exit(2);
    }
    let kind = JobKind::parse(&args[2]).expect("a job kind");
    let work = Duration::from_millis(args[3].parse().expect("WORK_MS"));
    let lease = Duration::from_millis(args[4].parse().expect("LEASE_MS"));
    let out = args[5].clone();
    let concurrency: usize = args.get(6).map_or(4, |c| c.parse().expect("CONCURRENCY"));
    let config = JetStreamConfig {
        lease,
        policy,
        request_timeout: Duration::from_secs(2),
        ..JetStreamConfig::new(args[1].clone())
    };
    let queue = loop {
        match JetStreamQueue::connect(config.clone()).await {
            Ok(q) => break Arc::new(q),
            Err(e) => {
                eprintln!("connect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    loop {
        let free = slots.available_permits().max(1);
        let claims = match queue.claim(kind, free, Duration::from_secs(1)).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("claim: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for claim in claims {
            println!("claimed {}", claim.job.object.name);
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let (queue, out) = (queue.clone(), out.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let start = tokio::time::Instant::now();
                while start.elapsed() < work {
                    tokio::time::sleep((lease / 3).min(work)).await;
                    if start.elapsed() < work && queue.renew(&claim).await.is_err() {
                        eprintln!("lost {}", claim.job.object.name);
                        return;
                    }
                }
                let outcome = if claim.job.object.name.starts_with("fail-") {
                    Outcome::Retry("fails on purpose".into())
                } else {
                    Outcome::Done
                };
                let name = claim.job.object.name.clone();
                loop {
                    match queue.finish(claim.clone(), outcome.clone()).await {
                        Ok(Finished::Settled) => {
                            let mut f = std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(&out)
                                .expect("the output file opens");
                            // One write per line: concurrent appends must not interleave.
                            f.write_all(format!("{name}\n").as_bytes())
                                .expect("the output file is written");
                            return;
                        }
                        Ok(other) => {
                            eprintln!("finish {name}: {other:?}");
                            return;
                        }
                        Err(e) if e.is_retryable() => {
                            eprintln!("finish {name}: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            eprintln!("finish {name}: {e}");
                            return;
                        }
                    }
                }
            });
        }
        std::io::stdout().flush().ok();
    }
}
