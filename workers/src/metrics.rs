//! The worker's Prometheus metrics, registered under the prefix
//! `drover_worker` (as the watcher's are under `drover_watcher`). Every
//! family is labelled by job kind.
//!
//! | Name | Type | What |
//! |---|---|---|
//! | `drover_worker_claim_wait_seconds` | histogram | how long a claim call waited for jobs |
//! | `drover_worker_handler_duration_seconds` | histogram | how long handlers ran |
//! | `drover_worker_outcomes_total` | counter (`kind`, `outcome`) | done, run_after, retry, dead_letter, released, lease_lost |
//! | `drover_worker_dead_letters_total` | counter | jobs this worker's finishes moved to the dead letters |
//! | `drover_worker_jobs_in_flight` | gauge | jobs running now |
//! | `drover_worker_queue_depth` | gauge | jobs ready to claim, polled every few seconds |

use drover_shared::jobs::JobKind;
use drover_telemetry::Registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The job kind.
    pub kind: String,
}

/// The `kind` and `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The job kind.
    pub kind: String,
    /// How the job ended.
    pub outcome: String,
}

type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

fn claim_buckets() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn handler_buckets() -> Histogram {
    // 5 ms .. ~20 min (SSH provisioning is slow)
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// The worker's metric families. Cheap to clone (each family is shared).
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    claim_wait: Histograms,
    handler_duration: Histograms,
    outcomes: Family<OutcomeLabels, Counter>,
    dead_letters: Family<KindLabel, Counter>,
    in_flight: Family<KindLabel, Gauge>,
    queue_depth: Family<KindLabel, Gauge>,
}

fn kind(k: JobKind) -> KindLabel {
    KindLabel {
        kind: k.as_str().to_owned(),
    }
}

impl WorkerMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            claim_wait: Family::new_with_constructor(claim_buckets),
            handler_duration: Family::new_with_constructor(handler_buckets),
            outcomes: Family::default(),
            dead_letters: Family::default(),
            in_flight: Family::default(),
            queue_depth: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("drover_worker");
        r.register(
            "claim_wait_seconds",
            "How long a claim call waited for jobs",
            m.claim_wait.clone(),
        );
        r.register(
            "handler_duration_seconds",
            "How long handlers ran",
            m.handler_duration.clone(),
        );
        r.register(
            "outcomes",
            "How jobs ended: done, run_after, retry, dead_letter, released, lease_lost",
            m.outcomes.clone(),
        );
        r.register(
            "dead_letters",
            "Jobs this worker moved to the dead letters",
            m.dead_letters.clone(),
        );
        r.register("jobs_in_flight", "Jobs running now", m.in_flight.clone());
        r.register("queue_depth", "Jobs ready to claim", m.queue_depth.clone());
        m
    }

    pub(crate) fn claim_waited(&self, k: JobKind, secs: f64) {
        self.claim_wait.get_or_create(&kind(k)).observe(secs);
    }

    pub(crate) fn handler_ran(&self, k: JobKind, secs: f64) {
        self.handler_duration.get_or_create(&kind(k)).observe(secs);
    }

    pub(crate) fn ended(&self, k: JobKind, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                kind: k.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn dead_lettered(&self, k: JobKind) {
        self.dead_letters.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn set_depth(&self, k: JobKind, depth: u64) {
        self.queue_depth
            .get_or_create(&kind(k))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts a job in flight until the guard drops.
    pub(crate) fn in_flight(&self, k: JobKind) -> InFlight {
        let gauge = self.in_flight.get_or_create(&kind(k)).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// How many jobs of `k` ended with `outcome` (for tests and reports).
    pub fn outcome_count(&self, k: JobKind, outcome: &str) -> u64 {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                kind: k.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .get()
    }

    /// Jobs of `k` running now.
    pub fn jobs_in_flight(&self, k: JobKind) -> i64 {
        self.in_flight.get_or_create(&kind(k)).get()
    }

    /// The last polled queue depth of `k`.
    pub fn queue_depth(&self, k: JobKind) -> i64 {
        self.queue_depth.get_or_create(&kind(k)).get()
    }

    /// Dead letters this worker made for `k`.
    pub fn dead_letter_count(&self, k: JobKind) -> u64 {
        self.dead_letters.get_or_create(&kind(k)).get()
    }
}

/// Decrements the in-flight gauge when dropped.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
