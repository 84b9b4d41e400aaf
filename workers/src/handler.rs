//! The [`Handler`] trait: one implementation per job kind.

use drover_shared::jobs::Job;
use futures_util::future::BoxFuture;

use crate::HandlerResult;

/// Runs jobs of one kind. `C` is the context handlers share: the
/// production handlers take [`crate::Context`] (kube clients, events, the
/// field manager); the runtime's own tests use a context of their own,
/// without Kubernetes.
///
/// A handler is level-triggered: the job names an object, the handler
/// re-reads it and acts on what it finds, so a job that runs twice, late,
/// or for an object that changed meanwhile does no harm.
///
/// The runtime runs `handle` inside the job's span (its parent is the
/// job's trace context), renews the job's lease while it runs, and may
/// drop the future at a shutdown deadline or when the lease is lost: a
/// handler must leave things consistent at every `.await` (it will be run
/// again).
pub trait Handler<C>: Send + Sync + 'static {
    /// The handler's name, for logs.
    fn name(&self) -> &'static str;

    /// Handles one job.
    fn handle<'a>(&'a self, ctx: &'a C, job: &'a Job) -> BoxFuture<'a, HandlerResult>;
}
