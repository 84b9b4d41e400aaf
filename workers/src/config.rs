//! What a worker process serves: one pool per job kind, each with its own
//! concurrency limit, and how it shuts down.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_shared::jobs::JobKind;

/// Settings of [`crate::run`].
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The job kinds this process serves, each with its own pool. A kind
    /// not listed is never claimed here.
    pub pools: BTreeMap<JobKind, PoolConfig>,
    /// Serve every kind in `pools` with a stand-in handler instead of its
    /// real one (tests and load tests).
    pub stand_in: Option<StandIn>,
    /// After shutdown is signalled, how long jobs in flight may run on.
    /// Jobs still running then are released: finished with "run again
    /// now", so another worker takes them at once without spending an
    /// attempt.
    pub shutdown_deadline: Duration,
    /// How often a running job's lease is renewed (a third of the queue's
    /// lease is a good value).
    pub lease_renew_every: Duration,
    /// The bootstrap handler's settings (token lifetime).
    pub bootstrap: crate::handlers::bootstrap::BootstrapSettings,
}

impl Default for WorkerConfig {
    /// No pools; 30 s to drain; renewal every 20 s (for the queues'
    /// default 60 s lease).
    fn default() -> Self {
        Self {
            pools: BTreeMap::new(),
            stand_in: None,
            shutdown_deadline: Duration::from_secs(30),
            lease_renew_every: Duration::from_secs(20),
            bootstrap: crate::handlers::bootstrap::BootstrapSettings::default(),
        }
    }
}

/// One kind's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Jobs of this kind this process runs at once (at least 1). The pool
    /// claims only as many jobs as it has free slots: nothing is prefetched.
    pub concurrency: usize,
}

/// A handler that stands in for the real ones (which come with the
/// provider issues), so the whole pipeline can run on drover's real kinds.
/// Both re-read the job's object and set its `Handled` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandIn {
    /// Re-read, write the condition, done.
    Noop,
    /// Like [`StandIn::Noop`] after sleeping `delay` (standing in for slow
    /// SSH provisioning; the lease is renewed meanwhile, as for any long job).
    Echo {
        /// How long each job takes.
        delay: Duration,
    },
}
