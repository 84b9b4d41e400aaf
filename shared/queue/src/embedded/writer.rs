//! The two threads behind an embedded queue, and the operations they take.
//!
//! - The **applier** owns the [`State`]. It applies each operation in
//!   memory as it arrives and keeps its answer.
//! - The **committer** writes what a batch of operations changed in one
//!   redb transaction, commits it (`Durability::Immediate`: one fsync), and
//!   only then sends the batch's answers.
//!
//! They overlap: while one batch's fsync runs, the applier applies the
//! operations that arrive meanwhile, and hands them over as the next batch
//! once the committer is free (waiting a little for the last batch's
//! callers, see [`Applier::next_for_batch`]). Batches commit in order, and
//! no answer is sent before its batch is on disk, so callers see what they
//! would see if every operation committed alone.
//!
//! If a commit fails (or panics), its batch and the operations applied
//! since are answered with the error, and the file is opened again and the
//! state read back from it ([`super::file`]), so memory never stays ahead
//! of the disk and a disk that recovers brings the queue back. Replays and purges read the
//! dead-letter table, so they run alone, after everything before them is
//! on disk.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use drover_shared::jobs::{Change, JobKind};
use redb::{Database, ReadableTable, ReadableTableMetadata as _, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::file::QueueFile;
use super::state::{Changes, Claimed, NewJob, Settings, State};
use super::{DEAD, OBJECTS, PUBLISH_IDS, load, now_ms, record, storage, stored_dead_letter};
use crate::QueueError;
use crate::model::{Finished, JobSelector, Outcome, Published, PurgeScope};

pub(super) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// Per kind: (pending, in flight, ready now).
pub(super) type Counts = Vec<(usize, usize, usize)>;

/// What the queue's handles ask of the applier (and what the committer
/// tells it).
pub(super) enum Op {
    Publish(NewJob, Reply<Published>),
    Claim(JobKind, usize, Reply<(Vec<Claimed>, Option<u64>)>),
    Renew(String, String, Reply<bool>),
    /// Subject, claim id, job id, outcome.
    Finish(String, String, String, Outcome, Reply<Finished>),
    Replay(JobSelector, Reply<usize>),
    Purge(PurgeScope, Reply<usize>),
    Counts(Reply<Counts>),
    /// From the committer: the last batch is done (`Some`: it failed, why).
    Committed(Option<String>),
    /// The last handle is gone: finish what is queued and stop.
    Shutdown,
}

/// At most this many operations per batch.
const MAX_BATCH: usize = 1024;
/// How long a batch may wait for callers still on their way (see
/// [`Applier::next_for_batch`]).
const LINGER: Duration = Duration::from_micros(300);

fn failed_write(msg: &str) -> QueueError {
    storage(std::io::Error::other(msg.to_owned()))
}

impl Op {
    /// Answers with an error, unapplied.
    fn fail(self, msg: &str) {
        match self {
            Op::Publish(_, tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Claim(_, _, tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Renew(_, _, tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Finish(_, _, _, _, tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Replay(_, tx) | Op::Purge(_, tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Counts(tx) => drop(tx.send(Err(failed_write(msg)))),
            Op::Committed(_) | Op::Shutdown => {}
        }
    }
}

/// An answer kept until its batch is committed.
trait Answer: Send {
    /// Sends the result, or `failed` if the batch was not written.
    fn send(self: Box<Self>, failed: Option<&str>);
}

struct Deferred<T>(Reply<T>, T);

impl<T: Send> Answer for Deferred<T> {
    fn send(self: Box<Self>, failed: Option<&str>) {
        let _ = self.0.send(match failed {
            Some(msg) => Err(failed_write(msg)),
            None => Ok(self.1),
        });
    }
}

fn defer<T: Send + 'static>(tx: Reply<T>, v: T) -> Box<dyn Answer> {
    Box::new(Deferred(tx, v))
}

/// What one transaction writes.
#[derive(Default)]
struct Writes {
    /// Object rows in key order: the new row, or `None` to delete it.
    rows: Vec<(Arc<str>, Option<Vec<u8>>)>,
    ids_forgotten: Vec<Arc<str>>,
    ids_seen: Vec<(Arc<str>, u64)>,
    dead: Vec<(String, Vec<u8>)>,
}

impl Writes {
    /// The rows `ch` names, as they are in `st` now.
    fn of(st: &State, mut ch: Changes) -> Self {
        // In key order: neighbouring rows share B-tree pages.
        ch.objects.sort_unstable();
        ch.objects.dedup();
        let rows = ch
            .objects
            .into_iter()
            .map(|subject| {
                let row = st.row(&subject).map(|row| {
                    let mut buf = Vec::with_capacity(128);
                    record::encode(row, &mut buf);
                    buf
                });
                (subject, row)
            })
            .collect();
        ch.dedupe_seen.sort_unstable();
        Self {
            rows,
            ids_forgotten: ch.dedupe_forgotten,
            ids_seen: ch.dedupe_seen,
            dead: ch.dead,
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.ids_forgotten.is_empty()
            && self.ids_seen.is_empty()
            && self.dead.is_empty()
    }

    fn write(&self, txn: &WriteTransaction) -> Result<(), QueueError> {
        if !self.rows.is_empty() {
            let mut t = txn.open_table(OBJECTS).map_err(storage)?;
            for (subject, row) in &self.rows {
                match row {
                    Some(bytes) => t.insert(subject.as_bytes(), bytes.as_slice()),
                    None => t.remove(subject.as_bytes()).map(|_| None),
                }
                .map_err(storage)?;
            }
        }
        if !self.ids_forgotten.is_empty() || !self.ids_seen.is_empty() {
            let mut t = txn.open_table(PUBLISH_IDS).map_err(storage)?;
            // Forgotten first: an id forgotten and seen again stays.
            for id in &self.ids_forgotten {
                t.remove(id.as_bytes()).map_err(storage)?;
            }
            for (id, at) in &self.ids_seen {
                t.insert(id.as_bytes(), *at).map_err(storage)?;
            }
        }
        if !self.dead.is_empty() {
            let mut t = txn.open_table(DEAD).map_err(storage)?;
            for (key, json) in &self.dead {
                t.insert(key.as_str(), json.as_slice()).map_err(storage)?;
            }
        }
        Ok(())
    }
}

/// A batch for the committer.
struct Work {
    /// Let go before the answers are sent: a reopen waits for it.
    db: Arc<Database>,
    writes: Writes,
    answers: Vec<Box<dyn Answer>>,
}

/// Starts both threads; returns the applier's inbox.
pub(super) fn start(
    file: Arc<QueueFile>,
    s: Settings,
    state: State,
) -> Result<std_mpsc::Sender<Op>, QueueError> {
    let (ops, rx) = std_mpsc::channel();
    let (work_tx, work_rx) = std_mpsc::channel::<Work>();
    let back = ops.clone();
    let spawn_failed = |e| storage(redb::StorageError::Io(e));
    let committer = std::thread::Builder::new()
        .name("drover-queue-commit".into())
        .spawn(move || commit_batches(&work_rx, &back))
        .map_err(spawn_failed)?;
    std::thread::Builder::new()
        .name("drover-queue-apply".into())
        .spawn(move || {
            Applier {
                file: &file,
                s,
                rx: &rx,
                work: Some(work_tx),
                state: Some(state),
                open: Changes::default(),
                answers: Vec::new(),
                busy: false,
                held: VecDeque::new(),
                closing: false,
                idle_since: Instant::now(),
                callers: 0,
            }
            .run();
            // The committer ends once its inbox is closed (in `run`).
            let _ = committer.join();
        })
        .map_err(spawn_failed)?;
    Ok(ops)
}

/// The committer thread.
fn commit_batches(rx: &std_mpsc::Receiver<Work>, back: &std_mpsc::Sender<Op>) {
    while let Ok(Work {
        db,
        writes,
        answers,
    }) = rx.recv()
    {
        // A panic (in redb, or ours) fails the batch like an I/O error
        // would; the thread goes on, so later batches are not left waiting.
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if writes.is_empty() {
                return Ok(());
            }
            db.begin_write().map_err(storage).and_then(|txn| {
                writes.write(&txn)?;
                txn.commit().map_err(storage)
            })
        }));
        drop(db);
        let failed = match committed {
            Ok(Ok(())) => None,
            Ok(Err(QueueError::Storage(e))) => Some(e.to_string()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!("the commit panicked: {}", panic_message(&*panic))),
        };
        if let Some(msg) = &failed {
            tracing::error!(error = %msg, "queue: a batch could not be written; opening the file again");
        }
        for a in answers {
            a.send(failed.as_deref());
        }
        if back.send(Op::Committed(failed)).is_err() {
            return;
        }
    }
}

/// The error for a panic caught around redb.
fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> QueueError {
    failed_write(&format!("{what} panicked: {}", panic_message(panic)))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// The applier thread's state.
struct Applier<'a> {
    file: &'a QueueFile,
    s: Settings,
    rx: &'a std_mpsc::Receiver<Op>,
    /// The committer's inbox (`None` once closed).
    work: Option<std_mpsc::Sender<Work>>,
    /// `None` after a failed write, until the file is opened and read again.
    state: Option<State>,
    /// What the operations applied since the last hand-over changed...
    open: Changes,
    /// ...and their answers.
    answers: Vec<Box<dyn Answer>>,
    /// The committer is writing a batch.
    busy: bool,
    /// Operations that arrived while a replay or purge waited its turn.
    held: VecDeque<Op>,
    closing: bool,
    /// When the committer last became idle.
    idle_since: Instant,
    /// How many operations the last batch had: about as many callers come
    /// back for the next.
    callers: usize,
}

impl Applier<'_> {
    fn run(&mut self) {
        loop {
            let op = if let Some(op) = self.held.pop_front() {
                op
            } else if !self.busy && !self.answers.is_empty() {
                // Take what is queued, then hand the batch over.
                match self.next_for_batch() {
                    Some(op) => op,
                    None => {
                        self.hand_over();
                        continue;
                    }
                }
            } else if self.closing && !self.busy {
                break;
            } else {
                match self.rx.recv() {
                    Ok(op) => op,
                    // Cannot happen while the committer holds a sender.
                    Err(_) => break,
                }
            };
            self.handle(op);
        }
        self.work = None;
    }

    /// The next operation for the batch the committer (now idle) is to
    /// take, or `None` to hand it over now. A commit's callers come back
    /// one by one, and the first are back long before the rest: handing
    /// those over alone gave every round of callers two commits (two
    /// fsyncs). So a batch smaller than the last waits up to [`LINGER`]
    /// after the committer became idle, far less than a commit takes.
    fn next_for_batch(&mut self) -> Option<Op> {
        if self.answers.len() >= MAX_BATCH {
            return None;
        }
        match self.rx.try_recv() {
            Ok(op) => return Some(op),
            Err(std_mpsc::TryRecvError::Disconnected) => return None,
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        let left = (self.idle_since + LINGER).saturating_duration_since(Instant::now());
        if self.answers.len() >= self.callers || left.is_zero() {
            return None;
        }
        self.rx.recv_timeout(left).ok()
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Committed(failed) => {
                self.busy = false;
                self.idle_since = Instant::now();
                if let Some(msg) = failed {
                    // Applied on top of the failed batch: not written either.
                    for a in self.answers.drain(..) {
                        a.send(Some(&msg));
                    }
                    self.open = Changes::default();
                    self.state = None;
                }
            }
            Op::Shutdown => self.closing = true,
            op @ (Op::Replay(..) | Op::Purge(..)) => self.run_alone(op),
            op => {
                if let Err(msg) = self.ensure_loaded() {
                    op.fail(&msg);
                    return;
                }
                let st = self.state.as_mut().expect("loaded above");
                let (now, s, ch) = (now_ms(), &self.s, &mut self.open);
                let answer = match op {
                    Op::Publish(job, tx) => defer(tx, st.publish(job, now, s, ch)),
                    Op::Claim(kind, max, tx) => defer(tx, st.claim(kind, max, now, s, ch)),
                    Op::Renew(subject, id, tx) => defer(tx, st.renew(&subject, &id, now, s, ch)),
                    Op::Finish(subject, id, job_id, outcome, tx) => {
                        defer(tx, st.finish(&subject, &id, &job_id, outcome, now, s, ch))
                    }
                    Op::Counts(tx) => {
                        let ready = st.ready_now(now);
                        let counts = st
                            .counts()
                            .iter()
                            .zip(ready)
                            .map(|(&(p, f), r)| (p, f, r))
                            .collect();
                        defer(tx, counts)
                    }
                    Op::Replay(..) | Op::Purge(..) | Op::Committed(_) | Op::Shutdown => {
                        unreachable!("matched above")
                    }
                };
                self.answers.push(answer);
            }
        }
    }

    /// Opens and reads the file again after a failed write (the committer
    /// is idle then).
    fn ensure_loaded(&mut self) -> Result<(), String> {
        if self.state.is_none() {
            let failed = |e| format!("the queue file is unusable after a failed write: {e}");
            let db = self.file.reopen().map_err(failed)?;
            // Reading the state back commits too, so it can fail (or panic)
            // like the write before it.
            let loaded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&db, &self.s)))
                    .unwrap_or_else(|panic| Err(panicked("reading the state", &*panic)));
            let st = loaded.map_err(|e| failed(self.file.failed_now(e.to_string())))?;
            self.state = Some(st);
        }
        Ok(())
    }

    /// Hands the operations applied so far to the committer.
    fn hand_over(&mut self) {
        let Some(st) = self.state.as_mut() else {
            return;
        };
        st.forget_old_ids(now_ms(), &self.s, &mut self.open);
        self.callers = self.answers.len();
        let db = match self.file.get() {
            Ok(db) => db,
            Err(e) => {
                let msg = e.to_string();
                for a in self.answers.drain(..) {
                    a.send(Some(&msg));
                }
                self.open = Changes::default();
                self.state = None;
                return;
            }
        };
        let work = Work {
            db,
            writes: Writes::of(st, std::mem::take(&mut self.open)),
            answers: std::mem::take(&mut self.answers),
        };
        match &self.work {
            Some(tx) => match tx.send(work) {
                Ok(()) => self.busy = true,
                Err(std_mpsc::SendError(work)) => {
                    for a in work.answers {
                        a.send(Some("the queue's committer thread is gone"));
                    }
                }
            },
            None => {
                for a in work.answers {
                    a.send(Some("the queue is closed"));
                }
            }
        }
    }

    /// Runs a replay or purge alone, after everything before it is on
    /// disk: they read the dead-letter table.
    fn run_alone(&mut self, op: Op) {
        while self.busy || !self.answers.is_empty() {
            if !self.busy {
                self.hand_over();
                continue;
            }
            match self.rx.recv() {
                Ok(done @ Op::Committed(_)) => self.handle(done),
                Ok(Op::Shutdown) => self.closing = true,
                Ok(other) => self.held.push_back(other),
                Err(_) => break,
            }
        }
        if let Err(msg) = self.ensure_loaded() {
            op.fail(&msg);
            return;
        }
        let st = self.state.as_mut().expect("loaded above");
        let mut ch = Changes::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.file.get().and_then(|db| {
                let txn = db.begin_write().map_err(storage)?;
                let n = {
                    let mut dead = txn.open_table(DEAD).map_err(storage)?;
                    match &op {
                        Op::Replay(selector, _) => {
                            replay(&mut dead, st, selector, now_ms(), &mut ch)?
                        }
                        Op::Purge(scope, _) => {
                            let mut n = 0;
                            if matches!(scope, PurgeScope::Pending | PurgeScope::All) {
                                n += st.purge_pending(now_ms(), &mut ch);
                            }
                            if matches!(scope, PurgeScope::Dead | PurgeScope::All) {
                                n += dead.len().map_err(storage)? as usize;
                                dead.retain(|_, _| false).map_err(storage)?;
                            }
                            n
                        }
                        _ => 0,
                    }
                };
                Writes::of(st, ch).write(&txn)?;
                txn.commit().map_err(storage)?;
                Ok(n)
            })
        }))
        .unwrap_or_else(|panic| Err(panicked("the replay or purge", &*panic)));
        let tx = match op {
            Op::Replay(_, tx) | Op::Purge(_, tx) => tx,
            other => return other.fail("internal: not a replay or purge"),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "queue: a replay or purge could not be written; opening the file again");
            self.state = None;
        }
        let _ = tx.send(result);
    }
}

/// Puts matching dead letters back as fresh jobs. A newer pending job for
/// the object already runs it (newest wins): that dead letter stays, for
/// the record. A dead letter that does not decode has no job to run: it
/// stays (`drover jobs dead` shows it and why).
fn replay(
    dead: &mut Table<'_, &'static str, &'static [u8]>,
    st: &mut State,
    selector: &JobSelector,
    now: u64,
    ch: &mut Changes,
) -> Result<usize, QueueError> {
    let mut matching = Vec::new();
    for row in dead.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let d = stored_dead_letter(k.value(), v.value());
        // A malformed record's dead letter has no job to run again.
        if d.raw.is_none() && selector.matches(&d.job) {
            matching.push((k.value().to_owned(), d));
        }
    }
    let mut replayed = 0;
    for (key, d) in matching {
        let subject = d.job.subject();
        if st.has_pending(&subject) {
            continue;
        }
        dead.remove(key.as_str()).map_err(storage)?;
        let mut job = d.job;
        job.attempt = 0;
        job.cause.change = Change::Replay;
        let bytes = serde_json::to_vec(&job).expect("jobs serialize");
        st.enqueue(
            subject.into(),
            job.kind,
            bytes.into(),
            0,
            Vec::new(),
            now,
            ch,
        );
        replayed += 1;
    }
    Ok(replayed)
}
