//! One module per handler. The stand-ins serve any kind when the
//! configuration asks for them; otherwise each kind has its real handler
//! (control plane, infrastructure and join-token handlers come with their
//! issues).
//!
//! - [`bootstrap`]: K0sWorkerConfig and K0sControllerConfig.
//! - [`noop`]: re-reads the object and sets its `Handled` condition.
//! - [`echo`]: the same after a delay (slow SSH stand-in).
//! - [`handled`]: the level-triggered "mark handled" step both use.
//! - [`status`]: the status read-modify-write every handler uses.

pub mod bootstrap;
pub mod echo;
pub mod handled;
pub mod noop;
pub mod status;

use std::sync::Arc;

use drover_shared::jobs::JobKind;

use crate::{Context, Handler, StandIn, WorkerConfig, WorkerError};

/// The handler serving `kind`: the stand-in when one is set, else the
/// kind's real handler.
pub fn for_kind(
    kind: JobKind,
    config: &WorkerConfig,
) -> Result<Arc<dyn Handler<Context>>, WorkerError> {
    match (config.stand_in, kind) {
        (Some(StandIn::Noop), _) => Ok(Arc::new(noop::Noop)),
        (Some(StandIn::Echo { delay }), _) => Ok(Arc::new(echo::Echo { delay })),
        (None, JobKind::Bootstrap) => Ok(Arc::new(bootstrap::Bootstrap::new(config.bootstrap))),
        (None, _) => Err(WorkerError::NoHandler { kind }),
    }
}
