//! [`AnyQueue`]: either backend behind one concrete type, for programs
//! that pick the backend from their flags (`--nats-url` or not).

use std::collections::BTreeMap;
use std::time::Duration;

use drover_shared::jobs::{Job, JobKind};

use crate::embedded::EmbeddedQueue;
use crate::jetstream::JetStreamQueue;
use crate::{
    Claim, DeadLetter, Finished, JobQueue, JobSelector, Outcome, Published, PurgeScope, QueueError,
    QueueStats,
};

/// The embedded or the JetStream queue.
// One per process, made once and shared behind an `Arc`: the size of the
// larger variant costs nothing, and boxing it would change the variants
// callers construct.
#[allow(clippy::large_enum_variant)]
pub enum AnyQueue {
    /// The redb file.
    Embedded(EmbeddedQueue),
    /// NATS JetStream.
    JetStream(JetStreamQueue),
}

macro_rules! delegate {
    ($self:ident, $q:ident => $call:expr) => {
        match $self {
            AnyQueue::Embedded($q) => $call.await,
            AnyQueue::JetStream($q) => $call.await,
        }
    };
}

impl JobQueue for AnyQueue {
    async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
        delegate!(self, q => q.publish(job))
    }

    async fn claim(
        &self,
        kind: JobKind,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        delegate!(self, q => q.claim(kind, max, wait))
    }

    async fn renew(&self, claim: &Claim) -> Result<(), QueueError> {
        delegate!(self, q => q.renew(claim))
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<Finished, QueueError> {
        delegate!(self, q => q.finish(claim, outcome))
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        delegate!(self, q => q.stats())
    }

    async fn depth(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        delegate!(self, q => q.depth())
    }

    async fn dead_letters(&self, selector: &JobSelector) -> Result<Vec<DeadLetter>, QueueError> {
        delegate!(self, q => q.dead_letters(selector))
    }

    async fn replay(&self, selector: &JobSelector) -> Result<usize, QueueError> {
        delegate!(self, q => q.replay(selector))
    }

    async fn purge(&self, scope: PurgeScope) -> Result<usize, QueueError> {
        delegate!(self, q => q.purge(scope))
    }
}
