//! The conformance suite against the JetStream backend, on a real
//! nats-server started on a free loopback port with its own store.

use drover_queue::conformance::{self, PROFILE};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::NatsServer;

struct Fixture {
    queue: JetStreamQueue,
    _server: NatsServer,
    _dir: tempfile::TempDir,
}

fn config(url: String) -> JetStreamConfig {
    JetStreamConfig {
        lease: PROFILE.lease,
        dedupe_window: PROFILE.dedupe_window,
        policy: conformance::profile_policy,
        ..JetStreamConfig::new(url)
    }
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = JetStreamQueue::connect(config(server.url()))
        .await
        .expect("the queue connects");
    Fixture {
        queue,
        _server: server,
        _dir: dir,
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let f = start().await;
            conformance::$name(&f.queue).await;
        }
    )*};
}

conformance_tests!(
    pools_are_separate,
    pending_jobs_coalesce_newest_wins,
    objects_are_exclusive,
    waiting_is_not_failing,
    failures_retry_then_dead_letter,
    leases_expire_and_renew,
    duplicates_are_dropped,
    stats_replay_and_purge,
    changes_do_not_reset_failures,
    abandoned_claims_count_as_failures,
    replay_keeps_newer_jobs_and_huge_delays_are_safe,
);
