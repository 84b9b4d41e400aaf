//! The watcher's error type.

/// Why [`run`](crate::run) stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// The configuration cannot work (for example zero publishes in flight).
    #[error("invalid watcher configuration: {0}")]
    Config(String),
    /// A watch task panicked or was cancelled by the runtime.
    #[error("the watch of {kind} stopped: {source}")]
    WatchTask {
        /// The kind it watched.
        kind: &'static str,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The dispatcher (the task that maps changes to jobs) panicked.
    #[error("the dispatcher stopped: {0}")]
    Dispatcher(#[source] tokio::task::JoinError),
}
