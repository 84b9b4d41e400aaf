//! The stand-ins' one step: re-read the job's object and record on it that
//! the job was handled, as a real handler records its result.
//!
//! Level-triggered: a job whose object is gone, or was deleted and made
//! again (another uid), is stale and done. Otherwise the `Handled`
//! condition is set with the object's generation, by a merge patch on the
//! `/status` subresource carrying the resourceVersion read (optimistic
//! concurrency: lists such as `conditions` are atomic for server-side
//! apply here, so a read-modify-write it is). Nothing is written when the
//! condition already has that generation.

use drover_shared::api::common::{Condition, ConditionStatus};
use drover_shared::conditions;
use drover_shared::jobs::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource as _;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tracing::Instrument as _;

use crate::{Context, HandlerError};

/// The condition type the stand-ins set.
pub const HANDLED: &str = "Handled";

/// Conflict rounds (re-read and write again) before giving the job back
/// as a retry.
const ROUNDS: usize = 3;

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
    let name = &job.object.name;
    for round in 1..=ROUNDS {
        let Some(obj) = api
            .get_opt(name)
            .instrument(tracing::debug_span!("read_object"))
            .await?
        else {
            tracing::debug!("the object is gone: stale job");
            return Ok(Marked::Stale);
        };
        if obj.metadata.uid.as_deref() != Some(job.object.uid.as_str()) {
            tracing::debug!(uid = ?obj.metadata.uid, "the object was replaced: stale job");
            return Ok(Marked::Stale);
        }
        let generation = obj.metadata.generation;
        let resource_version = obj.metadata.resource_version.clone().ok_or_else(|| {
            HandlerError::bad_input("metadata.resourceVersion", "the server sent none")
        })?;
        let mut current: Vec<Condition> = match obj.data.pointer("/status/conditions") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| HandlerError::bad_input("status.conditions", e.to_string()))?,
        };
        if conditions::get(&current, HANDLED).is_some_and(|c| c.observed_generation == generation) {
            return Ok(Marked::AlreadyHandled);
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
        let patch = json!({
            "metadata": {"resourceVersion": resource_version},
            "status": {"conditions": current},
        });
        let params = PatchParams {
            field_manager: Some(ctx.field_manager.to_owned()),
            ..PatchParams::default()
        };
        match api
            .patch_status(name, &params, &Patch::Merge(&patch))
            .instrument(tracing::debug_span!("write_status", round))
            .await
        {
            Ok(written) => return Ok(Marked::Written(written.object_ref(&ar))),
            Err(kube::Error::Api(s)) if s.code == 409 && round < ROUNDS => {
                tracing::debug!(round, "the object changed meanwhile; reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Conflict(format!(
        "{} {} kept changing",
        job.object.kind,
        job.object_key()
    )))
}

/// Now, RFC 3339 in seconds (as `metav1.Time`).
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
