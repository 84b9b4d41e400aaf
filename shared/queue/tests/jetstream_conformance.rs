//! The conformance suite against the JetStream backend, on a real
//! nats-server started on a free loopback port with its own store, and on
//! a three-node cluster with R3 streams.

use std::time::Duration;

use drover_queue::conformance::{self, PROFILE};
use drover_queue::jetstream::{JetStreamConfig, JetStreamQueue};
use drover_queue::nats_server::{self, NatsServer};

fn config(url: String) -> JetStreamConfig {
    JetStreamConfig {
        lease: PROFILE.lease,
        dedupe_window: PROFILE.dedupe_window,
        policy: conformance::profile_policy,
        ..JetStreamConfig::new(url)
    }
}

async fn single() -> (JetStreamQueue, (NatsServer, tempfile::TempDir)) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = JetStreamQueue::connect(config(server.url()))
        .await
        .expect("the queue connects");
    (queue, (server, dir))
}

drover_queue::conformance_tests!(single);

/// The same checks on a three-node cluster with R3 streams, where record
/// reads may be answered by a replica.
mod r3 {
    use super::*;

    async fn cluster() -> (JetStreamQueue, (Vec<NatsServer>, tempfile::TempDir)) {
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
                Ok(queue) => return (queue, (servers, dir)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the queue did not connect to the cluster: {last}");
    }

    drover_queue::conformance_tests!(cluster;
        objects_are_exclusive,
        failures_retry_then_dead_letter,
        changes_do_not_reset_failures,
        leases_expire_and_renew,
    );
}
