//! Status conditions: the names drover uses and the one way to set them.
//!
//! Conditions follow `metav1.Condition` rules: `lastTransitionTime` changes
//! only when `status` changes, so a handler that sets the same condition on
//! every run does not churn the object.

use crate::api::common::{Condition, ConditionStatus};

/// The summary condition of bootstrap configs, infra objects and others.
pub const READY: &str = "Ready";
/// The summary condition of control planes.
pub const AVAILABLE: &str = "Available";
/// Whether reconciliation is paused.
pub const PAUSED: &str = "Paused";
/// Bootstrap: the data Secret exists.
pub const DATA_SECRET_AVAILABLE: &str = "DataSecretAvailable";
/// CAPI Cluster: the control plane accepts requests.
pub const CONTROL_PLANE_INITIALIZED: &str = "ControlPlaneInitialized";
/// CAPI Cluster: the InfraCluster is provisioned.
pub const INFRASTRUCTURE_READY: &str = "InfrastructureReady";
/// RemoteMachine: the bootstrap commands ran.
pub const BOOTSTRAP_EXEC_SUCCEEDED: &str = "BootstrapExecSucceeded";
/// JoinTokenRequest: the token Secret exists.
pub const JOIN_TOKEN_SECRET_CREATED: &str = "JoinTokenSecretCreated";

/// Returns the condition of type `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.r#type == type_)
}

/// True when the condition of type `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Inserts or updates `new` in `conditions`. `now` (RFC 3339) becomes the
/// transition time only if the status changed or the condition is new.
/// Returns whether anything changed. Conditions stay sorted by type so that
/// equal inputs give equal objects.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition, now: &str) -> bool {
    match conditions.iter_mut().find(|c| c.r#type == new.r#type) {
        Some(existing) => {
            new.last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                now.to_owned()
            };
            if *existing == new {
                return false;
            }
            *existing = new;
            true
        }
        None => {
            new.last_transition_time = now.to_owned();
            conditions.push(new);
            conditions.sort_by(|a, b| a.r#type.cmp(&b.r#type));
            true
        }
    }
}

/// Builds a condition; the transition time is filled in by [`set`].
pub fn new(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        r#type: type_.to_owned(),
        status,
        observed_generation,
        last_transition_time: String::new(),
        reason: reason.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set(
            &mut cs,
            new(READY, ConditionStatus::False, "Waiting", "a", Some(1)),
            "t1"
        ));
        assert_eq!(cs[0].last_transition_time, "t1");
        // Same status, new message: updated, time kept.
        assert!(set(
            &mut cs,
            new(READY, ConditionStatus::False, "Waiting", "b", Some(1)),
            "t2"
        ));
        assert_eq!(cs[0].last_transition_time, "t1");
        assert_eq!(cs[0].message, "b");
        // Identical: no change reported.
        assert!(!set(
            &mut cs,
            new(READY, ConditionStatus::False, "Waiting", "b", Some(1)),
            "t3"
        ));
        // Status flips: time moves.
        assert!(set(
            &mut cs,
            new(READY, ConditionStatus::True, "Available", "", Some(2)),
            "t4"
        ));
        assert_eq!(cs[0].last_transition_time, "t4");
        assert!(is_true(&cs, READY));
    }

    #[test]
    fn conditions_stay_sorted_by_type() {
        let mut cs = Vec::new();
        set(
            &mut cs,
            new(READY, ConditionStatus::True, "R", "", None),
            "t",
        );
        set(
            &mut cs,
            new(DATA_SECRET_AVAILABLE, ConditionStatus::True, "R", "", None),
            "t",
        );
        set(
            &mut cs,
            new(PAUSED, ConditionStatus::False, "NotPaused", "", None),
            "t",
        );
        let types: Vec<_> = cs.iter().map(|c| c.r#type.as_str()).collect();
        assert_eq!(types, [DATA_SECRET_AVAILABLE, PAUSED, READY]);
    }
}
