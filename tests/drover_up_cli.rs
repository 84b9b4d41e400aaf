//! `drover up` as a newcomer and CI use it: the examples become Ready,
//! kubectl works against the kubeconfig it writes while it serves, SIGTERM
//! stops it; `--exit-when-ready` and `--fleet` for scripts; a timeout is a
//! non-zero exit that says why.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::kubectl_ok;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drover-up-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_examples_become_ready_and_kubectl_sees_them_while_it_serves() {
    // Fails now, before drover up starts, if kubectl is missing.
    common::kubectl();
    let d = dir("serve");
    let kc = d.join("kubeconfig");
    let mut up = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["up", "--timeout", "2m", "--kubeconfig"])
        .arg(&kc)
        .current_dir(&d)
        .stderr(Stdio::piped())
        .spawn()
        .expect("drover up starts");
    let mut lines = BufReader::new(up.stderr.take().unwrap()).lines();
    let mut summary = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("bootstrap configs Ready in") {
            summary = Some(line);
            break;
        }
        assert!(!line.contains("timed out"), "{line}");
    }
    let summary = summary.expect("a summary line");
    assert!(
        summary.contains("3 of 3 bootstrap configs Ready"),
        "{summary}"
    );

    let rows = kubectl_ok(&kc, &["get", "k0sworkerconfigs", "-A", "--no-headers"]);
    assert_eq!(rows.lines().count(), 3, "{rows}");
    assert!(
        rows.lines().all(|r| r.contains("True")),
        "Ready column: {rows}"
    );
    let secret_type = kubectl_ok(
        &kc,
        &["get", "secret", "edge-worker-0", "-o", "jsonpath={.type}"],
    );
    assert_eq!(secret_type, "cluster.x-k8s.io/secret");

    let pid = up.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Drain stderr so the process never blocks writing it.
    for _ in lines {}
    let status = up.wait().unwrap();
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
}

#[test]
fn a_fleet_with_exit_when_ready_exits_zero() {
    let d = dir("fleet");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "up",
            "--fleet",
            "3",
            "--machines-per-cluster",
            "2",
            "--exit-when-ready",
            "--timeout",
            "2m",
        ])
        .current_dir(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("3 clusters, 6 bootstrap configs expected"),
        "{err}"
    );
    assert!(err.contains("6 of 6 bootstrap configs Ready"), "{err}");
    assert!(d.join("drover-up.kubeconfig").is_file());
}

#[test]
fn a_timeout_exits_non_zero_and_says_what_was_not_ready() {
    let d = dir("timeout");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "up",
            "--fleet",
            "2",
            "--exit-when-ready",
            "--timeout",
            "1ms",
        ])
        .current_dir(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("timed out after 1ms"), "{err}");
}
