//! `drover jobs` against a real nats-server (JetStream) and a real redb
//! file (embedded): stats, dead letters, replay, purge, tables and JSON.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use drover_queue::conformance::job;
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::NatsServer;
use drover_queue::{JobQueue, Outcome};
use drover_shared::jobs::{Change, JobKind};

fn drover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .env_remove("DROVER_NATS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("drover runs")
}

fn ok(args: &[&str]) -> String {
    let out = drover(args);
    assert!(
        out.status.success(),
        "drover {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = drover(args);
    assert!(!out.status.success(), "drover {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

async fn dead_letter<Q: JobQueue>(q: &Q, kind: JobKind, name: &str, why: &str) {
    q.publish(&job(kind, name, 1)).await.unwrap();
    let c = q.claim(kind, 1, Duration::from_secs(2)).await.unwrap();
    q.finish(c[0].clone(), Outcome::DeadLetter(why.into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn jobs_on_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let q = JetStreamQueue::connect(JetStreamConfig::new(url.clone()))
        .await
        .unwrap();
    dead_letter(&q, JobKind::JoinToken, "t1", "spec.ttl: must be positive").await;
    dead_letter(&q, JobKind::JoinToken, "t2", "spec.ttl: must be positive").await;
    q.publish(&job(JobKind::Noop, "waiting", 1)).await.unwrap();

    let stats: serde_json::Value =
        serde_json::from_str(&ok(&["jobs", "--nats-url", &url, "-o", "json"])).unwrap();
    assert_eq!(stats["dead"]["join-token"], 2, "{stats}");
    assert_eq!(stats["pending"]["noop"], 1, "{stats}");
    let table = ok(&["jobs", "--nats-url", &url]);
    assert!(table.starts_with("KIND"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["join-token", "0", "0", "2"]),
        "{table}"
    );

    let dead = ok(&["jobs", "dead", "--kind", "join-token", "--nats-url", &url]);
    assert!(dead.contains("spec.ttl: must be positive"), "{dead}");
    assert!(dead.contains("k0sworkerconfig/default/t1"), "{dead}");
    let dead: Vec<serde_json::Value> = serde_json::from_str(&ok(&[
        "jobs",
        "dead",
        "--cluster",
        "c1",
        "-o",
        "json",
        "--nats-url",
        &url,
    ]))
    .unwrap();
    assert_eq!(dead.len(), 2);
    let other: Vec<serde_json::Value> = serde_json::from_str(&ok(&[
        "jobs",
        "dead",
        "--cluster",
        "c2",
        "-o",
        "json",
        "--nats-url",
        &url,
    ]))
    .unwrap();
    assert!(other.is_empty());

    let id = dead[0]["job"]["id"].as_str().unwrap();
    let replayed = ok(&["jobs", "replay", id, "--nats-url", &url]);
    assert!(replayed.contains("replayed 1 of 1"), "{replayed}");
    let c = q
        .claim(JobKind::JoinToken, 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].job.cause.change, Change::Replay);
    assert_eq!(c[0].job.attempt, 0);

    let e = fails(&["jobs", "replay", "--nats-url", &url]);
    assert!(e.contains("say which dead letters"), "{e}");
    let e = fails(&["jobs", "dead", "--kind", "bogus", "--nats-url", &url]);
    assert!(
        e.contains("remote-machine"),
        "the valid kinds are listed: {e}"
    );

    let e = fails(&["jobs", "purge", "--nats-url", &url]);
    assert!(
        e.contains("--yes"),
        "no terminal, no purge without --yes: {e}"
    );
    assert_eq!(q.dead_letters(&Default::default()).await.unwrap().len(), 1);
    let purged = ok(&["jobs", "purge", "--yes", "--nats-url", &url]);
    assert!(purged.contains("purged 1 dead letters"), "{purged}");
    assert!(
        q.dead_letters(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn jobs_on_an_embedded_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queue.redb");
    {
        let q = EmbeddedQueue::open(&file, EmbeddedConfig::default()).unwrap();
        dead_letter(
            &q,
            JobKind::Bootstrap,
            "w",
            "spec.files[0].contentFrom: secret \"s\" not found",
        )
        .await;
    }
    let f = file.display().to_string();
    let mut dead = String::new();
    for _ in 0..50 {
        // The queue's writer thread releases the file just after the drop.
        let out = drover(&["jobs", "dead", "--queue-file", &f]);
        if out.status.success() {
            dead = String::from_utf8(out.stdout).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dead.contains("contentFrom"), "{dead}");
    let e = fails(&["jobs", "--queue-file", "/nonexistent/q.redb"]);
    assert!(e.contains("--nats-url"), "{e}");
}
