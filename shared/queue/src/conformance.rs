//! The conformance suite: the guarantees of [`crate::JobQueue`], as checks
//! any backend must pass. Each backend's test file builds its queue with a
//! [`Profile`] (short leases and retry delays, so the suite runs in seconds)
//! and calls every check.
//!
//! The checks panic with a message on failure, like test assertions.

use std::time::Duration;

use drover_shared::jobs::{Cause, Change, Job, JobKind, ObjectRef};

use crate::model::Finished;
use crate::{JobQueue, JobSelector, Outcome, Published, PurgeScope, RetryPolicy};

/// Declares one `#[tokio::test]` per check: every check, or the ones
/// listed after a `;`. `$fixture` is an async fn returning `(queue, guard)`;
/// the guard (a temporary folder, a server) lives until the check ends.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance_tests!($fixture;
            pools_are_separate,
            pending_jobs_coalesce_newest_wins,
            objects_are_exclusive,
            objects_run_again_at_once_after_a_finish,
            a_change_during_a_claim_runs_right_after_it,
            waiting_is_not_failing,
            failures_retry_then_dead_letter,
            leases_expire_and_renew,
            a_repeated_finish_is_settled,
            duplicates_are_dropped,
            stats_replay_and_purge,
            purge_keeps_claims_exclusive,
            purges_among_busy_workers_keep_objects_exclusive,
            changes_do_not_reset_failures,
            abandoned_claims_count_as_failures,
            replay_keeps_newer_jobs_and_huge_delays_are_safe,
            depth_counts_ready_jobs,
        );
    };
    ($fixture:path; $($name:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (queue, _guard) = $fixture().await;
            $crate::conformance::$name(&queue).await;
        }
    )+};
}

/// The timing a backend under test must be configured with.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Claim lease.
    pub lease: Duration,
    /// Retry policy for every kind.
    pub retry: RetryPolicy,
    /// Dedupe window.
    pub dedupe_window: Duration,
}

/// The profile the checks assume.
pub const PROFILE: Profile = Profile {
    lease: Duration::from_millis(400),
    retry: RetryPolicy {
        max_attempts: 3,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
    },
    dedupe_window: Duration::from_secs(5),
};

/// The retry policy of [`PROFILE`], as a function for backend configs.
pub fn profile_policy(_: JobKind) -> RetryPolicy {
    PROFILE.retry
}

/// A job for object `name` at resourceVersion `rv`.
pub fn job(kind: JobKind, name: &str, rv: u64) -> Job {
    Job {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        object: ObjectRef {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
            kind: "K0sWorkerConfig".into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: format!("uid-{name}"),
        },
        cluster: Some("c1".into()),
        cause: Cause {
            change: Change::Modified,
            generation: Some(1),
            resource_version: rv.to_string(),
            via: None,
        },
        attempt: 0,
        trace: None,
    }
}

const NOW: Duration = Duration::ZERO;
const SOON: Duration = Duration::from_millis(50);

/// 8: jobs of one kind are claimed only by that kind's pool.
pub async fn pools_are_separate(q: &impl JobQueue) {
    q.publish(&job(JobKind::Bootstrap, "a", 1)).await.unwrap();
    q.publish(&job(JobKind::RemoteMachine, "a", 1))
        .await
        .unwrap();
    let b = q.claim(JobKind::Bootstrap, 10, NOW).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].job.kind, JobKind::Bootstrap);
    let r = q.claim(JobKind::RemoteMachine, 10, NOW).await.unwrap();
    assert_eq!(r.len(), 1);
    for c in b.into_iter().chain(r) {
        assert_eq!(q.finish(c, Outcome::Done).await.unwrap(), Finished::Settled);
    }
    assert!(
        q.claim(JobKind::Bootstrap, 10, NOW)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 2: while a job for an object is pending, newer ones replace it.
pub async fn pending_jobs_coalesce_newest_wins(q: &impl JobQueue) {
    assert_eq!(
        q.publish(&job(JobKind::Bootstrap, "c", 1)).await.unwrap(),
        Published::Queued
    );
    assert_eq!(
        q.publish(&job(JobKind::Bootstrap, "c", 2)).await.unwrap(),
        Published::Coalesced
    );
    assert_eq!(
        q.publish(&job(JobKind::Bootstrap, "c", 3)).await.unwrap(),
        Published::Coalesced
    );
    let claims = q.claim(JobKind::Bootstrap, 10, NOW).await.unwrap();
    assert_eq!(claims.len(), 1, "one pending job per object");
    assert_eq!(claims[0].job.cause.resource_version, "3", "the newest wins");
    q.finish(claims[0].clone(), Outcome::Done).await.unwrap();
}

/// 3: an object in flight is not claimed again; a change that arrives
/// meanwhile runs after the claim ends.
pub async fn objects_are_exclusive(q: &impl JobQueue) {
    q.publish(&job(JobKind::Bootstrap, "x", 1)).await.unwrap();
    let first = q.claim(JobKind::Bootstrap, 10, NOW).await.unwrap();
    assert_eq!(first.len(), 1);
    q.publish(&job(JobKind::Bootstrap, "x", 2)).await.unwrap();
    assert!(
        q.claim(JobKind::Bootstrap, 10, SOON)
            .await
            .unwrap()
            .is_empty(),
        "the object is in flight"
    );
    q.finish(first[0].clone(), Outcome::Done).await.unwrap();
    let second = q.claim(JobKind::Bootstrap, 10, SOON).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "the change that came meanwhile is not lost"
    );
    assert_eq!(second[0].job.cause.resource_version, "2");
    q.finish(second[0].clone(), Outcome::Done).await.unwrap();
}

/// 3 and 2: an object whose claim ended is claimed again at once by its
/// next change (not after the lease), and stats count nothing in flight
/// once claims end.
pub async fn objects_run_again_at_once_after_a_finish(q: &impl JobQueue) {
    for rv in 1..=5 {
        q.publish(&job(JobKind::Bootstrap, "again", rv))
            .await
            .unwrap();
        let c = q.claim(JobKind::Bootstrap, 10, SOON).await.unwrap();
        assert_eq!(c.len(), 1, "change {rv} is claimed at once");
        assert_eq!(c[0].job.cause.resource_version, rv.to_string());
        assert_eq!(c[0].job.attempt, 0, "a finished run is not a failure");
        let s = q.stats().await.unwrap();
        assert_eq!(s.in_flight.get("bootstrap"), Some(&1), "{s:?}");
        assert_eq!(
            q.finish(c[0].clone(), Outcome::Done).await.unwrap(),
            Finished::Settled
        );
        stats_become(
            q,
            |s| s.in_flight.is_empty() && s.pending.is_empty(),
            &format!("nothing in flight or pending after change {rv}"),
        )
        .await;
    }
}

/// 3: a change that arrives during a claim, and that no worker tries while
/// the claim runs, is claimed as soon as the claim ends, well before the
/// lease would have run out (`objects_are_exclusive` covers a change a
/// worker tried meanwhile).
pub async fn a_change_during_a_claim_runs_right_after_it(q: &impl JobQueue) {
    let soon_enough = PROFILE.lease / 4;
    q.publish(&job(JobKind::Bootstrap, "untried", 1))
        .await
        .unwrap();
    let first = q.claim(JobKind::Bootstrap, 10, SOON).await.unwrap();
    assert_eq!(first.len(), 1);
    q.publish(&job(JobKind::Bootstrap, "untried", 2))
        .await
        .unwrap();
    q.finish(first[0].clone(), Outcome::Done).await.unwrap();
    let second = q.claim(JobKind::Bootstrap, 10, soon_enough).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "the change runs within {soon_enough:?} of the claim's end"
    );
    assert_eq!(second[0].job.cause.resource_version, "2");
    assert_eq!(second[0].job.attempt, 0);
    q.finish(second[0].clone(), Outcome::Done).await.unwrap();
}

/// 4: "run again after D" waits without spending an attempt.
pub async fn waiting_is_not_failing(q: &impl JobQueue) {
    q.publish(&job(JobKind::Bootstrap, "w", 1)).await.unwrap();
    for _ in 0..5 {
        let c = q
            .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].job.attempt, 0, "waiting spends no attempt");
        assert!(c[0].history.is_empty());
        q.finish(c[0].clone(), Outcome::RunAfter(Duration::from_millis(30)))
            .await
            .unwrap();
        assert!(
            q.claim(JobKind::Bootstrap, 1, NOW)
                .await
                .unwrap()
                .is_empty(),
            "it waits its time"
        );
    }
    let c = q
        .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
        .await
        .unwrap();
    q.finish(c[0].clone(), Outcome::Done).await.unwrap();
    let s = q.stats().await.unwrap();
    assert!(s.dead.is_empty(), "{s:?}");
}

/// 5: failures retry with backoff up to the limit, then dead-letter with
/// the last error and the history; a permanent failure dead-letters at once.
pub async fn failures_retry_then_dead_letter(q: &impl JobQueue) {
    let j = job(JobKind::Bootstrap, "f", 1);
    q.publish(&j).await.unwrap();
    let max = PROFILE.retry.max_attempts;
    for attempt in 0..max {
        let c = q
            .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(c.len(), 1, "attempt {attempt} is retried");
        assert_eq!(c[0].job.attempt, attempt);
        let finished = q
            .finish(c[0].clone(), Outcome::Retry(format!("boom {attempt}")))
            .await
            .unwrap();
        if attempt + 1 < max {
            assert!(
                matches!(finished, Finished::Retrying(d) if d >= PROFILE.retry.min_delay),
                "{finished:?}"
            );
            assert!(
                q.claim(JobKind::Bootstrap, 1, NOW)
                    .await
                    .unwrap()
                    .is_empty(),
                "a retry waits for its backoff"
            );
        } else {
            assert_eq!(finished, Finished::DeadLettered);
        }
    }
    assert!(
        q.claim(JobKind::Bootstrap, 1, SOON)
            .await
            .unwrap()
            .is_empty()
    );
    let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, format!("boom {}", max - 1));
    assert_eq!(dead[0].history.len(), max as usize);
    assert_eq!(dead[0].job.id, j.id);

    q.publish(&job(JobKind::Bootstrap, "bad", 1)).await.unwrap();
    let c = q.claim(JobKind::Bootstrap, 1, NOW).await.unwrap();
    let f = q
        .finish(
            c[0].clone(),
            Outcome::DeadLetter("spec.files[0].contentFrom: secret \"s\" not found".into()),
        )
        .await
        .unwrap();
    assert_eq!(f, Finished::DeadLettered);
    assert_eq!(q.dead_letters(&JobSelector::all()).await.unwrap().len(), 2);
}

/// 6: a claim is a lease: renewed, it holds; abandoned, the job comes back
/// after the lease, and the old claim's late outcome is refused.
pub async fn leases_expire_and_renew(q: &impl JobQueue) {
    q.publish(&job(JobKind::RemoteMachine, "slow", 1))
        .await
        .unwrap();
    let c = q
        .claim(JobKind::RemoteMachine, 1, NOW)
        .await
        .unwrap()
        .remove(0);
    for _ in 0..3 {
        tokio::time::sleep(PROFILE.lease / 2).await;
        q.renew(&c).await.unwrap();
    }
    assert!(
        q.claim(JobKind::RemoteMachine, 1, NOW)
            .await
            .unwrap()
            .is_empty(),
        "renewed leases hold"
    );
    // The worker dies: no more renewals.
    let again = q
        .claim(JobKind::RemoteMachine, 1, PROFILE.lease * 4)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "an abandoned claim comes back");
    assert_eq!(
        q.finish(c.clone(), Outcome::Done).await.unwrap(),
        Finished::LeaseLost
    );
    assert!(q.renew(&c).await.is_err());
    assert_eq!(
        q.finish(again[0].clone(), Outcome::Done).await.unwrap(),
        Finished::Settled
    );
}

/// 6: a finish is safe to retry. A worker whose finish failed after it
/// took effect (the answer was lost: the server restarted, a commit failed
/// after reaching the disk) tries again; that `Done` is `Settled`, not
/// `LeaseLost`, since nothing will run the job again, and the job is not
/// run twice. Both a first attempt and a job that failed before are
/// covered (backends may finish those differently).
pub async fn a_repeated_finish_is_settled(q: &impl JobQueue) {
    for (rv, failed_before) in [(1, false), (2, true)] {
        q.publish(&job(JobKind::Bootstrap, "twice", rv))
            .await
            .unwrap();
        let mut c = q
            .claim(JobKind::Bootstrap, 1, SOON)
            .await
            .unwrap()
            .remove(0);
        if failed_before {
            let Finished::Retrying(d) = q.finish(c, Outcome::Retry("once".into())).await.unwrap()
            else {
                panic!("a first failure retries");
            };
            c = q
                .claim(JobKind::Bootstrap, 1, d + PROFILE.lease)
                .await
                .unwrap()
                .remove(0);
            assert_eq!(c.job.attempt, 1);
        }
        assert_eq!(
            q.finish(c.clone(), Outcome::Done).await.unwrap(),
            Finished::Settled
        );
        // Two retries: the first may still find the hold (a backend may
        // end it lazily), the second finds everything settled.
        for retry in 1..=2 {
            assert_eq!(
                finish_retrying(q, &c, Outcome::Done).await,
                Finished::Settled,
                "retry {retry} of change {rv}"
            );
        }
        assert!(
            q.claim(JobKind::Bootstrap, 1, PROFILE.lease / 4)
                .await
                .unwrap()
                .is_empty(),
            "the job does not run again"
        );
        let s = q.stats().await.unwrap();
        assert!(s.in_flight.is_empty() && s.pending.is_empty(), "{s:?}");
    }
    // The object's next change still runs at once.
    q.publish(&job(JobKind::Bootstrap, "twice", 3))
        .await
        .unwrap();
    assert_eq!(q.claim(JobKind::Bootstrap, 1, SOON).await.unwrap().len(), 1);
}

/// Finishes `claim`, trying again on errors that may pass (at most ten
/// times), as a worker does.
async fn finish_retrying(q: &impl JobQueue, claim: &crate::Claim, outcome: Outcome) -> Finished {
    let mut last = None;
    for _ in 0..10 {
        match q.finish(claim.clone(), outcome.clone()).await {
            Ok(f) => return f,
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => panic!("finish: {e}"),
        }
        tokio::time::sleep(SOON).await;
    }
    panic!("finish kept failing: {last:?}");
}

/// 7: the same change published twice is one job.
pub async fn duplicates_are_dropped(q: &impl JobQueue) {
    let j = job(JobKind::Bootstrap, "d", 7);
    let mut twin = j.clone();
    twin.id = uuid::Uuid::now_v7().to_string();
    assert_eq!(q.publish(&j).await.unwrap(), Published::Queued);
    assert_eq!(q.publish(&twin).await.unwrap(), Published::Duplicate);
    let c = q.claim(JobKind::Bootstrap, 10, NOW).await.unwrap();
    assert_eq!(c.len(), 1);
    q.finish(c[0].clone(), Outcome::Done).await.unwrap();
    // Once done, the same change is still a duplicate inside the window.
    assert_eq!(q.publish(&j).await.unwrap(), Published::Duplicate);
}

/// Operations: stats, replay by id, kind and cluster, purge.
pub async fn stats_replay_and_purge(q: &impl JobQueue) {
    for name in ["r1", "r2"] {
        q.publish(&job(JobKind::JoinToken, name, 1)).await.unwrap();
        let c = q.claim(JobKind::JoinToken, 1, NOW).await.unwrap();
        q.finish(c[0].clone(), Outcome::DeadLetter("bad".into()))
            .await
            .unwrap();
    }
    q.publish(&job(JobKind::Noop, "p", 1)).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(s.dead.get("join-token"), Some(&2));
    assert_eq!(s.pending.get("noop"), Some(&1));
    let dead = q
        .dead_letters(&JobSelector {
            kind: Some(JobKind::JoinToken),
            ..JobSelector::default()
        })
        .await
        .unwrap();
    let one = JobSelector {
        id: Some(dead[0].job.id.clone()),
        ..JobSelector::default()
    };
    assert_eq!(q.replay(&one).await.unwrap(), 1);
    let c = q.claim(JobKind::JoinToken, 10, NOW).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].job.attempt, 0);
    assert_eq!(c[0].job.cause.change, Change::Replay);
    q.finish(c[0].clone(), Outcome::Done).await.unwrap();
    let by_cluster = JobSelector {
        cluster: Some("c1".into()),
        ..JobSelector::default()
    };
    assert_eq!(q.replay(&by_cluster).await.unwrap(), 1);
    assert!(
        q.dead_letters(&JobSelector::all())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.purge(PurgeScope::Pending).await.unwrap(), 2);
    assert!(q.stats().await.unwrap().pending.is_empty());
}

/// Purge drops pending jobs, but neither a claim in flight nor the next
/// change of its object, so the object stays exclusive: a change published
/// after the purge still waits for the claim, then runs.
pub async fn purge_keeps_claims_exclusive(q: &impl JobQueue) {
    q.publish(&job(JobKind::Bootstrap, "busy", 1))
        .await
        .unwrap();
    let held = q.claim(JobKind::Bootstrap, 10, SOON).await.unwrap();
    assert_eq!(held.len(), 1);
    q.publish(&job(JobKind::Bootstrap, "idle", 1))
        .await
        .unwrap();
    q.publish(&job(JobKind::Bootstrap, "busy", 2))
        .await
        .unwrap();
    let purged = q.purge(PurgeScope::Pending).await.unwrap();
    q.publish(&job(JobKind::Bootstrap, "busy", 3))
        .await
        .unwrap();
    // Renewed, so a slow machine cannot let the lease run out here.
    q.renew(&held[0]).await.unwrap();
    let during = q
        .claim(JobKind::Bootstrap, 10, PROFILE.lease / 4)
        .await
        .unwrap();
    assert!(
        during.is_empty(),
        "busy is still held and idle's job is gone: {:?}",
        during
            .iter()
            .map(|c| &c.job.object.name)
            .collect::<Vec<_>>()
    );
    assert_eq!(purged, 1, "only the job no claim held back");
    q.finish(held[0].clone(), Outcome::Done).await.unwrap();
    let after = q
        .claim(JobKind::Bootstrap, 10, PROFILE.lease / 4)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the newest change runs after the claim");
    assert_eq!(after[0].job.object.name, "busy");
    assert_eq!(after[0].job.cause.resource_version, "3");
    q.finish(after[0].clone(), Outcome::Done).await.unwrap();
    assert!(q.stats().await.unwrap().pending.is_empty());
}

/// Purges while workers claim and publishers publish: no object is ever
/// claimed twice at once, and the queue drains afterwards.
pub async fn purges_among_busy_workers_keep_objects_exclusive(q: &impl JobQueue) {
    use std::cell::RefCell;
    use std::collections::HashSet;

    // More objects than the workers' 12 slots, so that some changes are
    // always pending and not in flight when a purge runs: with fewer, idle
    // workers take each change as it comes, and a purge on a loaded
    // machine could find nothing to drop.
    const OBJECTS: u64 = 48;
    let busy = RefCell::new(HashSet::new());
    let overlaps = RefCell::new(Vec::new());
    let publishing = std::cell::Cell::new(true);
    let publisher = async {
        for rv in 1..=30 {
            for o in 0..OBJECTS {
                q.publish(&job(JobKind::Bootstrap, &format!("o{o}"), rv))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publishing.set(false);
    };
    let worker = || async {
        let mut idle_rounds = 0;
        while publishing.get() || idle_rounds < 5 {
            let claims = q.claim(JobKind::Bootstrap, 4, SOON).await.unwrap();
            idle_rounds = if claims.is_empty() {
                idle_rounds + 1
            } else {
                0
            };
            for c in &claims {
                if !busy.borrow_mut().insert(c.job.object.name.clone()) {
                    overlaps.borrow_mut().push(c.job.object.name.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            for c in claims {
                busy.borrow_mut().remove(&c.job.object.name);
                q.finish(c, Outcome::Done).await.unwrap();
            }
        }
    };
    let purger = async {
        let mut purged = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            purged += q.purge(PurgeScope::Pending).await.unwrap();
        }
        purged
    };
    let ((), (), (), (), purged) = tokio::join!(publisher, worker(), worker(), worker(), purger);
    assert!(purged > 0, "the purges dropped jobs as they ran");
    assert!(
        overlaps.borrow().is_empty(),
        "objects claimed twice at once: {:?}",
        overlaps.borrow()
    );
    // Whatever the last purge left runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = q.stats().await.unwrap();
        if s.pending.is_empty() && s.in_flight.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not drained: {s:?}");
        for c in q.claim(JobKind::Bootstrap, 16, SOON).await.unwrap() {
            q.finish(c, Outcome::Done).await.unwrap();
        }
    }
}

/// A dead letter that decodes, for a backend's own test to store beside one
/// that does not (see [`an_undecodable_dead_letter_is_listed_and_purgeable`]).
pub fn good_dead_letter() -> crate::DeadLetter {
    crate::DeadLetter {
        job: job(JobKind::Bootstrap, "good", 1),
        error: "it failed".into(),
        history: Vec::new(),
        dead_at_ms: 1,
        raw: None,
    }
}

/// Not in the suite (a backend's own test stores the records): after one
/// good dead letter and one that does not decode (id `bad_id`, kind
/// bootstrap, cluster `c9`) were stored, both are listed and counted,
/// filters by kind and cluster find the bad one, a replay puts back only
/// the good one, and purge removes the bad one. Returns the bad one.
pub async fn an_undecodable_dead_letter_is_listed_and_purgeable(
    q: &impl JobQueue,
    bad_id: &str,
) -> crate::DeadLetter {
    let listed = q.dead_letters(&JobSelector::all()).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let bad = listed
        .into_iter()
        .find(|d| d.raw.is_some())
        .expect("the bad one is listed");
    assert_eq!(bad.job.id, bad_id);
    assert!(bad.error.contains("does not decode"), "{}", bad.error);
    let in_c9 = JobSelector {
        kind: Some(JobKind::Bootstrap),
        cluster: Some("c9".into()),
        ..JobSelector::all()
    };
    let found = q.dead_letters(&in_c9).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "kind and cluster are read from what decodes"
    );
    assert_eq!(q.stats().await.unwrap().dead["bootstrap"], 2);

    assert_eq!(
        q.replay(&JobSelector::all()).await.unwrap(),
        1,
        "the good one"
    );
    let left = q.dead_letters(&JobSelector::all()).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].job.id, bad_id);
    assert_eq!(q.purge(PurgeScope::Dead).await.unwrap(), 1);
    assert!(
        q.dead_letters(&JobSelector::all())
            .await
            .unwrap()
            .is_empty()
    );
    bad
}

/// 5 and 2 together: changes that arrive while an object keeps failing do
/// not reset its attempts or skip its backoff, so it still ends in the dead
/// letters; the newest change's content is what runs.
pub async fn changes_do_not_reset_failures(q: &impl JobQueue) {
    q.publish(&job(JobKind::Bootstrap, "flappy", 1))
        .await
        .unwrap();
    let max = PROFILE.retry.max_attempts;
    let mut rv = 1;
    let mut dead = false;
    for _ in 0..(max * 2) {
        let Some(c) = q
            .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
            .await
            .unwrap()
            .pop()
        else {
            break;
        };
        assert_eq!(
            c.job.cause.resource_version,
            rv.to_string(),
            "the newest change runs"
        );
        rv += 1;
        // The handler's own status write makes a new change while it fails.
        q.publish(&job(JobKind::Bootstrap, "flappy", rv))
            .await
            .unwrap();
        if q.finish(c, Outcome::Retry("still failing".into()))
            .await
            .unwrap()
            == Finished::DeadLettered
        {
            dead = true;
            break;
        }
        assert!(
            q.claim(JobKind::Bootstrap, 1, NOW)
                .await
                .unwrap()
                .is_empty(),
            "the backoff holds"
        );
    }
    assert!(dead, "attempts accumulate across changes");
}

/// 6 and 5: a job whose workers keep dying (leases expire) is counted as
/// failing and ends in the dead letters instead of circulating forever.
pub async fn abandoned_claims_count_as_failures(q: &impl JobQueue) {
    q.publish(&job(JobKind::RemoteMachine, "crashy", 1))
        .await
        .unwrap();
    let max = PROFILE.retry.max_attempts;
    for round in 0..max {
        let c = q
            .claim(JobKind::RemoteMachine, 1, PROFILE.lease * 4)
            .await
            .unwrap();
        if round > 0 {
            assert_eq!(c.len(), 1, "round {round}: the abandoned job comes back");
            assert_eq!(c[0].job.attempt, round);
        }
        // Nobody finishes or renews it.
        tokio::time::sleep(PROFILE.lease + Duration::from_millis(50)).await;
    }
    // The last lease expires and the job is dead-lettered at the next claim.
    assert!(
        q.claim(JobKind::RemoteMachine, 1, PROFILE.lease * 2)
            .await
            .unwrap()
            .is_empty()
    );
    let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].error.contains("lease expired"), "{}", dead[0].error);
}

/// Replaying a dead letter never replaces a newer pending job of its object,
/// and a huge "run again after" does not break the queue.
pub async fn replay_keeps_newer_jobs_and_huge_delays_are_safe(q: &impl JobQueue) {
    q.publish(&job(JobKind::JoinToken, "t", 3)).await.unwrap();
    let c = q.claim(JobKind::JoinToken, 1, NOW).await.unwrap();
    q.finish(c[0].clone(), Outcome::DeadLetter("bad".into()))
        .await
        .unwrap();
    q.publish(&job(JobKind::JoinToken, "t", 10)).await.unwrap();
    assert_eq!(q.replay(&JobSelector::all()).await.unwrap(), 0);
    let c = q.claim(JobKind::JoinToken, 1, NOW).await.unwrap();
    assert_eq!(c[0].job.cause.resource_version, "10");
    q.finish(c[0].clone(), Outcome::RunAfter(Duration::MAX))
        .await
        .unwrap();
    q.publish(&job(JobKind::Noop, "still-works", 1))
        .await
        .unwrap();
    assert_eq!(q.claim(JobKind::Noop, 1, NOW).await.unwrap().len(), 1);
    assert_eq!(q.dead_letters(&JobSelector::all()).await.unwrap().len(), 1);
}

/// The stats come to satisfy `want` before a deadline: a cluster drops an
/// acked message a moment after the ack's answer, and counts it until then.
async fn stats_become(q: &impl JobQueue, want: impl Fn(&crate::QueueStats) -> bool, why: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = q.stats().await.unwrap();
        if want(&s) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{why}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The depth of `kind` becomes `want` before a deadline (backends may
/// count a moment behind their writes).
async fn depth_becomes(q: &impl JobQueue, kind: JobKind, want: u64, why: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let depth = q.depth().await.unwrap();
        assert_eq!(
            depth.len(),
            JobKind::ALL.len(),
            "every kind is reported: {depth:?}"
        );
        let got = depth.get(kind.as_str()).copied();
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: depth of {kind} is {got:?}, want {want} ({depth:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Depth: jobs ready to claim per kind; claims in flight and jobs waiting
/// for a later time are not counted.
pub async fn depth_counts_ready_jobs(q: &impl JobQueue) {
    depth_becomes(q, JobKind::Bootstrap, 0, "an empty queue").await;
    for name in ["a", "b", "c"] {
        q.publish(&job(JobKind::Bootstrap, name, 1)).await.unwrap();
    }
    q.publish(&job(JobKind::Noop, "a", 1)).await.unwrap();
    depth_becomes(q, JobKind::Bootstrap, 3, "three published").await;
    depth_becomes(q, JobKind::Noop, 1, "one of another kind").await;
    let c = q.claim(JobKind::Bootstrap, 1, NOW).await.unwrap();
    assert_eq!(c.len(), 1);
    depth_becomes(q, JobKind::Bootstrap, 2, "one claimed").await;
    q.finish(c[0].clone(), Outcome::RunAfter(Duration::from_secs(3600)))
        .await
        .unwrap();
    depth_becomes(q, JobKind::Bootstrap, 2, "one waiting for later").await;
    let rest = q.claim(JobKind::Bootstrap, 10, NOW).await.unwrap();
    assert_eq!(rest.len(), 2);
    for c in rest {
        q.finish(c, Outcome::Done).await.unwrap();
    }
    depth_becomes(q, JobKind::Bootstrap, 0, "all claimed").await;
    depth_becomes(q, JobKind::Noop, 1, "pools are separate").await;
}
