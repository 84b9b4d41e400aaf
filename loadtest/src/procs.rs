//! Real processes for load tests and end-to-end tests: spawning `drover`
//! subcommands, waiting for the line that says they serve, sampling their
//! CPU time and memory from `/proc`, and stopping them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// A child process with a name, killed when dropped.
pub struct Proc {
    /// For reports: `kube-sim`, `watcher`, `worker-1`, ...
    pub name: String,
    child: Child,
    /// Peak resident memory seen by [`Proc::sample`], in bytes.
    pub peak_rss: u64,
}

/// CPU time and memory of one process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User plus system CPU seconds so far.
    pub cpu_s: f64,
    /// Resident memory now, bytes.
    pub rss: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    Some(Usage {
        cpu_s: ticks / 100.0,
        rss: rss_kib * 1024,
    })
}

impl Proc {
    /// Starts `program args...`, with stdout and stderr read by this
    /// process. Returns once a line of either contains `ready_marker`,
    /// with that line; fails if the process exits first or `timeout` passes.
    /// Later output goes to `log` (appended), for post-mortems.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        ready_marker: &str,
        log: &Path,
        timeout: Duration,
    ) -> Result<(Self, String), String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {name} ({}): {e}", program.display()))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for (stream, tx) in [
            (
                Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                tx.clone(),
            ),
            (Box::new(err), tx),
        ] {
            let log = log.to_path_buf();
            let prefix = name.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .await
                    .ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(f) = file.as_mut() {
                        use tokio::io::AsyncWriteExt as _;
                        let _ = f.write_all(format!("[{prefix}] {line}\n").as_bytes()).await;
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(l) if l.contains(ready_marker) => {
                        // Keep draining so the child never blocks on a full pipe.
                        tokio::spawn(async move { while rx.recv().await.is_some() {} });
                        return Ok((Self { name: name.to_owned(), child, peak_rss: 0 }, l));
                    }
                    Some(_) => {}
                    None => {
                        let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                        return Err(format!(
                            "{name} exited ({status}) before it was ready; its output is in {}",
                            log.display()
                        ));
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "{name} did not say {ready_marker:?} within {timeout:?}; its output is in {}",
                        log.display()
                    ));
                }
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Current usage; also updates [`Proc::peak_rss`].
    pub fn sample(&mut self) -> Option<Usage> {
        let u = usage(self.pid()?)?;
        self.peak_rss = self.peak_rss.max(u.rss);
        Some(u)
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait up to `grace` before SIGKILL. Returns whether it
    /// exited by itself with success.
    pub async fn stop(&mut self, grace: Duration) -> bool {
        if let Some(pid) = self.child.id() {
            // No libc crate: `kill` the command does the signalling.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                self.kill().await;
                false
            }
        }
    }
}

/// The `drover` binary to spawn: `DROVER_BIN`, else this executable when
/// it is `drover`, else `drover` beside it (tests run from `target/*/deps`).
pub fn drover_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("DROVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    if me.file_stem().is_some_and(|s| s == "drover") {
        return Ok(me);
    }
    let mut dir = me.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("drover");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Err("cannot find the drover binary: build it (cargo build) or set DROVER_BIN".into())
}

/// The address in a `drover telemetry: http://ADDR` line.
pub fn telemetry_addr(line: &str) -> Option<String> {
    line.split("http://").nth(1).map(|s| s.trim().to_owned())
}

/// Polls `http://addr/readyz` until it answers 200, or `timeout`.
pub async fn wait_ready(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match http_get(addr, "/readyz").await {
            Ok(body) if body.starts_with("HTTP/1.1 200") => return Ok(()),
            Ok(body) => last = body.lines().last().unwrap_or_default().to_owned(),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{addr} not ready within {timeout:?}: {last}"))
}

/// A plain HTTP/1.1 GET (status line, headers and body as text).
pub async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(out)
}

/// Sums the samples of a Prometheus counter family (`name` without
/// `_total`) in a text exposition.
pub fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with("_total") || rest.starts_with('{') || rest.starts_with(' ')
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_sums_counters() {
        let u = usage(std::process::id()).expect("this process has /proc entries");
        assert!(u.rss > 0);
        assert_eq!(
            telemetry_addr("drover telemetry: http://127.0.0.1:4000"),
            Some("127.0.0.1:4000".into())
        );
        let text = "# HELP x\nx_outcomes_total{kind=\"a\"} 3\nx_outcomes_total{kind=\"b\"} 4\nx_outcomes_other 9\n";
        assert_eq!(counter_sum(text, "x_outcomes"), 7.0);
    }
}
