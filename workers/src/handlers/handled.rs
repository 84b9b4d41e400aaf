//! The stand-ins' one step: re-read the job's object and record on it that
//! the job was handled, as a real handler records its result.
//!
//! Level-triggered: a job whose object is gone, or was deleted and made
//! again (another uid), is stale and done. Otherwise the `Handled`
//! condition is set with the object's generation, through the shared
//! status read-modify-write ([`super::status`]). Nothing is written when
//! the condition already has that generation.

use drover_shared::api::common::{Condition, ConditionStatus};
use drover_shared::conditions;
use drover_shared::jobs::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource as _;
use serde_json::json;

use super::status::{StatusWrite, read_modify_write};
use crate::{Context, HandlerError};

/// The condition type the stand-ins set.
pub const HANDLED: &str = "Handled";

/// What [`mark_handled`] found and did.
#[derive(Clone, Debug, PartialEq)]
pub enum Marked {
    /// The object is gone or is another object now: nothing to do.
    Stale,
    /// The condition already had this generation: nothing written.
    AlreadyHandled,
    /// Written; the object, for Events.
    Written(ObjectReference),
}

/// Sets `Handled=True` (`reason`, `observedGeneration`, message
/// `handled by job <id>`) on the job's object.
pub async fn mark_handled(ctx: &Context, job: &Job, reason: &str) -> Result<Marked, HandlerError> {
    let (api, ar) = ctx.api_for(&job.object)?;
    let what = format!("{} {}", job.object.kind, job.object_key());
    let written = read_modify_write(
        &api,
        &job.object.name,
        &job.object.uid,
        ctx.field_manager,
        None,
        &what,
        |obj| {
            let generation = obj.metadata.generation;
            let mut current: Vec<Condition> = match obj.data.pointer("/status/conditions") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| HandlerError::bad_input("status.conditions", e.to_string()))?,
            };
            if conditions::get(&current, HANDLED)
                .is_some_and(|c| c.observed_generation == generation)
            {
                return Ok(None);
            }
            conditions::set(
                &mut current,
                conditions::new(
                    HANDLED,
                    ConditionStatus::True,
                    reason,
                    format!("handled by job {}", job.id),
                    generation,
                ),
                &now(),
            );
            Ok(Some(json!({"conditions": current})))
        },
    )
    .await?;
    Ok(match written {
        StatusWrite::Stale => Marked::Stale,
        StatusWrite::Unchanged => Marked::AlreadyHandled,
        StatusWrite::Written(obj) => Marked::Written(obj.object_ref(&ar)),
    })
}

/// Now, RFC 3339 in seconds (as `metav1.Time`).
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
