//! The conformance suite against the embedded (redb) backend, on a real file.

use std::time::Duration;

use drover_queue::conformance::{self, PROFILE};
use drover_queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use drover_queue::{JobQueue, JobSelector, Outcome};
use drover_shared::jobs::JobKind;

fn open(dir: &tempfile::TempDir) -> EmbeddedQueue {
    EmbeddedQueue::open(
        &dir.path().join("queue.redb"),
        EmbeddedConfig {
            lease: PROFILE.lease,
            dedupe_window: PROFILE.dedupe_window,
            policy: conformance::profile_policy,
        },
    )
    .expect("the queue opens")
}

async fn fixture() -> (EmbeddedQueue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (open(&dir), dir)
}

drover_queue::conformance_tests!(fixture);

/// 1: what publish accepted survives closing and reopening the file, and so
/// do claims in flight (they come back after their lease) and dead letters.
#[tokio::test]
async fn jobs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(&dir);
        q.publish(&conformance::job(JobKind::Bootstrap, "kept", 1))
            .await
            .unwrap();
        q.publish(&conformance::job(JobKind::RemoteMachine, "claimed", 1))
            .await
            .unwrap();
        q.publish(&conformance::job(JobKind::Noop, "dead", 1))
            .await
            .unwrap();
        let _abandoned = q
            .claim(JobKind::RemoteMachine, 1, Duration::ZERO)
            .await
            .unwrap();
        let d = q.claim(JobKind::Noop, 1, Duration::ZERO).await.unwrap();
        q.finish(d[0].clone(), Outcome::DeadLetter("bad".into()))
            .await
            .unwrap();
    }
    // The writer thread ends when the queue is dropped; give it a moment to release the file.
    let mut tries = 0;
    let q = loop {
        tries += 1;
        assert!(tries < 100, "the queue file did not reopen");
        match EmbeddedQueue::open(
            &dir.path().join("queue.redb"),
            EmbeddedConfig {
                lease: PROFILE.lease,
                dedupe_window: PROFILE.dedupe_window,
                policy: conformance::profile_policy,
            },
        ) {
            Ok(q) => break q,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(
        q.claim(JobKind::Bootstrap, 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        q.claim(JobKind::RemoteMachine, 10, PROFILE.lease * 4)
            .await
            .unwrap()
            .len(),
        1,
        "an abandoned claim comes back after a restart"
    );
    assert_eq!(q.dead_letters(&JobSelector::all()).await.unwrap().len(), 1);
}
