//! The watcher's Prometheus metrics.

use drover_shared::jobs::JobKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::mapping::ObjKind;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Counters and gauges of one watcher. Cheap to clone (the families are shared).
#[derive(Clone, Default)]
pub struct WatcherMetrics {
    /// Watch events seen, by kind and event type (`apply`, `delete`,
    /// `init`, `init_apply`, `init_done`, `error`).
    pub events: Family<Labels2, Counter>,
    /// Jobs published as new pending jobs, by job kind.
    pub published: Family<Labels1, Counter>,
    /// Jobs that replaced a pending job of the same object, by job kind.
    pub coalesced: Family<Labels1, Counter>,
    /// Jobs the queue recognised as already published, by job kind.
    pub deduped: Family<Labels1, Counter>,
    /// Failed publish attempts (each is retried).
    pub publish_errors: Counter,
    /// Objects in the cache, by kind.
    pub cached: Family<Labels1, Gauge>,
}

impl WatcherMetrics {
    /// Creates the metrics and registers them in `registry` under `drover_watcher_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("drover_watcher");
        r.register(
            "events",
            "Watch events seen, by kind and event type",
            m.events.clone(),
        );
        r.register(
            "jobs_published",
            "Jobs queued, by job kind",
            m.published.clone(),
        );
        r.register(
            "jobs_coalesced",
            "Jobs that replaced a pending job of the same object, by job kind",
            m.coalesced.clone(),
        );
        r.register(
            "jobs_deduped",
            "Jobs the queue had already seen (same dedupe id), by job kind",
            m.deduped.clone(),
        );
        r.register(
            "publish_errors",
            "Failed publish attempts (retried)",
            m.publish_errors.clone(),
        );
        r.register(
            "objects_cached",
            "Objects in the watcher's cache, by kind",
            m.cached.clone(),
        );
        m
    }

    pub(crate) fn event(&self, kind: ObjKind, event: &'static str) {
        self.events
            .get_or_create(&[("kind", kind.label()), ("event", event)])
            .inc();
    }

    pub(crate) fn set_cached(&self, kind: ObjKind, n: usize) {
        self.cached
            .get_or_create(&[("kind", kind.label())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn job(family: &Family<Labels1, Counter>, kind: JobKind) {
        family.get_or_create(&[("job_kind", kind.as_str())]).inc();
    }
}
