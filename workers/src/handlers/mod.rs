//! One module per handler. Real provider handlers (bootstrap, control
//! plane, infrastructure, join tokens) come with their issues; until then
//! the stand-ins serve any kind the configuration names.
//!
//! - [`noop`]: re-reads the object and sets its `Handled` condition.
//! - [`echo`]: the same after a delay (slow SSH stand-in).
//! - [`handled`]: the level-triggered "mark handled" step both use.

pub mod echo;
pub mod handled;
pub mod noop;

use std::sync::Arc;

use drover_shared::jobs::JobKind;

use crate::{Context, Handler, StandIn, WorkerError};

/// The handler serving `kind`: the stand-in when one is set, else the
/// kind's real handler (none exist yet).
pub fn for_kind(
    kind: JobKind,
    stand_in: Option<StandIn>,
) -> Result<Arc<dyn Handler<Context>>, WorkerError> {
    match stand_in {
        Some(StandIn::Noop) => Ok(Arc::new(noop::Noop)),
        Some(StandIn::Echo { delay }) => Ok(Arc::new(echo::Echo { delay })),
        None => Err(WorkerError::NoHandler { kind }),
    }
}
