//! The dispatcher: the one task that owns the cache. It applies watch
//! events to the [`Index`], asks the [`mapping`](crate::mapping) which jobs
//! they imply and publishes them; it also runs startup sweeps, relist
//! reconciliation and periodic resyncs.
//!
//! # Startup
//!
//! Until a kind's watch has listed once, its events only fill the cache.
//! A kind is *ready* when it has listed once and, if it honours pause, the
//! CAPI Cluster watch has too (otherwise a paused cluster could not be
//! recognised yet). When a kind becomes ready every cached object of it
//! gets one `Added` job (a sweep), and from then on its events make jobs.
//! Related jobs go only to ready kinds: the others get their sweep.
//!
//! # Relists
//!
//! After a 410 the watcher lists again (`Init`, `InitApply`..., `InitDone`).
//! Listed objects are compared with the cache like any event (unchanged
//! ones make no job), and on `InitDone` cached objects the list did not
//! contain are treated as deleted.
//!
//! # Sweeps and resyncs
//!
//! Both go through a backlog that is drained a few jobs at a time between
//! events, so a sweep of 100,000 objects does not hold up event handling.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use drover_queue::JobQueue;
use drover_shared::jobs::{Cause, Change, Job, ObjectRef};
use drover_telemetry::HealthCheck;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::index::Index;
use crate::mapping::{self, ObjKind, Planned};
use crate::metrics::WatcherMetrics;
use crate::publish::Publisher;
use crate::summary::{Interner, Key, Summary};

/// How many backlog jobs are published per turn of the loop.
const BACKLOG_CHUNK: usize = 16;
/// How often interned strings of deleted objects are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What a watch task hands the dispatcher.
#[derive(Debug)]
pub(crate) enum Input {
    /// A (re)list starts.
    Init(ObjKind),
    /// An object as listed (`listed`) or as a watch event saw it.
    Apply {
        key: Key,
        summary: Summary,
        listed: bool,
    },
    /// An object was deleted; its last state.
    Delete { key: Key, summary: Summary },
    /// A (re)list is complete.
    InitDone(ObjKind),
}

#[derive(Default)]
struct KindState {
    /// Listed once.
    synced: bool,
    /// Keys seen by the list in progress.
    listing: Option<HashSet<Key>>,
}

pub(crate) struct Dispatcher<Q> {
    index: Index,
    kinds: [KindState; ObjKind::ALL.len()],
    health: Vec<HealthCheck>,
    backlog: VecDeque<(Key, Change)>,
    publisher: Publisher<Q>,
    metrics: WatcherMetrics,
    interner: Arc<Interner>,
}

impl<Q: JobQueue> Dispatcher<Q> {
    /// `health` holds one check per kind, in [`ObjKind::ALL`] order.
    pub(crate) fn new(
        publisher: Publisher<Q>,
        metrics: WatcherMetrics,
        health: Vec<HealthCheck>,
        interner: Arc<Interner>,
    ) -> Self {
        Self {
            index: Index::new(),
            kinds: Default::default(),
            health,
            backlog: VecDeque::new(),
            publisher,
            metrics,
            interner,
        }
    }

    /// Handles inputs until `shutdown`, then waits for publishes in flight.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        resync: Option<Duration>,
        shutdown: CancellationToken,
    ) {
        let mut resync_timer = resync.map(|period| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        // Strings of deleted objects are forgotten now and then, resyncs or not.
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Not biased: events, resyncs and the backlog take turns.
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = prune.tick() => self.interner.prune(),
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input).await,
                    None => break,
                },
                _ = async { resync_timer.as_mut().expect("guarded").tick().await }, if resync_timer.is_some() => {
                    self.queue_resync();
                }
                () = std::future::ready(()), if !self.backlog.is_empty() => {
                    self.drain_backlog(BACKLOG_CHUNK).await;
                }
            }
        }
        self.publisher.finish().await;
    }

    fn synced(&self, kind: ObjKind) -> bool {
        self.kinds[kind as usize].synced
    }

    /// Whether `kind`'s events make jobs (see the module docs).
    fn ready(&self, kind: ObjKind) -> bool {
        kind.job_kind().is_some()
            && self.synced(kind)
            && (!kind.honours_pause() || self.synced(ObjKind::CapiCluster))
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Init(kind) => {
                self.metrics.event(kind, "init");
                self.kinds[kind as usize].listing = Some(HashSet::new());
            }
            Input::Apply {
                key,
                summary,
                listed,
            } => {
                self.metrics
                    .event(key.kind, if listed { "init_apply" } else { "apply" });
                if listed && let Some(seen) = &mut self.kinds[key.kind as usize].listing {
                    seen.insert(key.clone());
                }
                if self.index.get(&key) == Some(&summary) {
                    return; // a relist showing what we have
                }
                let old = self.index.insert(key.clone(), summary.clone());
                self.metrics
                    .set_cached(key.kind, self.index.count(key.kind));
                let event = if listed { "relist" } else { "apply" };
                self.changed(&key, old, Some(summary), event).await;
            }
            Input::Delete { key, summary } => {
                self.metrics.event(key.kind, "delete");
                self.index.remove(&key);
                self.metrics
                    .set_cached(key.kind, self.index.count(key.kind));
                self.changed(&key, Some(summary), None, "delete").await;
            }
            Input::InitDone(kind) => {
                self.metrics.event(kind, "init_done");
                self.list_done(kind).await;
            }
        }
    }

    /// Maps one change and publishes its jobs, in one root span.
    async fn changed(
        &mut self,
        key: &Key,
        old: Option<Summary>,
        new: Option<Summary>,
        event: &'static str,
    ) {
        if !self.synced(key.kind) {
            return; // first list: cache only, the sweep follows
        }
        let span = tracing::info_span!(
            parent: None,
            "watch_event",
            kind = key.kind.label(),
            object = %format_args!("{}/{}", key.ns, key.name),
            change = event,
        );
        async {
            let planned = mapping::plan(&self.index, key, old.as_ref(), new.as_ref());
            let source = new.as_ref().or(old.as_ref()).map(|s| (key, s));
            for Planned { target, change } in planned {
                if !self.ready(target.kind) {
                    continue;
                }
                let job = if change == Change::Related {
                    let Some(s) = self.index.get(&target) else {
                        continue;
                    };
                    make_job(&target, s, change, source)
                } else {
                    let Some((_, s)) = source else { continue };
                    make_job(&target, s, change, None)
                };
                tracing::debug!(target = %target, ?change, "job");
                self.publisher.publish(job).await;
            }
        }
        .instrument(span)
        .await;
    }

    /// The end of a (re)list: vanished objects are deleted; the first time,
    /// the kind is synced and sweeps start.
    async fn list_done(&mut self, kind: ObjKind) {
        if let Some(seen) = self.kinds[kind as usize].listing.take() {
            for key in self.index.keys_of(kind) {
                if !seen.contains(&key)
                    && let Some(last) = self.index.remove(&key)
                {
                    self.changed(&key, Some(last), None, "vanished").await;
                }
            }
            self.metrics.set_cached(kind, self.index.count(kind));
        }
        if self.synced(kind) {
            return;
        }
        let before: Vec<bool> = ObjKind::ALL.iter().map(|k| self.ready(*k)).collect();
        self.kinds[kind as usize].synced = true;
        self.health[kind as usize].set_ready(true);
        for (k, was_ready) in ObjKind::ALL.into_iter().zip(before) {
            if !was_ready && self.ready(k) {
                let keys = self.index.keys_of(k);
                tracing::info!(
                    kind = k.label(),
                    objects = keys.len(),
                    "watch ready, sweeping"
                );
                self.backlog
                    .extend(keys.into_iter().map(|key| (key, Change::Added)));
            }
        }
    }

    /// Queues a `Resync` job for every cached object of the ready kinds,
    /// unless the previous resync is still draining.
    fn queue_resync(&mut self) {
        if self.backlog.iter().any(|(_, c)| *c == Change::Resync) {
            tracing::warn!(
                backlog = self.backlog.len(),
                "previous resync still running; skipping one"
            );
            return;
        }
        let ready: Vec<ObjKind> = ObjKind::ALL
            .into_iter()
            .filter(|k| self.ready(*k))
            .collect();
        for kind in ready {
            let keys = self.index.keys_of(kind);
            self.backlog
                .extend(keys.into_iter().map(|key| (key, Change::Resync)));
        }
    }

    async fn drain_backlog(&mut self, max: usize) {
        for _ in 0..max {
            let Some((key, change)) = self.backlog.pop_front() else {
                return;
            };
            let Some(s) = self.index.get(&key) else {
                continue; // deleted meanwhile
            };
            // A startup sweep includes paused objects (their one job on
            // entering pause); resyncs skip them.
            if change == Change::Resync && mapping::is_paused(&self.index, &key, s) {
                continue;
            }
            let span = tracing::info_span!(
                parent: None,
                "watch_event",
                kind = key.kind.label(),
                object = %format_args!("{}/{}", key.ns, key.name),
                change = ?change,
            );
            let job = span.in_scope(|| make_job(&key, s, change, None));
            self.publisher.publish(job).instrument(span).await;
        }
    }
}

/// The job for `target` (summary `s`). For related jobs `via` is the
/// changed object, whose resourceVersion makes the dedupe id.
fn make_job(target: &Key, s: &Summary, change: Change, via: Option<(&Key, &Summary)>) -> Job {
    let object_ref = |k: &Key, s: &Summary| ObjectRef {
        api_version: k.kind.api_version().to_owned(),
        kind: k.kind.name().to_owned(),
        namespace: Some(k.ns.to_string()),
        name: k.name.to_string(),
        uid: s.uid.to_string(),
    };
    let resource_version = via.map_or(&s.resource_version, |(_, v)| &v.resource_version);
    Job {
        id: uuid::Uuid::now_v7().to_string(),
        kind: target
            .kind
            .job_kind()
            .unwrap_or(drover_shared::jobs::JobKind::Noop),
        object: object_ref(target, s),
        cluster: s.cluster.as_ref().map(|c| c.to_string()),
        cause: Cause {
            change,
            generation: s.generation,
            resource_version: resource_version.to_string(),
            via: via.map(|(k, v)| object_ref(k, v)),
        },
        attempt: 0,
        // Inside the event's span: one trace from the watch event to the handler.
        trace: drover_telemetry::trace::current(),
    }
}
