//! The embedded backend: a redb file, for `drover up` and single-process
//! use. Every mutation goes through one writer thread that applies the
//! operations queued meanwhile in one transaction and commits once (group
//! commit, `Durability::Immediate`), then answers each caller. So a publish
//! returns only once it is on disk, and many concurrent publishes share a
//! fsync.
//!
//! Tables: `pending` (subject → job, ready time, history), `ready` (kind,
//! ready time, sequence → subject: the claim order), `inflight` (subject →
//! lease), `dedupe` and `dedupe_age` (publish ids in the window), `dead`
//! (time/id → dead letter), `meta` (the sequence counter).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_shared::jobs::{Change, Job, JobKind, parse_subject};
use redb::{
    Database, ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _, Table,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use crate::model::{
    AttemptRecord, Claim, DeadLetter, Finished, JobSelector, Outcome, Published, PurgeScope,
    QueueStats,
};
use crate::{JobQueue, QueueError, RetryPolicy};

const PENDING: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pending");
const READY: TableDefinition<'_, (&str, u64, u64), &str> = TableDefinition::new("ready");
const INFLIGHT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inflight");
/// (kind, lease end, subject): finds expired claims without reading them all.
const LEASE_ENDS: TableDefinition<'_, (&str, u64, &str), ()> = TableDefinition::new("lease_ends");
const DEDUPE: TableDefinition<'_, &str, u64> = TableDefinition::new("dedupe");
const DEDUPE_AGE: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("dedupe_age");
const DEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("dead");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Settings of an embedded queue.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// How long a publish id is remembered for dedupe.
    pub dedupe_window: Duration,
    /// Retry policy per kind.
    pub policy: fn(JobKind) -> RetryPolicy,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            dedupe_window: Duration::from_secs(120),
            policy: RetryPolicy::for_kind,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PendingRecord {
    job: Job,
    ready_at_ms: u64,
    seq: u64,
    history: Vec<AttemptRecord>,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    claim_id: String,
    job: Job,
    history: Vec<AttemptRecord>,
    expires_at_ms: u64,
}

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

enum Op {
    Publish(Box<Job>, Reply<Published>),
    Claim(JobKind, usize, Reply<(Vec<Claim>, Option<u64>)>),
    Renew(String, String, Reply<()>),
    Finish(Box<Claim>, Outcome, Reply<Finished>),
    Replay(JobSelector, Reply<usize>),
    Purge(PurgeScope, Reply<usize>),
}

/// The redb-backed queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    db: Arc<Database>,
    ops: std_mpsc::Sender<Op>,
    /// One per job kind: a publish or finish wakes one claimer of its kind
    /// (waking them all made every idle claimer scan the queue per job).
    wake: Arc<[Notify; JobKind::ALL.len()]>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn storage<E: Into<redb::Error>>(e: E) -> QueueError {
    QueueError::Storage(e.into())
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("queue records serialize")
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file at `path`.
    pub fn open(path: &Path, config: EmbeddedConfig) -> Result<Self, QueueError> {
        let db = Arc::new(Database::create(path).map_err(storage)?);
        let (ops, rx) = std_mpsc::channel();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("drover-queue-writer".into())
            .spawn(move || writer(&writer_db, &rx, &config))
            .map_err(|e| storage(redb::StorageError::Io(e)))?;
        Ok(Self {
            db,
            ops,
            wake: Arc::new(std::array::from_fn(|_| Notify::new())),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(make(tx)).map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| QueueError::Closed)?
    }
}

impl JobQueue for EmbeddedQueue {
    async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
        let out = self.call(|r| Op::Publish(Box::new(job.clone()), r)).await?;
        self.wake[job.kind as usize].notify_one();
        Ok(out)
    }

    async fn claim(
        &self,
        kind: JobKind,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        let start = tokio::time::Instant::now();
        let deadline = start
            .checked_add(wait)
            .unwrap_or(start + Duration::from_secs(365 * 24 * 3600));
        loop {
            let woken = self.wake[kind as usize].notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (claims, next_ms) = self.call(|r| Op::Claim(kind, max.max(1), r)).await?;
            let now = tokio::time::Instant::now();
            if !claims.is_empty() || now >= deadline {
                return Ok(claims);
            }
            let mut until = deadline;
            if let Some(next) = next_ms {
                let wait_ms = next.saturating_sub(now_ms());
                until = until.min(now + Duration::from_millis(wait_ms));
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn renew(&self, claim: &Claim) -> Result<(), QueueError> {
        let subject = claim.job.subject();
        let id = claim.claim_id.clone();
        self.call(|r| Op::Renew(subject, id, r)).await
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<Finished, QueueError> {
        let kind = claim.job.kind;
        let out = self
            .call(|r| Op::Finish(Box::new(claim), outcome, r))
            .await?;
        // A newer job of the object may be claimable now.
        self.wake[kind as usize].notify_one();
        Ok(out)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let mut stats = QueueStats::default();
            if let Ok(t) = txn.open_table(READY) {
                for row in t.iter().map_err(storage)? {
                    let (k, _) = row.map_err(storage)?;
                    *stats.pending.entry(k.value().0.to_owned()).or_default() += 1;
                }
            }
            if let Ok(t) = txn.open_table(INFLIGHT) {
                for row in t.iter().map_err(storage)? {
                    let (k, _) = row.map_err(storage)?;
                    if let Some(parts) = parse_subject(k.value()) {
                        *stats.in_flight.entry(parts.kind.to_string()).or_default() += 1;
                    }
                }
            }
            if let Ok(t) = txn.open_table(DEAD) {
                for row in t.iter().map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    let d: DeadLetter = decode(k.value(), v.value())?;
                    *stats.dead.entry(d.job.kind.to_string()).or_default() += 1;
                }
            }
            Ok(stats)
        })
        .await
    }

    async fn depth(&self) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let now = now_ms();
            let mut depth: std::collections::BTreeMap<String, u64> = JobKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), 0))
                .collect();
            let Ok(t) = txn.open_table(READY) else {
                return Ok(depth);
            };
            for kind in JobKind::ALL {
                // Keys only, in the ready index's order: ready now ends at `now`.
                let n = t
                    .range((kind.as_str(), 0, 0)..=(kind.as_str(), now, u64::MAX))
                    .map_err(storage)?
                    .count();
                depth.insert(kind.as_str().to_owned(), n as u64);
            }
            Ok(depth)
        })
        .await
    }

    async fn dead_letters(&self, selector: &JobSelector) -> Result<Vec<DeadLetter>, QueueError> {
        let selector = selector.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let Ok(t) = txn.open_table(DEAD) else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let d: DeadLetter = decode(k.value(), v.value())?;
                if selector.matches(&d.job) {
                    out.push(d);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn replay(&self, selector: &JobSelector) -> Result<usize, QueueError> {
        let n = self.call(|r| Op::Replay(selector.clone(), r)).await?;
        for w in self.wake.iter() {
            w.notify_waiters();
        }
        Ok(n)
    }

    async fn purge(&self, scope: PurgeScope) -> Result<usize, QueueError> {
        self.call(|r| Op::Purge(scope, r)).await
    }
}

/// Every table, opened once per batch (opening and closing a table for
/// each step cost more than the step).
struct Tables<'t> {
    pending: Table<'t, &'static str, &'static [u8]>,
    ready: Table<'t, (&'static str, u64, u64), &'static str>,
    inflight: Table<'t, &'static str, &'static [u8]>,
    lease_ends: Table<'t, (&'static str, u64, &'static str), ()>,
    dedupe: Table<'t, &'static str, u64>,
    dedupe_age: Table<'t, (u64, &'static str), ()>,
    dead: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    /// The sequence counter, read at open and written back by `close`.
    seq: u64,
    seq_dirty: bool,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        let meta = txn.open_table(META).map_err(storage)?;
        let seq = meta.get("seq").map_err(storage)?.map_or(0, |v| v.value());
        Ok(Self {
            pending: txn.open_table(PENDING).map_err(storage)?,
            ready: txn.open_table(READY).map_err(storage)?,
            inflight: txn.open_table(INFLIGHT).map_err(storage)?,
            lease_ends: txn.open_table(LEASE_ENDS).map_err(storage)?,
            dedupe: txn.open_table(DEDUPE).map_err(storage)?,
            dedupe_age: txn.open_table(DEDUPE_AGE).map_err(storage)?,
            dead: txn.open_table(DEAD).map_err(storage)?,
            meta,
            seq,
            seq_dirty: false,
        })
    }

    /// Writes back what is kept in memory during the batch.
    fn close(mut self) -> Result<(), QueueError> {
        if self.seq_dirty {
            self.meta.insert("seq", self.seq).map_err(storage)?;
        }
        Ok(())
    }
}

/// The writer thread: batches of operations, one transaction and one commit
/// each. If any operation of a batch fails, the batch's transaction is
/// dropped (nothing of it is written) and each operation runs again in a
/// transaction of its own, so one bad record cannot leave another
/// operation half-applied.
fn writer(db: &Database, rx: &std_mpsc::Receiver<Op>, config: &EmbeddedConfig) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let together = db.begin_write().map_err(storage).and_then(|txn| {
            let results: Vec<Result<OpOut, QueueError>> = {
                let mut t = Tables::open(&txn)?;
                let results = batch.iter().map(|op| op.run(&mut t, config)).collect();
                t.close()?;
                results
            };
            if results.iter().any(Result::is_err) {
                return Ok(None); // dropping the transaction aborts it
            }
            txn.commit().map_err(storage)?;
            Ok(Some(results))
        });
        match together {
            Ok(Some(results)) => {
                for (op, r) in batch.into_iter().zip(results) {
                    op.reply(r);
                }
            }
            Ok(None) => {
                for op in batch {
                    let r = db.begin_write().map_err(storage).and_then(|txn| {
                        let mut t = Tables::open(&txn)?;
                        let r = op.run(&mut t, config)?;
                        t.close()?;
                        txn.commit().map_err(storage)?;
                        Ok(r)
                    });
                    op.reply(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "queue: a batch could not be written");
                for op in batch {
                    op.reply(Err(QueueError::Storage(redb::Error::Corrupted(
                        msg.clone(),
                    ))));
                }
            }
        }
    }
}

/// What an operation produced, before it is handed back to its caller.
enum OpOut {
    Published(Published),
    Claimed(Vec<Claim>, Option<u64>),
    /// Whether the lease was still this claim's.
    Renewed(bool),
    Finished(Finished),
    Count(usize),
}

impl Op {
    /// Applies the operation to the batch's tables.
    fn run(&self, t: &mut Tables<'_>, config: &EmbeddedConfig) -> Result<OpOut, QueueError> {
        let now = now_ms();
        Ok(match self {
            Op::Publish(job, _) => OpOut::Published(publish(t, job, now, config)?),
            Op::Claim(kind, max, _) => {
                let (c, wake) = claim(t, *kind, *max, now, config)?;
                OpOut::Claimed(c, wake)
            }
            Op::Renew(subject, id, _) => OpOut::Renewed(renew(t, subject, id, now, config)?),
            Op::Finish(c, outcome, _) => {
                OpOut::Finished(finish(t, (**c).clone(), outcome.clone(), now, config)?)
            }
            Op::Replay(sel, _) => OpOut::Count(replay(t, sel, now)?),
            Op::Purge(scope, _) => OpOut::Count(purge(t, *scope)?),
        })
    }

    /// Answers the caller.
    fn reply(self, r: Result<OpOut, QueueError>) {
        fn send<T>(tx: Reply<T>, v: Result<T, QueueError>) {
            let _ = tx.send(v);
        }
        // Each kind of operation produces its own kind of output; a mismatch
        // would be a bug here, answered as an error rather than a panic.
        let mismatch = || {
            QueueError::Storage(redb::Error::Corrupted(
                "internal: operation output does not match its kind".into(),
            ))
        };
        match self {
            Op::Publish(_, tx) => send(
                tx,
                r.and_then(|o| match o {
                    OpOut::Published(p) => Ok(p),
                    _ => Err(mismatch()),
                }),
            ),
            Op::Claim(_, _, tx) => send(
                tx,
                r.and_then(|o| match o {
                    OpOut::Claimed(c, w) => Ok((c, w)),
                    _ => Err(mismatch()),
                }),
            ),
            Op::Renew(subject, _, tx) => send(
                tx,
                r.and_then(|o| match o {
                    OpOut::Renewed(true) => Ok(()),
                    OpOut::Renewed(false) => Err(QueueError::LeaseLost(subject)),
                    _ => Err(mismatch()),
                }),
            ),
            Op::Finish(_, _, tx) => send(
                tx,
                r.and_then(|o| match o {
                    OpOut::Finished(f) => Ok(f),
                    _ => Err(mismatch()),
                }),
            ),
            Op::Replay(_, tx) | Op::Purge(_, tx) => send(
                tx,
                r.and_then(|o| match o {
                    OpOut::Count(n) => Ok(n),
                    _ => Err(mismatch()),
                }),
            ),
        }
    }
}

fn next_seq(t: &mut Tables<'_>) -> u64 {
    t.seq += 1;
    t.seq_dirty = true;
    t.seq
}

/// Makes `job` the pending job of its object, ready at `ready_at_ms`
/// (replacing any pending one). Returns whether one was replaced.
fn enqueue(
    t: &mut Tables<'_>,
    job: Job,
    history: Vec<AttemptRecord>,
    ready_at_ms: u64,
) -> Result<bool, QueueError> {
    let subject = job.subject();
    let seq = next_seq(t);
    let prev = t
        .pending
        .get(subject.as_str())
        .map_err(storage)?
        .map(|v| v.value().to_vec());
    let (mut job, mut history, mut ready_at_ms) = (job, history, ready_at_ms);
    let prev = match prev.map(|b| (decode::<PendingRecord>(&subject, &b), b)) {
        Some((Ok(p), _)) => Some(p),
        Some((Err(e), bytes)) => {
            // Its ready entry is left dangling; claims drop such entries.
            quarantine(t, &subject, &bytes, &e, now_ms())?;
            None
        }
        None => None,
    };
    let replaced = match prev {
        Some(p) => {
            t.ready
                .remove((p.job.kind.as_str(), p.ready_at_ms, p.seq))
                .map_err(storage)?;
            // Newest wins, but a failing object keeps its failures and its
            // backoff: a new change (often the handler's own status write)
            // must not turn retries into a storm or keep them from ending.
            if p.job.attempt > job.attempt {
                job.attempt = p.job.attempt;
                history = p.history;
                ready_at_ms = ready_at_ms.max(p.ready_at_ms);
            }
            true
        }
        None => false,
    };
    let kind = job.kind;
    let rec = PendingRecord {
        job,
        ready_at_ms,
        seq,
        history,
    };
    t.pending
        .insert(subject.as_str(), encode(&rec).as_slice())
        .map_err(storage)?;
    t.ready
        .insert((kind.as_str(), ready_at_ms, seq), subject.as_str())
        .map_err(storage)?;
    Ok(replaced)
}

fn publish(
    t: &mut Tables<'_>,
    job: &Job,
    now: u64,
    config: &EmbeddedConfig,
) -> Result<Published, QueueError> {
    let window = config.dedupe_window.as_millis() as u64;
    let id = job.dedupe_id();
    {
        let dedupe = &mut t.dedupe;
        let age = &mut t.dedupe_age;
        // Forget ids older than the window (a bounded number per publish).
        let cutoff = now.saturating_sub(window);
        let old: Vec<(u64, String)> = age
            .range((0u64, "")..(cutoff, ""))
            .map_err(storage)?
            .take(64)
            .filter_map(|r| r.ok().map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect();
        for (t, i) in old {
            age.remove((t, i.as_str())).map_err(storage)?;
            if dedupe
                .get(i.as_str())
                .map_err(storage)?
                .is_some_and(|v| v.value() == t)
            {
                dedupe.remove(i.as_str()).map_err(storage)?;
            }
        }
        if let Some(seen) = dedupe.get(id.as_str()).map_err(storage)?.map(|v| v.value())
            && now.saturating_sub(seen) < window
        {
            return Ok(Published::Duplicate);
        }
        dedupe.insert(id.as_str(), now).map_err(storage)?;
        age.insert((now, id.as_str()), ()).map_err(storage)?;
    }
    Ok(if enqueue(t, job.clone(), Vec::new(), now)? {
        Published::Coalesced
    } else {
        Published::Queued
    })
}

fn claim(
    t: &mut Tables<'_>,
    kind: JobKind,
    max: usize,
    now: u64,
    config: &EmbeddedConfig,
) -> Result<(Vec<Claim>, Option<u64>), QueueError> {
    let mut earliest_lease_end: Option<u64> = None;
    // Leases of dead workers come back: expired claims are pending again
    // (unless a newer job for the object is already pending).
    let expired: Vec<String> = {
        let ends = &t.lease_ends;
        let mut out = Vec::new();
        for row in ends
            .range((kind.as_str(), 0u64, "")..=(kind.as_str(), u64::MAX, "\u{10FFFF}"))
            .map_err(storage)?
        {
            let (k, _) = row.map_err(storage)?;
            let (_, end, subject) = k.value();
            if end > now {
                earliest_lease_end = Some(end);
                break;
            }
            out.push(subject.to_owned());
        }
        out
    };
    for subject in expired {
        let bytes = t
            .inflight
            .get(subject.as_str())
            .map_err(storage)?
            .map(|v| v.value().to_vec());
        let Some(bytes) = bytes else { continue };
        let lease: Lease = match decode(&subject, &bytes) {
            Ok(lease) => lease,
            Err(e) => {
                t.inflight.remove(subject.as_str()).map_err(storage)?;
                t.lease_ends
                    .retain(|k, _| k.2 != subject.as_str())
                    .map_err(storage)?;
                quarantine(t, &subject, &bytes, &e, now)?;
                continue;
            }
        };
        take_lease(t, &subject, &lease.claim_id)?;
        // A worker that died (or hung) mid-job counts as a failed attempt,
        // so a job that kills its workers ends in the dead letters.
        tracing::warn!(subject = %subject, job = %lease.job.id, "claim expired; the job counts a failed attempt");
        record_failure(
            t,
            lease.job,
            lease.history,
            "lease expired: the worker stopped renewing its claim".into(),
            now,
            config,
        )?;
    }
    let mut claims = Vec::new();
    let mut next_ready: Option<u64> = None;
    // Walk the ready index in order, a chunk at a time (the tables change
    // as jobs are claimed), skipping objects in flight.
    let mut after: Option<(u64, u64)> = None;
    'scan: loop {
        // Twice what is still wanted (some may be in flight), not more:
        // each entry read is decoded and copied.
        let want = (max.saturating_sub(claims.len()) * 2).clamp(8, 256);
        let chunk: Vec<((u64, u64), String)> = {
            let ready = &t.ready;
            let (from_at, from_seq) = after.map_or((0, 0), |(a, s)| (a, s.saturating_add(1)));
            ready
                .range((kind.as_str(), from_at, from_seq)..=(kind.as_str(), u64::MAX, u64::MAX))
                .map_err(storage)?
                .take(want)
                .map(|r| r.map(|(k, v)| ((k.value().1, k.value().2), v.value().to_owned())))
                .collect::<Result<_, _>>()
                .map_err(storage)?
        };
        if chunk.is_empty() {
            break;
        }
        for ((ready_at, seq), subject) in chunk {
            after = Some((ready_at, seq));
            if ready_at > now {
                next_ready = Some(ready_at);
                break 'scan;
            }
            if claims.len() >= max {
                break 'scan;
            }
            if claim_one(t, kind, ready_at, seq, &subject, now, config, &mut claims)? {
                let end = later(now, config.lease);
                earliest_lease_end = Some(earliest_lease_end.map_or(end, |e| e.min(end)));
            }
        }
    }
    // Waiters wake at the next ready time or the next lease end, whichever first.
    let wake = match (next_ready, earliest_lease_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok((claims, wake))
}

/// Claims the job at one ready-index entry unless its object is in flight.
#[allow(clippy::too_many_arguments)]
fn claim_one(
    t: &mut Tables<'_>,
    kind: JobKind,
    ready_at: u64,
    seq: u64,
    subject: &str,
    now: u64,
    config: &EmbeddedConfig,
    claims: &mut Vec<Claim>,
) -> Result<bool, QueueError> {
    // Exclusive: an object in flight waits for its claim to end.
    if t.inflight.get(subject).map_err(storage)?.is_some() {
        return Ok(false);
    }
    let bytes = t
        .pending
        .remove(subject)
        .map_err(storage)?
        .map(|v| v.value().to_vec());
    t.ready
        .remove((kind.as_str(), ready_at, seq))
        .map_err(storage)?;
    let Some(bytes) = bytes else {
        return Ok(false);
    };
    let rec: PendingRecord = match decode(subject, &bytes) {
        Ok(rec) => rec,
        Err(e) => {
            // One bad record must not block every claim of its kind.
            quarantine(t, subject, &bytes, &e, now)?;
            return Ok(false);
        }
    };
    let lease = Lease {
        claim_id: next_claim_id(),
        job: rec.job,
        history: rec.history,
        expires_at_ms: later(now, config.lease),
    };
    put_lease(t, subject, &lease)?;
    claims.push(Claim {
        job: lease.job,
        claim_id: lease.claim_id,
        history: lease.history,
    });
    Ok(true)
}

/// A claim id unique across processes and restarts: a random prefix per
/// process, then a counter (a uuid per claim cost a getrandom call each).
fn next_claim_id() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{n:x}")
}

fn put_lease(t: &mut Tables<'_>, subject: &str, lease: &Lease) -> Result<(), QueueError> {
    t.inflight
        .insert(subject, encode(lease).as_slice())
        .map_err(storage)?;
    t.lease_ends
        .insert((lease.job.kind.as_str(), lease.expires_at_ms, subject), ())
        .map_err(storage)?;
    Ok(())
}

/// Removes the lease on `subject` if it is `claim_id`'s.
fn take_lease(
    t: &mut Tables<'_>,
    subject: &str,
    claim_id: &str,
) -> Result<Option<Lease>, QueueError> {
    let inflight = &mut t.inflight;
    let bytes = inflight
        .get(subject)
        .map_err(storage)?
        .map(|v| v.value().to_vec());
    let Some(bytes) = bytes else { return Ok(None) };
    let lease: Lease = decode(subject, &bytes)?;
    if lease.claim_id != claim_id {
        return Ok(None);
    }
    inflight.remove(subject).map_err(storage)?;
    t.lease_ends
        .remove((lease.job.kind.as_str(), lease.expires_at_ms, subject))
        .map_err(storage)?;
    Ok(Some(lease))
}

/// Extends a lease; `false` when it is no longer this claim's (a normal
/// outcome, not an error, so it does not abort the batch).
fn renew(
    t: &mut Tables<'_>,
    subject: &str,
    claim_id: &str,
    now: u64,
    config: &EmbeddedConfig,
) -> Result<bool, QueueError> {
    let Some(mut lease) = take_lease(t, subject, claim_id)? else {
        return Ok(false);
    };
    lease.expires_at_ms = later(now, config.lease);
    put_lease(t, subject, &lease)?;
    Ok(true)
}

/// `now` plus `d`, saturating (a `RunAfter(Duration::MAX)` must not overflow).
fn later(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Moves a record that does not decode to the dead letters, bytes and
/// error kept, so the queue goes on around it.
fn quarantine(
    t: &mut Tables<'_>,
    subject: &str,
    bytes: &[u8],
    error: &QueueError,
    now: u64,
) -> Result<(), QueueError> {
    tracing::error!(subject = %subject, error = %error, "undecodable queue record moved to the dead letters");
    let d = DeadLetter::malformed(subject, bytes, error.to_string(), now);
    let key = format!("{now:020}/{}", d.job.id);
    t.dead
        .insert(key.as_str(), encode(&d).as_slice())
        .map_err(storage)?;
    Ok(())
}

fn dead_letter(
    t: &mut Tables<'_>,
    job: Job,
    error: String,
    history: Vec<AttemptRecord>,
    now: u64,
) -> Result<(), QueueError> {
    tracing::warn!(job = %job.id, kind = %job.kind, object = %job.object_key(), error = %error, "job dead-lettered");
    let key = format!("{now:020}/{}", job.id);
    let d = DeadLetter {
        job,
        error,
        history,
        dead_at_ms: now,
        raw: None,
    };
    t.dead
        .insert(key.as_str(), encode(&d).as_slice())
        .map_err(storage)?;
    Ok(())
}

fn finish(
    t: &mut Tables<'_>,
    c: Claim,
    outcome: Outcome,
    now: u64,
    config: &EmbeddedConfig,
) -> Result<Finished, QueueError> {
    let subject = c.job.subject();
    let Some(lease) = take_lease(t, &subject, &c.claim_id)? else {
        return Ok(Finished::LeaseLost);
    };
    let newer_pending = t.pending.get(subject.as_str()).map_err(storage)?.is_some();
    let (job, mut history) = (lease.job, lease.history);
    match outcome {
        Outcome::Done => Ok(Finished::Settled),
        Outcome::RunAfter(d) => {
            // A newer pending job already makes the object run again.
            if !newer_pending {
                enqueue(t, job, history, later(now, d))?;
            }
            Ok(Finished::Settled)
        }
        Outcome::Retry(error) => record_failure(t, job, history, error, now, config),
        Outcome::DeadLetter(error) => {
            history.push(AttemptRecord {
                at_ms: now,
                error: error.clone(),
            });
            dead_letter(t, job, error, history, now)?;
            Ok(Finished::DeadLettered)
        }
    }
}

/// Counts a failed attempt: retry after the policy's delay, or dead-letter
/// at its limit. A newer pending job for the object keeps its content but
/// takes over the failures and the backoff, so changes cannot reset them.
fn record_failure(
    t: &mut Tables<'_>,
    mut job: Job,
    mut history: Vec<AttemptRecord>,
    error: String,
    now: u64,
    config: &EmbeddedConfig,
) -> Result<Finished, QueueError> {
    history.push(AttemptRecord {
        at_ms: now,
        error: error.clone(),
    });
    job.attempt += 1;
    let policy = (config.policy)(job.kind);
    let subject = job.subject();
    let newer = t
        .pending
        .get(subject.as_str())
        .map_err(storage)?
        .map(|v| v.value().to_vec());
    let newer: Option<PendingRecord> = newer.map(|b| decode(&subject, &b)).transpose()?;
    let exhausted = job.attempt >= policy.max_attempts.max(1);
    let delay = policy.delay(job.attempt);
    let attempt = job.attempt;
    let result = if exhausted {
        dead_letter(t, job, error, history.clone(), now)?;
        Finished::DeadLettered
    } else if newer.is_none() {
        enqueue(t, job, history.clone(), later(now, delay))?;
        Finished::Retrying(delay)
    } else {
        Finished::Retrying(delay)
    };
    if let Some(p) = newer {
        let mut next = p.job;
        next.attempt = attempt;
        enqueue(t, next, history, p.ready_at_ms.max(later(now, delay)))?;
    }
    Ok(result)
}

fn replay(t: &mut Tables<'_>, selector: &JobSelector, now: u64) -> Result<usize, QueueError> {
    let matching: Vec<(String, DeadLetter)> = {
        let dead = &t.dead;
        let mut out = Vec::new();
        for row in dead.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let d: DeadLetter = decode(k.value(), v.value())?;
            // A malformed record's dead letter has no job to run again.
            if d.raw.is_none() && selector.matches(&d.job) {
                out.push((k.value().to_owned(), d));
            }
        }
        out
    };
    let mut replayed = 0;
    for (key, d) in &matching {
        // A newer pending job for the object already runs it (newest wins);
        // the dead letter stays for the record.
        let pending = t
            .pending
            .get(d.job.subject().as_str())
            .map_err(storage)?
            .is_some();
        if pending {
            continue;
        }
        t.dead.remove(key.as_str()).map_err(storage)?;
        let mut job = d.job.clone();
        job.attempt = 0;
        job.cause.change = Change::Replay;
        enqueue(t, job, Vec::new(), now)?;
        replayed += 1;
    }
    Ok(replayed)
}

fn purge(t: &mut Tables<'_>, scope: PurgeScope) -> Result<usize, QueueError> {
    let mut n = 0;
    if matches!(scope, PurgeScope::Pending | PurgeScope::All) {
        let pending = &mut t.pending;
        n += pending.len().map_err(storage)? as usize;
        pending.retain(|_, _| false).map_err(storage)?;
        t.ready.retain(|_, _| false).map_err(storage)?;
    }
    if matches!(scope, PurgeScope::Dead | PurgeScope::All) {
        let dead = &mut t.dead;
        n += dead.len().map_err(storage)? as usize;
        dead.retain(|_, _| false).map_err(storage)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::job;

    /// A record another drover version (or a bug) wrote, which this one
    /// cannot read, is moved to the dead letters instead of failing every
    /// claim of its kind and every publish to its object.
    #[tokio::test]
    async fn undecodable_records_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let bad = job(JobKind::Bootstrap, "bad", 1).subject();
        let other = job(JobKind::Bootstrap, "other", 1).subject();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            for subject in [&bad, &other] {
                txn.open_table(PENDING)
                    .unwrap()
                    .insert(subject.as_str(), b"{\"from\": \"the future\"}".as_slice())
                    .unwrap();
            }
            txn.open_table(READY)
                .unwrap()
                .insert(("bootstrap", 0u64, 0u64), bad.as_str())
                .unwrap();
            txn.commit().unwrap();
        }
        let q = EmbeddedQueue::open(&path, EmbeddedConfig::default()).unwrap();
        // A publish onto the second bad record replaces it.
        assert_eq!(
            q.publish(&job(JobKind::Bootstrap, "other", 2))
                .await
                .unwrap(),
            Published::Queued
        );
        q.publish(&job(JobKind::Bootstrap, "good", 1))
            .await
            .unwrap();
        let claims = q
            .claim(JobKind::Bootstrap, 10, Duration::ZERO)
            .await
            .unwrap();
        let mut names: Vec<_> = claims.iter().map(|c| c.job.object.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["good", "other"]);
        let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(
            dead.iter()
                .all(|d| d.raw.as_deref() == Some("{\"from\": \"the future\"}"))
        );
        assert!(dead.iter().any(|d| d.job.object.name == "bad"));
        assert!(dead[0].error.contains("malformed"), "{}", dead[0].error);
        assert_eq!(q.replay(&JobSelector::all()).await.unwrap(), 0);
    }
}
