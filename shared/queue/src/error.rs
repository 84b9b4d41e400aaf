//! The queue's errors.

/// What can go wrong in a queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The embedded store failed (disk full, I/O error, corrupt file). The
    /// queue opens its file again on a later call, so trying again may
    /// succeed once the disk is mended.
    #[error("queue storage: {0}")]
    Storage(#[from] redb::Error),
    /// A stored record did not decode: a bug or a foreign writer.
    #[error("queue record {key:?} is malformed: {source}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decode error.
        source: serde_json::Error,
    },
    /// The claim's lease expired and the object was claimed again.
    #[error("the lease on {0} was lost")]
    LeaseLost(String),
    /// A NATS or JetStream request failed (connection lost, timeout,
    /// server error). Usually transient: the client reconnects.
    #[error("NATS: {op}: {source}")]
    Nats {
        /// What drover was doing.
        op: &'static str,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The NATS server is older than drover supports.
    #[error(
        "nats-server {found} is too old: drover needs JetStream from nats-server {minimum} or newer (upgrade the server; see README, \"NATS server\")"
    )]
    ServerTooOld {
        /// The version the server reported.
        found: String,
        /// The oldest version drover accepts.
        minimum: String,
    },
    /// Too many concurrent writers on one object record; try again.
    #[error("object record {0} kept changing under concurrent writers")]
    Contended(String),
    /// The queue is shutting down.
    #[error("the queue is closed")]
    Closed,
}

impl QueueError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Storage(_) | Self::Closed | Self::Nats { .. } | Self::Contended(_)
        )
    }
}
