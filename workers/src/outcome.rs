//! What a handler returns, and how that maps onto the queue's [`Outcome`].

use std::time::Duration;

use drover_queue::Outcome;
use drover_shared::jobs::{Change, Job};

use crate::HandlerError;

/// How a handler's run ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done until the next change.
    Done,
    /// Waiting for something (a dependency): run again after this long,
    /// without spending an attempt.
    RunAfter(Duration),
}

/// What a handler returns.
pub type HandlerResult = Result<Handled, HandlerError>;

/// The queue outcome of a handler's result: done, run again after D,
/// retry with the queue's backoff (retryable errors), or dead-letter with
/// the error's message (everything else).
pub fn to_queue(result: &HandlerResult) -> Outcome {
    match result {
        Ok(Handled::Done) => Outcome::Done,
        Ok(Handled::RunAfter(d)) => Outcome::RunAfter(*d),
        Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
        Err(e) => Outcome::DeadLetter(e.to_string()),
    }
}

/// The queue outcome of `job`'s result. As [`to_queue`], except that a
/// periodic resync that meets bad input is done, not dead-lettered again:
/// the change that made the object bad already has its dead letter, and the
/// handler's condition and Event say what is wrong. Otherwise every bad
/// object would add a dead letter each resync period, without end.
pub fn for_job(job: &Job, result: &HandlerResult) -> Outcome {
    match (job.cause.change, to_queue(result)) {
        (Change::Resync, Outcome::DeadLetter(_)) => Outcome::Done,
        (_, outcome) => outcome,
    }
}

/// The `outcome` label of the outcomes counter for a queue outcome.
pub fn label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::RunAfter(_) => "run_after",
        Outcome::Retry(_) => "retry",
        Outcome::DeadLetter(_) => "dead_letter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("nope", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn successes_map_to_done_and_run_after() {
        assert_eq!(to_queue(&Ok(Handled::Done)), Outcome::Done);
        let d = Duration::from_secs(7);
        assert_eq!(to_queue(&Ok(Handled::RunAfter(d))), Outcome::RunAfter(d));
    }

    #[test]
    fn bad_input_is_dead_lettered_naming_the_field() {
        let e = HandlerError::bad_input("spec.version", "not a k0s version: \"x\"");
        assert!(!e.is_retryable());
        match to_queue(&Err(e)) {
            Outcome::DeadLetter(m) => assert!(m.contains("spec.version"), "{m}"),
            other => panic!("bad input must be dead-lettered, got {other:?}"),
        }
    }

    #[test]
    fn an_object_that_does_not_decode_is_not_retried() {
        let bad = serde_json::from_str::<u8>("\"x\"").unwrap_err();
        let e = HandlerError::from(kube::Error::SerdeError(bad));
        assert!(!e.is_retryable());
        assert!(matches!(to_queue(&Err(e)), Outcome::DeadLetter(_)));
    }

    #[test]
    fn a_resync_meeting_bad_input_adds_no_dead_letter_but_still_retries() {
        let job = |change| -> Job {
            serde_json::from_value(serde_json::json!({
                "id": "j", "kind": "bootstrap",
                "object": {"apiVersion": "v1", "kind": "K0sWorkerConfig", "namespace": "d", "name": "n", "uid": "u"},
                "cause": {"change": change, "resourceVersion": "1"}
            }))
            .unwrap()
        };
        let bad: HandlerResult = Err(HandlerError::bad_input("spec.x", "no"));
        assert_eq!(for_job(&job("Resync"), &bad), Outcome::Done);
        assert!(matches!(
            for_job(&job("Modified"), &bad),
            Outcome::DeadLetter(_)
        ));
        let flaky: HandlerResult = Err(HandlerError::from(api_error(503)));
        assert!(matches!(for_job(&job("Resync"), &flaky), Outcome::Retry(_)));
    }

    #[test]
    fn a_conflict_is_a_retry() {
        let e = HandlerError::from(api_error(409));
        assert!(matches!(e, HandlerError::Conflict(_)), "{e:?}");
        assert!(e.is_retryable());
        assert_eq!(e.status_code(), Some(409));
        assert!(matches!(to_queue(&Err(e)), Outcome::Retry(_)));
    }

    #[test]
    fn api_errors_are_classified_by_status() {
        for code in [401, 403, 404, 429, 500, 503] {
            let e = HandlerError::from(api_error(code));
            assert!(e.is_retryable(), "{code} is retryable");
            assert!(matches!(to_queue(&Err(e)), Outcome::Retry(_)));
        }
        for code in [400, 422] {
            let e = HandlerError::from(api_error(code));
            assert!(!e.is_retryable(), "{code} is not retryable");
            assert!(matches!(to_queue(&Err(e)), Outcome::DeadLetter(_)));
        }
        let child = HandlerError::ChildCluster {
            namespace: "ns".into(),
            cluster: "c".into(),
            message: "Secret ns/c-kubeconfig not found".into(),
        };
        assert!(child.is_retryable());
        assert!(HandlerError::Panicked("boom".into()).is_retryable());
    }

    #[test]
    fn labels_name_each_outcome() {
        assert_eq!(label(&Outcome::Done), "done");
        assert_eq!(label(&Outcome::RunAfter(Duration::ZERO)), "run_after");
        assert_eq!(label(&Outcome::Retry(String::new())), "retry");
        assert_eq!(label(&Outcome::DeadLetter(String::new())), "dead_letter");
    }
}
