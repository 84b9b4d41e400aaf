//! Measures what the watcher's cache costs: builds the index for 100,000
//! synthetic objects (`drover_watcher::index::synthetic::fleet`) and prints
//! the resident-set growth and the index's own estimate.
//!
//! `cargo run --release -p drover-watcher --example index_memory [N]`

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let before = rss_kib();
    let interner = drover_watcher::summary::Interner::default();
    let index = drover_watcher::index::synthetic::fleet(n, &interner);
    let after = rss_kib();
    let estimate = index.approx_bytes() + interner.heap_bytes();
    println!("objects: {}", index.len());
    println!("estimate: {} bytes per object", estimate / n.max(1));
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "rss growth: {} KiB, {} bytes per object",
            a.saturating_sub(b),
            a.saturating_sub(b) * 1024 / n.max(1) as u64
        );
    }
}
