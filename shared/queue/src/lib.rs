//! drover's durable job queue: the watcher publishes [`Job`]s, workers
//! claim them per [`JobKind`], run a handler and finish each claim with an
//! [`Outcome`].
//!
//! # Guarantees (every backend; `tests/` runs one conformance suite per backend)
//!
//! 1. Durable: a job whose publish returned survives a crash.
//! 2. Coalescing: one pending job per object and kind; the newest wins.
//! 3. Exclusive: an object is never claimed twice at once; a change that
//!    arrives meanwhile runs after the claim ends.
//! 4. Waiting is not failing: [`Outcome::RunAfter`] costs no attempt.
//! 5. Failures retry with jittered exponential backoff ([`RetryPolicy`]),
//!    then go to the dead letters with the last error and their history.
//! 6. Claims are leases: long jobs [`JobQueue::renew`] them; a dead
//!    worker's claims come back after the lease time.
//! 7. Dedupe: the same change published twice inside the window is one job.
//! 8. Separate pools: claims are per kind.
//!
//! # Layout
//!
//! - [`model`]: what goes in and out (claims, outcomes, stats, dead letters).
//! - [`policy`]: retry policies per kind.
//! - [`JobQueue`]: the trait.
//! - [`embedded`]: the redb backend, for the single-process mode.
//! - [`jetstream`]: the NATS JetStream backend, for fleets.
//! - [`any`]: [`AnyQueue`], either backend as one type, for programs that
//!   choose from their flags.
//! - [`conformance`]: the suite every backend must pass.
//! - [`nats_server`]: real nats-server processes for tests and load tests.
//! - [`error`]: this crate's error type.
//!
//! [`Job`]: drover_shared::jobs::Job
//! [`JobKind`]: drover_shared::jobs::JobKind

pub mod any;
pub mod conformance;
pub mod embedded;
pub mod error;
pub mod jetstream;
pub mod model;
pub mod nats_server;
pub mod policy;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use drover_shared::jobs::{Job, JobKind};

pub use any::AnyQueue;
pub use error::QueueError;
pub use model::{
    AttemptRecord, Claim, DeadLetter, Finished, JobSelector, Outcome, Published, PurgeScope,
    QueueStats,
};
pub use policy::RetryPolicy;

/// A durable job queue (see the crate documentation for its guarantees).
pub trait JobQueue: Send + Sync + 'static {
    /// Publishes a job. Returns once it is durable.
    fn publish(&self, job: &Job) -> impl Future<Output = Result<Published, QueueError>> + Send;

    /// Claims up to `max` ready jobs of `kind`, waiting up to `wait` for the
    /// first. Each claim is a lease that ends with [`JobQueue::finish`] or
    /// expires.
    fn claim(
        &self,
        kind: JobKind,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Claim>, QueueError>> + Send;

    /// Extends a claim's lease (long jobs).
    fn renew(&self, claim: &Claim) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Ends a claim with the handler's outcome.
    fn finish(
        &self,
        claim: Claim,
        outcome: Outcome,
    ) -> impl Future<Output = Result<Finished, QueueError>> + Send;

    /// Queue depth per kind, claims in flight, dead letters.
    fn stats(&self) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;

    /// Jobs ready to be claimed now, per kind name ([`JobKind::as_str`];
    /// every kind, zeros included): not in flight and not waiting for a
    /// later time (run again after, backoff). Cheap enough to poll every few
    /// seconds for a metrics gauge: it reads counters, not job records
    /// (unlike [`JobQueue::stats`]). An approximation at the edges: the
    /// embedded queue counts a job whose object is in flight, JetStream
    /// does not count a job whose delay ended until it is delivered again.
    fn depth(&self) -> impl Future<Output = Result<BTreeMap<String, u64>, QueueError>> + Send;

    /// Dead letters matching `selector`, oldest first.
    fn dead_letters(
        &self,
        selector: &JobSelector,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, QueueError>> + Send;

    /// Puts matching dead letters back as fresh jobs; returns how many.
    fn replay(
        &self,
        selector: &JobSelector,
    ) -> impl Future<Output = Result<usize, QueueError>> + Send;

    /// Deletes pending jobs, dead letters or both; returns how many.
    fn purge(&self, scope: PurgeScope) -> impl Future<Output = Result<usize, QueueError>> + Send;
}
