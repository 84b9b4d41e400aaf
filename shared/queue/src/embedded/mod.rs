//! The embedded backend: a redb file, for `drover up` and single-process
//! use.
//!
//! One writer thread owns the queue's state in memory ([`state`]) and
//! applies every operation to it; each batch of operations queued
//! meanwhile ends with one transaction that writes the rows they changed
//! and commits (group commit, `Durability::Immediate`). Only then are the
//! callers answered, so a publish returns once it is on disk and many
//! publishes share a fsync. If a write fails, every operation of its batch
//! gets the error, and the file is opened again ([`file`]) and the state
//! read back from it, so memory never runs ahead of the disk and the queue
//! comes back when the disk does.
//!
//! Tables:
//! - `objects`: subject → row ([`record`]): the object's pending job, its
//!   claim, or both. The ready order, lease ends and dedupe ages are
//!   indexes in memory, rebuilt from the rows at open, so a job costs three
//!   row writes (publish, claim, finish) and a publish id.
//! - `publish_ids`: publish id → when it was seen (the dedupe window).
//! - `dead`: time/id → dead letter (JSON).
//!
//! Files of the earlier layout (a table per index) are moved to this one
//! when they open ([`legacy`]).

mod file;
mod legacy;
mod record;
mod state;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_shared::jobs::{Job, JobKind, parse_subject};
use redb::{Database, ReadableDatabase as _, ReadableTable, TableDefinition};
use serde::Deserialize;
use tokio::sync::{Notify, oneshot};

use self::file::{Opener, QueueFile};
use self::state::{Claimed, NewJob, Settings, State};
use self::writer::{Op, Reply};
use crate::model::{
    Claim, DeadLetter, Finished, JobSelector, Outcome, Published, PurgeScope, QueueStats,
};
use crate::{JobQueue, QueueError, RetryPolicy};

/// Byte keys: redb compares `&str` keys after a UTF-8 check of both sides,
/// which was a tenth of the writer's time.
const OBJECTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("objects");
const PUBLISH_IDS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("publish_ids");
const DEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("dead");

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

impl EmbeddedConfig {
    fn settings(&self) -> Settings {
        Settings {
            lease: self.lease,
            dedupe_window: self.dedupe_window,
            policy: self.policy,
        }
    }
}

/// The redb-backed queue. Clones share one queue; the threads behind it
/// stop when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
}

struct Shared {
    file: Arc<QueueFile>,
    ops: std_mpsc::Sender<Op>,
    /// One per job kind: a publish or finish wakes one claimer of its kind
    /// (waking them all made every idle claimer scan the queue per job).
    wake: [Notify; JobKind::ALL.len()],
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The committer holds a sender too, so the applier cannot wait for
        // the channel to close.
        let _ = self.ops.send(Op::Shutdown);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn storage<E: Into<redb::Error>>(e: E) -> QueueError {
    QueueError::Storage(e.into())
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

/// A claim as the writer made it, decoded (on the caller's thread).
fn claim_of(c: Claimed) -> Result<Claim, QueueError> {
    let mut job: Job = decode("claimed job", &c.job)?;
    job.attempt = c.attempt;
    Ok(Claim {
        job,
        claim_id: c.claim_id,
        history: c.history,
    })
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file at `path`: reads every row into
    /// memory, moving records that do not decode to the dead letters and
    /// an earlier layout's tables to this one.
    pub fn open(path: &Path, config: EmbeddedConfig) -> Result<Self, QueueError> {
        let path = path.to_owned();
        Self::open_with(Box::new(move || Database::create(&path)), config)
    }

    fn open_with(opener: Opener, config: EmbeddedConfig) -> Result<Self, QueueError> {
        let file = Arc::new(QueueFile::open(opener)?);
        let state = load(&*file.get()?, &config.settings())?;
        let ops = writer::start(file.clone(), config.settings(), state)?;
        Ok(Self {
            shared: Arc::new(Shared {
                file,
                ops,
                wake: std::array::from_fn(|_| Notify::new()),
            }),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .ops
            .send(make(tx))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let db = self.shared.file.get()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| QueueError::Closed)?
    }
}

impl JobQueue for EmbeddedQueue {
    async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
        // Encoded here, on the caller's thread: the writer only copies it.
        let new = NewJob {
            subject: job.subject().into(),
            kind: job.kind,
            dedupe_id: job.dedupe_id(),
            attempt: job.attempt,
            job: serde_json::to_vec(job).expect("jobs serialize").into(),
        };
        let out = self.call(|r| Op::Publish(new, r)).await?;
        self.shared.wake[job.kind as usize].notify_one();
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
            let woken = self.shared.wake[kind as usize].notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (claims, next_ms) = self.call(|r| Op::Claim(kind, max.max(1), r)).await?;
            let now = tokio::time::Instant::now();
            if !claims.is_empty() || now >= deadline {
                return claims.into_iter().map(claim_of).collect();
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
        if self.call(|r| Op::Renew(subject.clone(), id, r)).await? {
            Ok(())
        } else {
            Err(QueueError::LeaseLost(subject))
        }
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<Finished, QueueError> {
        let kind = claim.job.kind;
        let subject = claim.job.subject();
        let out = self
            .call(|r| Op::Finish(subject, claim.claim_id, claim.job.id, outcome, r))
            .await?;
        // A newer job of the object may be claimable now.
        self.shared.wake[kind as usize].notify_one();
        Ok(out)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let counts = self.call(Op::Counts).await?;
        let mut stats = self
            .read(|db| {
                let txn = db.begin_read().map_err(storage)?;
                let mut stats = QueueStats::default();
                if let Ok(t) = txn.open_table(DEAD) {
                    for row in t.iter().map_err(storage)? {
                        let (k, v) = row.map_err(storage)?;
                        let d = stored_dead_letter(k.value(), v.value());
                        *stats.dead.entry(d.job.kind.to_string()).or_default() += 1;
                    }
                }
                Ok(stats)
            })
            .await?;
        for (kind, (pending, in_flight, _)) in JobKind::ALL.iter().zip(counts) {
            if pending > 0 {
                stats.pending.insert(kind.to_string(), pending as u64);
            }
            if in_flight > 0 {
                stats.in_flight.insert(kind.to_string(), in_flight as u64);
            }
        }
        Ok(stats)
    }

    async fn depth(&self) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        let counts = self.call(Op::Counts).await?;
        Ok(JobKind::ALL
            .iter()
            .zip(counts)
            .map(|(k, (_, _, ready))| (k.as_str().to_owned(), ready as u64))
            .collect())
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
                let d = stored_dead_letter(k.value(), v.value());
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
        for w in self.shared.wake.iter() {
            w.notify_waiters();
        }
        Ok(n)
    }

    async fn purge(&self, scope: PurgeScope) -> Result<usize, QueueError> {
        self.call(|r| Op::Purge(scope, r)).await
    }
}

/// The dead letter in a row of `dead` (keyed `time/id`), or a malformed
/// one that shows the row's bytes.
fn stored_dead_letter(key: &str, bytes: &[u8]) -> DeadLetter {
    let (at, id) = key.split_once('/').unwrap_or(("0", key));
    DeadLetter::stored(id, None, bytes, at.parse().unwrap_or(0))
}

/// Reads the file into memory (see [`EmbeddedQueue::open`]).
fn load(db: &Database, s: &Settings) -> Result<State, QueueError> {
    let now = now_ms();
    let txn = db.begin_write().map_err(storage)?;
    let mut state = State::default();
    {
        let mut objects = txn.open_table(OBJECTS).map_err(storage)?;
        let mut ids = txn.open_table(PUBLISH_IDS).map_err(storage)?;
        let mut dead = txn.open_table(DEAD).map_err(storage)?;
        legacy::migrate(&txn, &mut objects, &mut ids, &mut dead, now)?;
        let mut bad = Vec::new();
        for row in objects.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            match read_row(k.value(), v.value()) {
                Ok((subject, kind, row)) => state.load_row(subject.into(), kind, row),
                Err(why) => bad.push((k.value().to_vec(), v.value().to_vec(), why)),
            }
        }
        for (key, bytes, why) in bad {
            // One bad row must not block every claim of its kind.
            let subject = String::from_utf8_lossy(&key).into_owned();
            tracing::error!(subject = %subject, error = %why, "undecodable queue record moved to the dead letters");
            let error = format!("queue record {subject:?} is malformed: {why}");
            let d = DeadLetter::malformed(&subject, &bytes, error, now);
            let json = serde_json::to_vec(&d).expect("dead letters serialize");
            dead.insert(state::dead_key(now, &d.job.id).as_str(), json.as_slice())
                .map_err(storage)?;
            objects.remove(key.as_slice()).map_err(storage)?;
        }
        for subject in state.loaded() {
            if let Some(row) = state.row(&subject) {
                tracing::warn!(subject = %subject, "queue row shared its ready time and sequence with another; given a new sequence");
                let mut buf = Vec::new();
                record::encode(row, &mut buf);
                objects
                    .insert(subject.as_bytes(), buf.as_slice())
                    .map_err(storage)?;
            }
        }
        // Publish ids: forget those past the window, keep the rest in time order.
        let cutoff = now.saturating_sub(state::later(0, s.dedupe_window));
        let mut seen = Vec::new();
        let mut old = Vec::new();
        for row in ids.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            if v.value() < cutoff {
                old.push(k.value().to_vec());
            } else {
                seen.push((String::from_utf8_lossy(k.value()).into_owned(), v.value()));
            }
        }
        for key in old {
            ids.remove(key.as_slice()).map_err(storage)?;
        }
        seen.sort_by_key(|(_, at)| *at);
        for (id, at) in seen {
            state.load_dedupe(id.into(), at);
        }
    }
    txn.commit().map_err(storage)?;
    Ok(state)
}

/// One row of `objects`, checked: its subject names a kind, and its jobs decode.
fn read_row(key: &[u8], bytes: &[u8]) -> Result<(String, JobKind, record::ObjectRow), String> {
    let subject = std::str::from_utf8(key).map_err(|_| "its key is not UTF-8".to_owned())?;
    let kind = parse_subject(subject)
        .ok_or_else(|| "its key is not a job subject".to_owned())?
        .kind;
    let row = record::decode(bytes).map_err(|e| e.to_string())?;
    for job in [
        row.pending.as_ref().map(|p| &p.job),
        row.held.as_ref().map(|h| &h.job),
    ]
    .into_iter()
    .flatten()
    {
        serde_json::from_slice::<Job>(job).map_err(|e| format!("its job: {e}"))?;
    }
    Ok((subject.to_owned(), kind, row))
}

#[cfg(test)]
mod tests {
    use drover_shared::jobs::Change;

    use super::*;
    use crate::conformance::job;
    use crate::model::Finished;

    fn names(q: &[Claim]) -> Vec<&str> {
        let mut names: Vec<_> = q.iter().map(|c| c.job.object.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// A dead letter that does not decode is listed and counted under its
    /// id, does not stop the others from being listed or replayed, and
    /// purge removes it.
    #[tokio::test]
    async fn a_dead_letter_that_does_not_decode_is_listed_and_can_be_purged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let good = crate::conformance::good_dead_letter();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(DEAD).unwrap();
                let key = state::dead_key(1, &good.job.id);
                t.insert(key.as_str(), serde_json::to_vec(&good).unwrap().as_slice())
                    .unwrap();
                t.insert(
                    state::dead_key(7, "from-the-future").as_str(),
                    br#"{"v": 9, "job": {"kind": "bootstrap", "cluster": "c9"}}"#.as_slice(),
                )
                .unwrap();
            }
            txn.commit().unwrap();
        }
        let q = EmbeddedQueue::open(&path, EmbeddedConfig::default()).unwrap();
        let bad = crate::conformance::an_undecodable_dead_letter_is_listed_and_purgeable(
            &q,
            "from-the-future",
        )
        .await;
        assert_eq!(bad.dead_at_ms, 7, "the time in its key");
    }

    /// A row another drover version (or a bug) wrote, which this one
    /// cannot read, is moved to the dead letters when the file opens,
    /// instead of failing every claim of its kind and every publish to its
    /// object.
    #[tokio::test]
    async fn undecodable_rows_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let bad = job(JobKind::Bootstrap, "bad", 1).subject();
        let other = job(JobKind::Bootstrap, "other", 1).subject();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(OBJECTS).unwrap();
                for key in [bad.as_bytes(), other.as_bytes(), b"not.a.subject"] {
                    t.insert(key, b"{\"from\": \"the future\"}".as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let q = EmbeddedQueue::open(&path, EmbeddedConfig::default()).unwrap();
        // The second bad row is gone: a publish to its object is new.
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
        assert_eq!(names(&claims), ["good", "other"]);
        let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
        assert_eq!(dead.len(), 3, "{dead:?}");
        assert!(
            dead.iter()
                .all(|d| d.raw.as_deref() == Some("{\"from\": \"the future\"}"))
        );
        assert!(dead.iter().any(|d| d.job.object.name == "bad"));
        assert!(
            dead.iter().all(|d| d.error.contains("malformed")),
            "{dead:?}"
        );
        assert!(
            dead.iter().any(|d| d.error.contains("not a job subject")),
            "{dead:?}"
        );
        assert_eq!(q.replay(&JobSelector::all()).await.unwrap(), 0);
    }

    /// A file of the earlier layout (a table per index, JSON rows) opens
    /// with its pending jobs, claims, publish ids and dead letters, and
    /// without the old tables.
    #[tokio::test]
    async fn files_of_the_earlier_layout_move_over() {
        const PENDING: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pending");
        const READY: TableDefinition<'_, (&str, u64, u64), &str> = TableDefinition::new("ready");
        const INFLIGHT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inflight");
        const DEDUPE: TableDefinition<'_, &str, u64> = TableDefinition::new("dedupe");
        const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let kept = job(JobKind::Bootstrap, "kept", 1);
        let held = job(JobKind::Bootstrap, "held", 1);
        let seen = job(JobKind::Bootstrap, "seen", 1);
        let now = now_ms();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut pending = txn.open_table(PENDING).unwrap();
                let rec =
                    serde_json::json!({"job": kept, "ready_at_ms": 0, "seq": 7, "history": []});
                pending
                    .insert(
                        kept.subject().as_str(),
                        serde_json::to_vec(&rec).unwrap().as_slice(),
                    )
                    .unwrap();
                pending
                    .insert(
                        job(JobKind::Bootstrap, "bad", 1).subject().as_str(),
                        b"{".as_slice(),
                    )
                    .unwrap();
                let lease = serde_json::json!({
                    "claim_id": "old", "job": held, "history": [], "expires_at_ms": 0,
                });
                txn.open_table(INFLIGHT)
                    .unwrap()
                    .insert(
                        held.subject().as_str(),
                        serde_json::to_vec(&lease).unwrap().as_slice(),
                    )
                    .unwrap();
                txn.open_table(READY)
                    .unwrap()
                    .insert(("bootstrap", 0u64, 7u64), kept.subject().as_str())
                    .unwrap();
                txn.open_table(DEDUPE)
                    .unwrap()
                    .insert(seen.dedupe_id().as_str(), now)
                    .unwrap();
                txn.open_table(META).unwrap().insert("seq", 7).unwrap();
            }
            txn.commit().unwrap();
        }
        fn once(_: JobKind) -> RetryPolicy {
            RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::for_kind(JobKind::Bootstrap)
            }
        }
        let config = EmbeddedConfig {
            policy: once,
            ..EmbeddedConfig::default()
        };
        {
            let q = EmbeddedQueue::open(&path, config.clone()).unwrap();
            assert_eq!(q.publish(&seen).await.unwrap(), Published::Duplicate);
            // The claim returns the pending job; the expired one of the
            // earlier layout counts its failure (here: the last allowed).
            let claims = q
                .claim(JobKind::Bootstrap, 10, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(names(&claims), ["kept"]);
            let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
            let mut why: Vec<_> = dead
                .iter()
                .map(|d| (d.job.object.name.as_str(), d.raw.is_some()))
                .collect();
            why.sort_unstable();
            assert_eq!(why, [("bad", true), ("held", false)], "{dead:?}");
        }
        // The writer thread lets go of the file once it sees the queue gone.
        let db = (0..100)
            .find_map(|_| {
                Database::open(&path)
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                    .ok()
            })
            .expect("the queue file reopens");
        let txn = db.begin_read().unwrap();
        let mut tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_owned())
            .collect();
        tables.sort_unstable();
        assert_eq!(tables, ["dead", "objects", "publish_ids"]);
    }

    /// A replay runs alone, after the batches before it: operations that
    /// arrive while it waits are held, then applied, none lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_among_many_publishes_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap();
        q.publish(&job(JobKind::Bootstrap, "failed", 1))
            .await
            .unwrap();
        let c = q
            .claim(JobKind::Bootstrap, 1, Duration::ZERO)
            .await
            .unwrap();
        q.finish(c[0].clone(), Outcome::DeadLetter("bad".into()))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..400 {
            let publisher = q.clone();
            tasks.spawn(async move {
                let name = format!("p{i}");
                publisher
                    .publish(&job(JobKind::Noop, &name, 1))
                    .await
                    .map(|p| (i, p))
            });
            if i == 200 {
                let q = q.clone();
                tasks.spawn(async move {
                    let n = q.replay(&JobSelector::all()).await?;
                    Ok((
                        usize::MAX,
                        if n == 1 {
                            Published::Queued
                        } else {
                            Published::Duplicate
                        },
                    ))
                });
            }
        }
        let mut answered = 0;
        while let Some(r) = tasks.join_next().await {
            let (i, p) = r.unwrap().unwrap();
            assert_eq!(p, Published::Queued, "operation {i}");
            answered += 1;
        }
        assert_eq!(answered, 401);
        let noop = q.claim(JobKind::Noop, 1000, Duration::ZERO).await.unwrap();
        assert_eq!(noop.len(), 400);
        let again = q
            .claim(JobKind::Bootstrap, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(names(&again), ["failed"]);
        assert_eq!(again[0].job.cause.change, Change::Replay);
        assert!(
            q.dead_letters(&JobSelector::all())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(q.purge(PurgeScope::All).await.unwrap(), 0);
    }

    /// Attempt counts come from publishers and the file: the largest one
    /// dead-letters at its next failure, and the queue goes on.
    #[tokio::test]
    async fn the_largest_attempt_count_fails_safely() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(&dir.path().join("q.redb"), EmbeddedConfig::default()).unwrap();
        let mut j = job(JobKind::Bootstrap, "worn", 1);
        j.attempt = u32::MAX;
        q.publish(&j).await.unwrap();
        let c = q
            .claim(JobKind::Bootstrap, 1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(c[0].job.attempt, u32::MAX);
        assert_eq!(
            q.finish(c[0].clone(), Outcome::Retry("again".into()))
                .await
                .unwrap(),
            Finished::DeadLettered
        );
        let dead = q.dead_letters(&JobSelector::all()).await.unwrap();
        assert_eq!(dead[0].job.attempt, u32::MAX);
        q.publish(&job(JobKind::Bootstrap, "next", 1))
            .await
            .unwrap();
    }

    /// Two rows with one ready time and sequence (not a file this queue
    /// writes) each keep their own place in the ready order.
    #[tokio::test]
    async fn rows_that_share_a_sequence_both_stay_claimable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(OBJECTS).unwrap();
                for name in ["a", "b"] {
                    let j = job(JobKind::Bootstrap, name, 1);
                    let row = record::ObjectRow {
                        pending: Some(record::PendingJob {
                            ready_at_ms: 0,
                            seq: 5,
                            attempt: 0,
                            job: serde_json::to_vec(&j).unwrap().into(),
                            history: Vec::new(),
                        }),
                        held: None,
                    };
                    let mut buf = Vec::new();
                    record::encode(&row, &mut buf);
                    t.insert(j.subject().as_bytes(), buf.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let q = EmbeddedQueue::open(&path, EmbeddedConfig::default()).unwrap();
        assert_eq!(q.stats().await.unwrap().pending["bootstrap"], 2);
        q.publish(&job(JobKind::Bootstrap, "a", 2)).await.unwrap();
        let c = q
            .claim(JobKind::Bootstrap, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(names(&c), ["a", "b"]);
    }

    /// Old tables beside a row of today's layout (a downgrade, then this
    /// version again): the row keeps its claim and takes only the half it
    /// lacks.
    #[tokio::test]
    async fn old_tables_beside_new_rows_do_not_replace_them() {
        const PENDING: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pending");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let config = EmbeddedConfig::default();
        let reopen = || {
            (0..100)
                .find_map(|_| {
                    EmbeddedQueue::open(&path, config.clone())
                        .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                        .ok()
                })
                .expect("the queue file reopens")
        };
        let old = job(JobKind::Bootstrap, "x", 1);
        {
            let q = reopen();
            q.publish(&job(JobKind::Bootstrap, "x", 9)).await.unwrap();
            let c = q
                .claim(JobKind::Bootstrap, 1, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(c[0].job.cause.resource_version, "9");
        }
        {
            let db = (0..100)
                .find_map(|_| {
                    Database::open(&path)
                        .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                        .ok()
                })
                .expect("the queue file reopens");
            let txn = db.begin_write().unwrap();
            let rec = serde_json::json!({"job": old, "ready_at_ms": 0, "seq": 1, "history": []});
            txn.open_table(PENDING)
                .unwrap()
                .insert(
                    old.subject().as_str(),
                    serde_json::to_vec(&rec).unwrap().as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let q = reopen();
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.in_flight["bootstrap"], 1, "{stats:?}");
        assert_eq!(stats.pending["bootstrap"], 1, "{stats:?}");
    }
}
