//! The `echo` stand-in: sleeps (standing in for slow SSH provisioning;
//! the runtime renews the lease meanwhile), then marks the job's object
//! handled (reason `EchoHandled`) and emits an Event when it wrote.

use std::time::Duration;

use drover_shared::jobs::Job;
use futures_util::future::BoxFuture;
use kube::runtime::events::{Event, EventType};
use tracing::Instrument as _;

use super::handled::{Marked, mark_handled};
use crate::{Context, Handled, Handler, HandlerResult};

/// The echo handler.
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    /// How long each job takes.
    pub delay: Duration,
}

/// The condition reason it sets.
pub const REASON: &str = "EchoHandled";

impl Handler<Context> for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn handle<'a>(&'a self, ctx: &'a Context, job: &'a Job) -> BoxFuture<'a, HandlerResult> {
        Box::pin(async move {
            tokio::time::sleep(self.delay)
                .instrument(tracing::debug_span!("echo_delay", delay = ?self.delay))
                .await;
            if let Marked::Written(regarding) = mark_handled(ctx, job, REASON).await? {
                let event = Event {
                    type_: EventType::Normal,
                    reason: REASON.into(),
                    note: Some(format!("handled by job {}", job.id)),
                    action: "Handle".into(),
                    secondary: None,
                };
                ctx.event(event, &regarding)
                    .instrument(tracing::debug_span!("emit_event"))
                    .await;
            }
            Ok(Handled::Done)
        })
    }
}
