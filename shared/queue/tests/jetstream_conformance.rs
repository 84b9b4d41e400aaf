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

/// The same checks on a three-node cluster with R3 streams, where record
/// reads may be answered by a replica.
mod r3 {
    use super::*;
    use drover_queue::nats_server;
    use std::time::Duration;

    struct Cluster {
        queue: JetStreamQueue,
        _servers: Vec<NatsServer>,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = NatsServer::start_cluster(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let c = JetStreamConfig {
            replicas: 3,
            ..config(nats_server::urls(&servers))
        };
        // The cluster elects its meta leader after the servers start.
        let mut last = String::new();
        for _ in 0..100 {
            match JetStreamQueue::connect(c.clone()).await {
                Ok(queue) => {
                    return Cluster {
                        queue,
                        _servers: servers,
                        _dir: dir,
                    };
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the queue did not connect to the cluster: {last}");
    }

    macro_rules! r3_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                let c = start().await;
                conformance::$name(&c.queue).await;
            }
        )*};
    }

    r3_tests!(
        objects_are_exclusive,
        failures_retry_then_dead_letter,
        changes_do_not_reset_failures,
        leases_expire_and_renew,
    );
}
