//! The JetStream backend with real processes: worker processes killed with
//! SIGKILL, a nats-server killed and restarted mid-run, a node of a
//! three-node cluster lost, malformed payloads, credentials and TLS.
//! Nothing here mocks NATS.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use drover_queue::conformance::{self, job};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue, NatsAuth, NatsTls};
use drover_queue::nats_server::{self, NatsServer};
use drover_queue::{JobQueue, JobSelector, Outcome, Published, RetryPolicy};
use drover_shared::jobs::JobKind;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const PROBE: &str = env!("CARGO_BIN_EXE_drover-queue-probe");

fn policy(_: JobKind) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn config(url: String, lease: Duration) -> JetStreamConfig {
    JetStreamConfig {
        lease,
        policy,
        request_timeout: Duration::from_secs(2),
        ..JetStreamConfig::new(url)
    }
}

/// A nats-server on a free port, the queue on it, and the store folder.
async fn single_server(lease: Duration) -> (NatsServer, JetStreamQueue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = connect_retrying(config(server.url(), lease)).await;
    (server, q, dir)
}

/// Connects, trying again for a while (see `nats_server::connect_queue`).
async fn connect_retrying(config: JetStreamConfig) -> JetStreamQueue {
    nats_server::connect_queue(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A worker process (`drover-queue-probe`).
struct Probe {
    child: Child,
    claimed: mpsc::UnboundedReceiver<String>,
}

impl Probe {
    fn start(url: &str, kind: &str, work_ms: u64, lease_ms: u64, out: &Path, conc: usize) -> Self {
        let mut child = Command::new(PROBE)
            .args([
                url,
                kind,
                &work_ms.to_string(),
                &lease_ms.to_string(),
                &out.display().to_string(),
                &conc.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the probe starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, claimed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(name) = l.strip_prefix("claimed ") {
                    let _ = tx.send(name.to_owned());
                }
            }
        });
        Self { child, claimed }
    }

    async fn wait_claims(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let name = tokio::time::timeout(Duration::from_secs(20), self.claimed.recv())
                .await
                .expect("the probe claims in time")
                .expect("the probe is running");
            got.push(name);
        }
        got
    }
}

fn done_lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let waited = wait_for(timeout, async || if f().await { Ok(()) } else { Err(()) }).await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// Polls `f` until it is `Ok`; after `timeout`, its last `Err`.
async fn wait_for<E>(
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Result<(), E>,
) -> Result<(), E> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= end => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn publish_retrying(q: &JetStreamQueue, j: &drover_shared::jobs::Job) -> Published {
    loop {
        match q.publish(j).await {
            Ok(p) => return p,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing_and_each_job_completes_once() {
    let lease = Duration::from_millis(800);
    let (server, q, dir) = single_server(lease).await;
    let names: BTreeSet<String> = (0..10).map(|i| format!("j{i}")).collect();
    for n in &names {
        q.publish(&job(JobKind::RemoteMachine, n, 1)).await.unwrap();
    }
    let out = dir.path().join("done.txt");
    // Worker A takes every job, each for far longer than the test waits.
    let mut a = Probe::start(&server.url(), "remote-machine", 60_000, 800, &out, 10);
    let held = a.wait_claims(10).await;
    assert_eq!(held.iter().cloned().collect::<BTreeSet<_>>(), names);
    a.child.kill().await.unwrap(); // SIGKILL, mid-job
    let _b = Probe::start(&server.url(), "remote-machine", 50, 800, &out, 10);
    wait_until(
        "every job done by worker B",
        Duration::from_secs(30),
        async || done_lines(&out).len() >= names.len(),
    )
    .await;
    // Long enough for any second completion to show.
    tokio::time::sleep(lease * 3).await;
    let mut done = done_lines(&out);
    done.sort();
    assert_eq!(
        done,
        names.iter().cloned().collect::<Vec<_>>(),
        "each job exactly once"
    );
    let stats = q.stats().await.unwrap();
    assert!(
        stats.pending.is_empty() && stats.in_flight.is_empty() && stats.dead.is_empty(),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_server_killed_and_restarted_mid_run_loses_no_job() {
    let lease = Duration::from_millis(1500);
    let (mut server, q, dir) = single_server(lease).await;
    let out = dir.path().join("done.txt");
    let _worker = Probe::start(&server.url(), "bootstrap", 10, 1500, &out, 8);
    let mut all = BTreeSet::new();
    let mut failing = BTreeSet::new();
    for i in 0..300 {
        let name = if i % 30 == 7 {
            format!("fail-{i}")
        } else {
            format!("p{i}")
        };
        publish_retrying(&q, &job(JobKind::Bootstrap, &name, 1)).await;
        if name.starts_with("fail-") {
            failing.insert(name.clone());
        }
        all.insert(name);
        // Three restarts: each one may lose the answer to an ack in flight.
        if i % 100 == 50 {
            server.kill().await; // SIGKILL
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.restart().await.unwrap();
        }
    }
    let dead_names = async || -> BTreeSet<String> {
        match q.dead_letters(&JobSelector::all()).await {
            Ok(d) => d.into_iter().map(|d| d.job.object.name).collect(),
            Err(_) => BTreeSet::new(),
        }
    };
    let settled = wait_for(Duration::from_secs(60), async || {
        let done: BTreeSet<String> = done_lines(&out).into_iter().collect();
        let settled: BTreeSet<String> = done.union(&dead_names().await).cloned().collect();
        let missing: Vec<_> = all.difference(&settled).cloned().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    })
    .await;
    if let Err(missing) = settled {
        // Name what is missing and where the queue thinks it is.
        panic!(
            "jobs in != jobs done + jobs dead after 60 s: missing {missing:?}; stats {:?}",
            q.stats().await
        );
    }
    let done: BTreeSet<String> = done_lines(&out).into_iter().collect();
    let dead = dead_names().await;
    assert_eq!(done.union(&dead).cloned().collect::<BTreeSet<_>>(), all);
    assert!(done.is_disjoint(&dead));
    assert_eq!(dead, failing, "exactly the failing jobs are dead");
}

#[tokio::test]
async fn a_three_node_cluster_keeps_working_when_a_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = NatsServer::start_cluster(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let urls = nats_server::urls(&servers);
    let lease = Duration::from_secs(2);
    let q = connect_retrying(JetStreamConfig {
        replicas: 3,
        ..config(urls.clone(), lease)
    })
    .await;
    let mut done = BTreeSet::new();
    let mut all = BTreeSet::new();
    let step = async |q: &JetStreamQueue,
                      from: usize,
                      done: &mut BTreeSet<String>,
                      all: &mut BTreeSet<String>| {
        for i in from..from + 50 {
            let name = format!("r{i}");
            publish_retrying(q, &job(JobKind::Noop, &name, 1)).await;
            all.insert(name);
        }
        wait_until("the jobs are done", Duration::from_secs(60), async || {
            if let Ok(claims) = q.claim(JobKind::Noop, 20, Duration::from_millis(200)).await {
                for c in claims {
                    let name = c.job.object.name.clone();
                    if q.finish(c, Outcome::Done).await.is_ok() {
                        done.insert(name);
                    }
                }
            }
            done.len() == all.len()
        })
        .await;
    };
    step(&q, 0, &mut done, &mut all).await;
    // Kill the work stream's leader: the hardest node to lose.
    let mut stream = q.context().get_stream("DROVER_JOBS").await.unwrap();
    let info = stream.info().await.unwrap();
    let cluster = info.cluster.as_ref().expect("a clustered stream");
    assert_eq!(cluster.replicas.len(), 2, "R3: a leader and two replicas");
    let leader = cluster.leader.clone().expect("a leader");
    let victim = servers.iter_mut().find(|s| s.name == leader).unwrap();
    victim.kill().await;
    step(&q, 50, &mut done, &mut all).await;
    assert_eq!(done, all);
}

#[tokio::test]
async fn a_malformed_payload_is_dead_lettered_and_the_worker_goes_on() {
    let (server, q, dir) = single_server(Duration::from_secs(5)).await;
    let js = q.context();
    let subject = "drover.jobs.bootstrap.k0sworkerconfig.default.garbage";
    js.publish(subject, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut wrong = job(JobKind::Bootstrap, "other", 1);
    wrong.kind = JobKind::Bootstrap;
    let mut v = serde_json::to_value(&wrong).unwrap();
    v["surprise"] = serde_json::json!(true);
    js.publish(
        "drover.jobs.bootstrap.k0sworkerconfig.default.extra",
        serde_json::to_vec(&v).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let out = dir.path().join("done.txt");
    let mut worker = Probe::start(&server.url(), "bootstrap", 10, 5000, &out, 4);
    q.publish(&job(JobKind::Bootstrap, "fine", 1))
        .await
        .unwrap();
    wait_until(
        "the valid job is done",
        Duration::from_secs(20),
        async || done_lines(&out) == ["fine"],
    )
    .await;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker is still running"
    );
    let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert!(d.error.contains("malformed job payload"), "{}", d.error);
        assert!(d.raw.is_some());
    }
    assert!(
        dead.iter().any(|d| d.error.contains("surprise")),
        "the unknown field is named"
    );
    assert!(
        dead.iter().any(|d| d.job.object.name == "garbage"),
        "the object comes from the subject"
    );
    // Not replayable: there is no job to run.
    assert_eq!(q.replay(&JobSelector::all()).await.unwrap(), 0);
}

/// A dead letter that does not decode (another drover version wrote it, or
/// the store is damaged) is listed and counted under its id and kind, does
/// not stop the others from being listed or replayed, and purge removes it.
#[tokio::test]
async fn a_dead_letter_that_does_not_decode_is_listed_and_can_be_purged() {
    let (_server, q, _dir) = single_server(Duration::from_secs(5)).await;
    let js = q.context();
    let good = conformance::good_dead_letter();
    let dead = [
        (
            format!("drover.dead.bootstrap._.{}", good.job.id),
            serde_json::to_vec(&good).unwrap(),
        ),
        (
            "drover.dead.bootstrap.c9.from-the-future".to_owned(),
            br#"{"v": 9, "job": {"cluster": "c9"}}"#.to_vec(),
        ),
    ];
    for (subject, bytes) in dead {
        js.publish(subject, bytes.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let bad =
        conformance::an_undecodable_dead_letter_is_listed_and_purgeable(&q, "from-the-future")
            .await;
    assert!(bad.dead_at_ms > 0, "the time the store gave it");
}

/// A job can die more than once: a message that `wake` published again
/// can run beside the delivery it replaced, and each run ends in its own
/// dead letter. The job keeps one letter, the newest, also in a stream an
/// older drover made without the per-subject limit, so a replay by id
/// leaves none of it behind.
#[tokio::test]
async fn a_job_that_dies_twice_keeps_one_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    // The dead-letter stream as drover made it before the limit.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: drover_queue::jetstream::DEAD_STREAM.into(),
        subjects: vec!["drover.dead.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut letter = conformance::good_dead_letter();
    let subject = format!("drover.dead.bootstrap.c1.{}", letter.job.id);
    let store = |d: &drover_queue::DeadLetter| {
        let (js, subject, body) = (js.clone(), subject.clone(), serde_json::to_vec(d).unwrap());
        async move {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap()
        }
    };
    for error in ["first run", "second run"] {
        letter.error = error.into();
        store(&letter).await;
    }
    let q = JetStreamQueue::connect(config(server.url(), Duration::from_secs(5)))
        .await
        .unwrap();
    let by_id = JobSelector {
        id: Some(letter.job.id.clone()),
        ..JobSelector::default()
    };
    let listed = q.dead_letters(&by_id).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].error, "second run", "the newest stays");

    letter.error = "third run".into();
    store(&letter).await;
    let listed = q.dead_letters(&by_id).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].error, "third run");
    assert_eq!(q.stats().await.unwrap().dead["bootstrap"], 1);

    assert_eq!(q.replay(&by_id).await.unwrap(), 1);
    assert!(q.dead_letters(&by_id).await.unwrap().is_empty());
    let claims = q
        .claim(JobKind::Bootstrap, 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].job.id, letter.job.id);
}

#[tokio::test]
async fn jobs_survive_a_server_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lease = Duration::from_millis(800);
    {
        let q = JetStreamQueue::connect(config(server.url(), lease))
            .await
            .unwrap();
        q.publish(&job(JobKind::Bootstrap, "kept", 1))
            .await
            .unwrap();
        q.publish(&job(JobKind::RemoteMachine, "claimed", 1))
            .await
            .unwrap();
        q.publish(&job(JobKind::Noop, "dead", 1)).await.unwrap();
        let _abandoned = q
            .claim(JobKind::RemoteMachine, 1, Duration::ZERO)
            .await
            .unwrap();
        let d = q.claim(JobKind::Noop, 1, Duration::ZERO).await.unwrap();
        q.finish(d[0].clone(), Outcome::DeadLetter("bad".into()))
            .await
            .unwrap();
    }
    server.kill().await;
    server.restart().await.unwrap();
    let q = connect_retrying(config(server.url(), lease)).await;
    assert_eq!(
        q.claim(JobKind::Bootstrap, 10, Duration::from_secs(2))
            .await
            .unwrap()
            .len(),
        1
    );
    let back = q
        .claim(JobKind::RemoteMachine, 10, lease * 4)
        .await
        .unwrap();
    assert_eq!(
        back.len(),
        1,
        "an abandoned claim comes back after a restart"
    );
    assert_eq!(back[0].job.attempt, 1, "and counts as a failed attempt");
    assert_eq!(q.dead_letters(&JobSelector::all()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn credentials_are_required_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let port = nats_server::free_port();
    let server = NatsServer::start_with(
        dir.path(),
        "auth",
        port,
        &[
            "--user".into(),
            "drover".into(),
            "--pass".into(),
            "s3cret".into(),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut c = config(server.url(), Duration::from_secs(5));
    let refused = JetStreamQueue::connect(c.clone())
        .await
        .err()
        .expect("no credentials, no queue");
    assert!(refused.to_string().contains("connect to NATS"), "{refused}");
    c.auth = NatsAuth::UserPassword {
        user: "drover".into(),
        password: "s3cret".into(),
    };
    let q = JetStreamQueue::connect(c)
        .await
        .expect("the right password connects");
    assert_eq!(
        q.publish(&job(JobKind::Noop, "a", 1)).await.unwrap(),
        Published::Queued
    );

    let server = NatsServer::start_with(
        dir.path(),
        "token",
        nats_server::free_port(),
        &["--auth".into(), "t0ken".into()],
    )
    .await
    .unwrap();
    let mut c = config(server.url(), Duration::from_secs(5));
    c.auth = NatsAuth::Token("t0ken".into());
    JetStreamQueue::connect(c)
        .await
        .expect("the token connects");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = p.signed_by(&key, &issuer).unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca_cert.pem());
    let cert_path = write(dir.path(), "server.pem", &cert.pem());
    let key_path = write(dir.path(), "server.key", &key.serialize_pem());
    let server = NatsServer::start_with(
        dir.path(),
        "tls",
        nats_server::free_port(),
        &[
            "--tls".into(),
            "--tlscert".into(),
            cert_path.display().to_string(),
            "--tlskey".into(),
            key_path.display().to_string(),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut c = config(server.url(), Duration::from_secs(5));
    assert!(
        JetStreamQueue::connect(c.clone()).await.is_err(),
        "an untrusted certificate is refused"
    );
    c.tls = Some(NatsTls {
        ca: Some(ca_path),
        client_cert: None,
        required: true,
    });
    let q = JetStreamQueue::connect(c)
        .await
        .expect("TLS with the CA connects");
    assert_eq!(
        q.publish(&job(JobKind::Noop, "t", 1)).await.unwrap(),
        Published::Queued
    );
}

/// A server older than 2.10 is refused with a message naming both
/// versions. No 2.9 binary is installed here, so a listener speaks the
/// first lines of the NATS protocol as nats-server 2.9.10 does (INFO, then
/// PONG to the client's PING); that is all the version check reads.
#[tokio::test]
async fn an_old_server_is_refused_with_a_clear_error() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let info = format!(
                    "INFO {{\"server_id\":\"old\",\"server_name\":\"old\",\"version\":\"2.9.10\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}}\r\n"
                );
                sock.write_all(info.as_bytes()).await.unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if String::from_utf8_lossy(&buf[..n]).contains("PING") {
                        let _ = sock.write_all(b"PONG\r\n").await;
                    }
                }
            });
        }
    });
    let err = JetStreamQueue::connect(config(
        format!("nats://127.0.0.1:{port}"),
        Duration::from_secs(5),
    ))
    .await
    .err()
    .expect("an old server is refused");
    let msg = err.to_string();
    assert!(msg.contains("2.9.10") && msg.contains("2.10.0"), "{msg}");
}
