//! End to end, as real processes: kube-sim (`drover sim`), a nats-server,
//! `drover watcher` and `drover worker`s with the echo stand-in handler.
//! Objects created in kube-sim pass through the watcher, JetStream and the
//! workers, and the workers write status back. Midway the watcher is
//! stopped (and objects change while it is down) and a worker is killed
//! with SIGKILL; every object must still end up handled at its latest
//! generation, with nothing dead-lettered and nothing left in the queue.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_loadtest::procs::{self, Proc};
use drover_queue::JobQueue as _;
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::NatsServer;
use drover_shared::api::bootstrap::K0sWorkerConfig;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "e2e";
const LEASE: &str = "3s";

fn drover() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig usable");
    kube::Client::try_from(cfg).expect("client")
}

struct Env {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    nats: NatsServer,
    log: PathBuf,
}

impl Env {
    fn args(&self, sub: &str) -> Vec<String> {
        vec![
            sub.into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--nats-url".into(),
            self.nats.url(),
            "--queue-lease".into(),
            LEASE.into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ]
    }

    async fn start(&self, name: &str, args: Vec<String>) -> (Proc, String) {
        let (p, line) = Proc::spawn(
            name,
            &drover(),
            &args,
            "drover telemetry:",
            &self.log,
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        let addr = procs::telemetry_addr(&line).expect("telemetry address");
        procs::wait_ready(&addr, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (p, addr)
    }

    async fn watcher(&self) -> (Proc, String) {
        self.start("watcher", self.args("watcher")).await
    }

    async fn worker(&self, name: &str) -> (Proc, String) {
        let mut a = self.args("worker");
        a.extend(
            [
                "--pool",
                "bootstrap=4",
                "--stand-in",
                "echo",
                "--echo-delay",
                "300ms",
                "--lease-renew-every",
                "1s",
                "--shutdown-deadline",
                "2s",
            ]
            .map(String::from),
        );
        self.start(name, a).await
    }
}

fn config(name: &str, files: usize) -> K0sWorkerConfig {
    let files: Vec<_> = (0..files)
        .map(|i| json!({"path": format!("/etc/e2e-{i}"), "content": "x"}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
        "kind": "K0sWorkerConfig",
        "metadata": {"name": name, "labels": {"cluster.x-k8s.io/cluster-name": "e2e"}},
        "spec": {"files": files}
    }))
    .expect("a K0sWorkerConfig")
}

/// Names of objects not yet handled at their current generation.
async fn unhandled(api: &Api<K0sWorkerConfig>) -> Vec<String> {
    let list = api.list(&ListParams::default()).await.expect("list");
    list.items
        .into_iter()
        .filter(|o| {
            let g = o.metadata.generation.unwrap_or(0);
            !o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Handled" && c.observed_generation == Some(g))
            })
        })
        .filter_map(|o| o.metadata.name)
        .collect()
}

async fn wait_handled(
    api: &Api<K0sWorkerConfig>,
    at_least: usize,
    total: usize,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = unhandled(api).await;
        if total - left.len() >= at_least {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} of {total} objects handled after {timeout:?}; waiting: {:?}",
                total - left.len(),
                &left[..left.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_watcher_restart_and_a_killed_worker() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("processes.log");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let (mut sim, _) = Proc::spawn(
        "kube-sim",
        &drover(),
        &[
            "sim".into(),
            "--plain-http".into(),
            "--install-crds".into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ],
        "kube-sim ready",
        &log,
        Duration::from_secs(30),
    )
    .await
    .expect("kube-sim starts");
    std::fs::create_dir_all(dir.path().join("nats")).unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let env = Env {
        dir,
        kubeconfig,
        nats,
        log,
    };
    let c = client(&env.kubeconfig).await;
    Api::<Namespace>::all(c.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    let api: Api<K0sWorkerConfig> = Api::namespaced(c.clone(), NS);

    let (mut watcher, _) = env.watcher().await;
    let (mut w1, _) = env.worker("worker-1").await;
    let (mut w2, w2_addr) = env.worker("worker-2").await;

    const FIRST: usize = 60;
    for i in 0..FIRST {
        api.create(&PostParams::default(), &config(&format!("a-{i:03}"), 1))
            .await
            .unwrap();
    }
    wait_handled(&api, 10, FIRST, Duration::from_secs(60)).await;

    // A worker dies mid-run: its claims come back after the lease.
    w1.kill().await;
    // The watcher stops; objects are created and changed while it is down.
    assert!(
        watcher.stop(Duration::from_secs(10)).await,
        "watcher exits cleanly on SIGTERM"
    );
    const SECOND: usize = 30;
    for i in 0..SECOND {
        api.create(&PostParams::default(), &config(&format!("b-{i:03}"), 1))
            .await
            .unwrap();
    }
    for i in 0..10 {
        api.patch(
            &format!("a-{i:03}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"files": [{"path": "/etc/changed", "content": "y"}]}})),
        )
        .await
        .unwrap();
    }
    let (_watcher2, _) = env.watcher().await;
    let (_w3, _) = env.worker("worker-3").await;

    let total = FIRST + SECOND;
    wait_handled(&api, total, total, Duration::from_secs(120)).await;
    let changed = api.get("a-000").await.unwrap();
    assert_eq!(
        changed.metadata.generation,
        Some(2),
        "the change made while the watcher was down counts"
    );

    // Nothing lost, nothing dead, nothing left behind.
    let q = JetStreamQueue::connect(JetStreamConfig {
        lease: Duration::from_secs(3),
        ..JetStreamConfig::new(env.nats.url())
    })
    .await
    .expect("queue");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = q.stats().await.unwrap();
        assert!(s.dead.values().all(|n| *n == 0), "no dead letters: {s:?}");
        if s.pending.values().all(|n| *n == 0) && s.in_flight.values().all(|n| *n == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue drains: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let w2_done = procs::counter_sum(
        &procs::http_get(&w2_addr, "/metrics")
            .await
            .unwrap_or_default(),
        "drover_worker_outcomes",
    );
    assert!(w2_done > 0.0, "the surviving worker did work");
    let _ = w2.stop(Duration::from_secs(10)).await;
    sim.kill().await;
    drop(env.dir);
}
