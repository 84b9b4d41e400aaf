//! `drover sim` as scripts use it: start, wait for the ready line, use the
//! kubeconfigs it wrote (with kubectl), stop with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::kubectl_ok;

#[test]
fn prints_one_ready_line_writes_kubeconfigs_and_stops_on_sigterm() {
    // Fails now, with how to install it, if kubectl is missing.
    common::kubectl();
    let dir = std::env::temp_dir().join(format!("drover-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig.yaml");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["sim", "--kubeconfig"])
        .arg(&kc)
        .args(["--child", "edge", "--install-crds"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("drover sim starts");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a first line").unwrap();
    assert!(
        ready.starts_with("kube-sim ready: management at https://127.0.0.1:"),
        "{ready}"
    );
    let child = lines.next().expect("a child line").unwrap();
    assert!(
        child.starts_with("kube-sim child: edge at https://127.0.0.1:"),
        "{child}"
    );

    let get = |config: &PathBuf, what: &[&str]| kubectl_ok(config, what);
    assert!(
        get(&kc, &["get", "crd", "-o", "name"])
            .contains("k0sworkerconfigs.bootstrap.cluster.x-k8s.io"),
        "--install-crds installs our CRDs"
    );
    let child_kc = dir.join("kubeconfig-edge.yaml");
    assert!(get(&child_kc, &["get", "ns", "-o", "name"]).contains("namespace/kube-system"));
    assert!(
        !get(&child_kc, &["get", "crd", "-o", "name"]).contains("k0sworkerconfigs"),
        "the child is a separate cluster"
    );

    let pid = sim.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = sim.wait().unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
