//! The `noop` stand-in: marks the job's object handled
//! (reason `NoopHandled`) and is done.

use drover_shared::jobs::Job;
use futures_util::future::BoxFuture;

use super::handled::mark_handled;
use crate::{Context, Handled, Handler, HandlerResult};

/// The noop handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

/// The condition reason it sets.
pub const REASON: &str = "NoopHandled";

impl Handler<Context> for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn handle<'a>(&'a self, ctx: &'a Context, job: &'a Job) -> BoxFuture<'a, HandlerResult> {
        Box::pin(async move {
            mark_handled(ctx, job, REASON).await?;
            Ok(Handled::Done)
        })
    }
}
