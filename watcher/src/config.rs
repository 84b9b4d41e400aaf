//! The watcher's settings.

use std::time::Duration;

/// What to watch and how hard to push the queue.
#[derive(Clone, Debug)]
pub struct WatcherConfig {
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// CAPI `--watch-filter`: watch only CAPI and k0smotron objects labelled
    /// `cluster.x-k8s.io/watch-filter=<value>` (Secrets and ConfigMaps are
    /// not filtered: they carry no such label).
    pub watch_filter: Option<String>,
    /// How often every cached object of drover's kinds gets a `Resync` job
    /// (`None`: never).
    pub resync: Option<Duration>,
    /// Publishes in flight at once; when all are busy, the watcher stops
    /// reading watch events until one finishes.
    pub max_publishes_in_flight: usize,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            watch_filter: None,
            resync: Some(Duration::from_secs(600)),
            max_publishes_in_flight: 64,
        }
    }
}
