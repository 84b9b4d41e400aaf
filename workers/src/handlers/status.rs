//! The read-modify-write of an object's `/status` every handler uses.
//!
//! Lists such as `conditions` are atomic for server-side apply here, so a
//! handler reads the object, changes its status, and writes it with a merge
//! patch carrying the resourceVersion it read (optimistic concurrency). On
//! a 409 it reads again and retries, a few rounds, then gives the job back
//! as a [`HandlerError::Conflict`].

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::HandlerError;

/// Conflict rounds (read again and write again) before giving up.
const ROUNDS: usize = 3;

/// What [`read_modify_write`] found and did.
#[derive(Clone, Debug)]
pub enum StatusWrite {
    /// The object is gone, or another object (uid) has its name now.
    Stale,
    /// `mutate` changed nothing: nothing written.
    Unchanged,
    /// Written; the object as the server returned it.
    Written(Box<DynamicObject>),
}

/// Writes the status `mutate` makes of the current object. `first` is an
/// object already read (saves a GET in the first round); `None` reads it.
/// `mutate` returns the new `status` (merged into the old one) or `None`
/// when nothing needs writing. `what` names the object in the conflict error.
pub async fn read_modify_write<F>(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    field_manager: &str,
    first: Option<&DynamicObject>,
    what: &str,
    mut mutate: F,
) -> Result<StatusWrite, HandlerError>
where
    F: FnMut(&DynamicObject) -> Result<Option<Value>, HandlerError>,
{
    let mut reread = None;
    for round in 1..=ROUNDS {
        let obj = match (round, first) {
            (1, Some(obj)) => obj,
            _ => {
                let Some(obj) = api
                    .get_opt(name)
                    .instrument(tracing::debug_span!("read_object", round))
                    .await?
                else {
                    tracing::debug!("the object is gone: stale job");
                    return Ok(StatusWrite::Stale);
                };
                &*reread.insert(obj)
            }
        };
        if obj.metadata.uid.as_deref() != Some(uid) {
            tracing::debug!(uid = ?obj.metadata.uid, "the object was replaced: stale job");
            return Ok(StatusWrite::Stale);
        }
        let resource_version = obj.metadata.resource_version.clone().ok_or_else(|| {
            HandlerError::bad_input("metadata.resourceVersion", "the server sent none")
        })?;
        let Some(status) = mutate(obj)? else {
            return Ok(StatusWrite::Unchanged);
        };
        let patch = json!({
            "metadata": {"resourceVersion": resource_version},
            "status": status,
        });
        let params = PatchParams {
            field_manager: Some(field_manager.to_owned()),
            ..PatchParams::default()
        };
        match api
            .patch_status(name, &params, &Patch::Merge(&patch))
            .instrument(tracing::debug_span!("write_status", round))
            .await
        {
            Ok(written) => return Ok(StatusWrite::Written(Box::new(written))),
            Err(kube::Error::Api(s)) if s.code == 409 && round < ROUNDS => {
                tracing::debug!(round, "the object changed meanwhile; reading it again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(HandlerError::Conflict(format!("{what} kept changing")))
}
