//! The errors of this crate: [`WorkerError`] (the runtime cannot start)
//! and [`HandlerError`] (one job failed; its [`HandlerError::is_retryable`]
//! decides between a retry with backoff and the dead letters).

use drover_shared::jobs::JobKind;

/// Why [`crate::run`] refused to start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A pool names a kind that has no handler (and no stand-in is set).
    #[error(
        "no handler serves job kind {kind} yet (drover has the bootstrap handler so far); serve it with a stand-in (noop or echo) or remove its pool"
    )]
    NoHandler {
        /// The kind.
        kind: JobKind,
    },
    /// A pool with no slots would never claim.
    #[error("the pool for job kind {kind} has concurrency 0; it needs at least 1")]
    ZeroConcurrency {
        /// The kind.
        kind: JobKind,
    },
    /// Other settings that cannot work.
    #[error("invalid worker setting {field}: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// How one job failed.
///
/// | Variant | Retryable | Why |
/// |---|---|---|
/// | [`BadInput`](Self::BadInput) | no | the job or its object is unusable as it stands; retrying the same input cannot help, so it is dead-lettered with a message naming the field |
/// | [`Unresolved`](Self::Unresolved) | yes, within the queue's attempts | a reference (a `contentFrom` Secret or key, custom user data) names nothing yet: it may be created shortly, so the job backs off and is dead-lettered with the same message when attempts run out |
/// | [`Conflict`](Self::Conflict) | yes | a write with a resourceVersion precondition lost a race (HTTP 409): normal under optimistic concurrency; the next run re-reads |
/// | [`Kube`](Self::Kube) | yes, except HTTP 400 and 422 | network errors, timeouts, 5xx, 401/403 (credentials rotate), 404 (caches lag) may pass; a request the server calls malformed or invalid will not |
/// | [`ChildCluster`](Self::ChildCluster) | yes | the child's kubeconfig Secret may not exist yet, or its API may be starting |
/// | [`Panicked`](Self::Panicked) | yes | a bug; retried with backoff, then dead-lettered by the queue's limit |
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Bad input: `field` names what is wrong (`object.kind`,
    /// `status.conditions`, `Secret default/c1-kubeconfig .data.value`).
    #[error("invalid {field}: {message}")]
    BadInput {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A reference in the object names nothing (yet): `field` is the
    /// reference (`spec.files[2].contentFrom`).
    #[error("unresolved {field}: {message}")]
    Unresolved {
        /// The reference.
        field: String,
        /// What is missing.
        message: String,
    },
    /// An optimistic-concurrency conflict (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// A child cluster's client could not be made or used.
    #[error("child cluster {namespace}/{cluster}: {message}")]
    ChildCluster {
        /// The cluster's namespace.
        namespace: String,
        /// The CAPI cluster's name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The handler panicked.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

impl HandlerError {
    /// Bad input naming `field`.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether running the job again (after the queue's backoff) may
    /// succeed. `false` sends the job to the dead letters at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadInput { .. } => false,
            Self::Kube(kube::Error::Api(status)) => !matches!(status.code, 400 | 422),
            // An object the API server sent that does not decode as its
            // kind: running again reads the same bytes.
            Self::Kube(kube::Error::SerdeError(_)) => false,
            Self::Unresolved { .. }
            | Self::Conflict(_)
            | Self::Kube(_)
            | Self::ChildCluster { .. }
            | Self::Panicked(_) => true,
        }
    }

    /// The HTTP status of a failed API call, if that is what this is.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Kube(kube::Error::Api(status)) => Some(status.code),
            Self::Conflict(_) => Some(409),
            _ => None,
        }
    }
}

impl From<kube::Error> for HandlerError {
    /// A 409 becomes [`HandlerError::Conflict`]; anything else [`HandlerError::Kube`].
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code == 409 => Self::Conflict(status.message),
            other => Self::Kube(other),
        }
    }
}
