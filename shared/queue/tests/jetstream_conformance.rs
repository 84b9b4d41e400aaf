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
    let queue = nats_server::connect_queue(config(server.url()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
        (
            nats_server::connect_queue(c)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            (servers, dir),
        )
    }

    drover_queue::conformance_tests!(cluster;
        objects_are_exclusive,
        objects_run_again_at_once_after_a_finish,
        a_change_during_a_claim_runs_right_after_it,
        failures_retry_then_dead_letter,
        changes_do_not_reset_failures,
        leases_expire_and_renew,
        a_repeated_finish_is_settled,
        purge_keeps_claims_exclusive,
    );
}

/// A job's W3C trace context travels as `traceparent`/`tracestate` headers
/// on its stored message, and a claim takes it from the headers when the
/// payload has none (a producer that only sets headers).
#[tokio::test]
async fn trace_context_travels_in_headers() {
    use drover_queue::JobQueue as _;
    use drover_queue::jetstream::{TRACEPARENT, TRACESTATE};
    use drover_shared::jobs::{JobKind, TraceContext};

    let (queue, _guard) = single().await;
    let trace = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: Some("drover=t".into()),
    };
    let mut traced = conformance::job(JobKind::Bootstrap, "traced", 1);
    traced.trace = Some(trace.clone());
    queue.publish(&traced).await.unwrap();
    let stream = queue.context().get_stream("DROVER_JOBS").await.unwrap();
    let stored = stream
        .get_last_raw_message_by_subject(&traced.subject())
        .await
        .unwrap();
    assert_eq!(
        stored.headers.get(TRACEPARENT).map(|v| v.as_str()),
        Some(trace.traceparent.as_str())
    );
    assert_eq!(
        stored.headers.get(TRACESTATE).map(|v| v.as_str()),
        Some("drover=t")
    );
    let untraced = conformance::job(JobKind::Noop, "plain", 1);
    queue.publish(&untraced).await.unwrap();
    let stored = stream
        .get_last_raw_message_by_subject(&untraced.subject())
        .await
        .unwrap();
    assert!(stored.headers.get(TRACEPARENT).is_none());

    // Headers only: the claim fills `job.trace` from them.
    let bare = conformance::job(JobKind::Echo, "headers-only", 1);
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&bare).unwrap().into())
        .header(TRACEPARENT, trace.traceparent.as_str());
    queue
        .context()
        .send_publish(bare.subject(), message)
        .await
        .unwrap()
        .await
        .unwrap();
    let claims = queue
        .claim(JobKind::Echo, 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0].job.trace,
        Some(TraceContext {
            traceparent: trace.traceparent.clone(),
            tracestate: None
        })
    );
    let claims = queue
        .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        claims[0].job.trace,
        Some(trace),
        "the payload's own context"
    );
}

/// Two queue handles (two worker processes): a change that arrives while
/// one handle's claim runs is claimed by the other as soon as the claim
/// ends, whether the other tried it meanwhile (and waited) or not. The
/// holder finishes without writing its record back; the waiter's signal
/// to the holder's handle is what releases it before the lease runs out.
#[tokio::test]
async fn a_change_waits_for_another_handles_claim_and_no_longer() {
    use drover_queue::{Finished, JobQueue as _, Outcome};
    use drover_shared::jobs::JobKind;

    let (holder, guard) = single().await;
    let waiter = JetStreamQueue::connect(config(guard.0.url()))
        .await
        .expect("a second handle connects");
    let soon_enough = PROFILE.lease / 4;
    for tried_meanwhile in [true, false] {
        let name = if tried_meanwhile { "tried" } else { "untried" };
        holder
            .publish(&conformance::job(JobKind::Bootstrap, name, 1))
            .await
            .unwrap();
        let first = holder
            .claim(JobKind::Bootstrap, 1, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        waiter
            .publish(&conformance::job(JobKind::Bootstrap, name, 2))
            .await
            .unwrap();
        if tried_meanwhile {
            assert!(
                waiter
                    .claim(JobKind::Bootstrap, 1, Duration::from_millis(50))
                    .await
                    .unwrap()
                    .is_empty(),
                "held by the other handle"
            );
        }
        assert_eq!(
            holder
                .finish(first[0].clone(), Outcome::Done)
                .await
                .unwrap(),
            Finished::Settled
        );
        let second = waiter
            .claim(JobKind::Bootstrap, 1, soon_enough)
            .await
            .unwrap();
        assert_eq!(
            second.len(),
            1,
            "{name}: the change runs within {soon_enough:?} of the other claim's end"
        );
        assert_eq!(second[0].job.cause.resource_version, "2");
        assert_eq!(second[0].job.attempt, 0, "waiting was not a failure");
        assert_eq!(
            waiter
                .finish(second[0].clone(), Outcome::Done)
                .await
                .unwrap(),
            Finished::Settled
        );
    }
}
