//! Helpers shared by this crate's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root (the folder holding `schemas/`, `examples/`, `deploy/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ has a parent")
        .to_path_buf()
}

/// A tool the tests need, or a failure that says how to install it.
/// Tests never skip silently when a tool is missing.
pub fn require_tool(name: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH. Install it with `.ci/test-all` (which installs every test tool) or: {install_hint}"))
}
