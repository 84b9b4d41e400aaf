//! The queue's state in memory, owned by the writer thread, and every
//! operation on it. No I/O: each operation records what it changed in
//! [`Changes`], and the writer writes those rows and commits before it
//! answers anyone. The indexes (ready order, lease ends, dedupe ages) live
//! only here; they are rebuilt from the rows when the file opens, so a job
//! costs a few row writes and no index writes or reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use drover_shared::jobs::{Job, JobKind};

use super::record::{HeldJob, ObjectRow, PendingJob};
use crate::RetryPolicy;
use crate::model::{AttemptRecord, DeadLetter, Finished, Outcome, Published};

const KINDS: usize = JobKind::ALL.len();

/// A job for the queue, encoded by the caller (off the writer thread).
#[derive(Debug)]
pub(super) struct NewJob {
    pub subject: Arc<str>,
    pub kind: JobKind,
    pub dedupe_id: String,
    pub attempt: u32,
    pub job: Arc<[u8]>,
}

/// A claim, for the caller to decode.
#[derive(Debug)]
pub(super) struct Claimed {
    pub claim_id: String,
    pub attempt: u32,
    pub job: Arc<[u8]>,
    pub history: Vec<AttemptRecord>,
}

/// What operations changed, for the writer to write.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Objects whose row changed (written as they are in the state, or
    /// deleted when gone).
    pub objects: Vec<Arc<str>>,
    /// Publish ids first seen now.
    pub dedupe_seen: Vec<(Arc<str>, u64)>,
    /// Publish ids past the window.
    pub dedupe_forgotten: Vec<Arc<str>>,
    /// New dead letters: key and JSON.
    pub dead: Vec<(String, Vec<u8>)>,
}

/// The settings operations need.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub lease: Duration,
    pub dedupe_window: Duration,
    pub policy: fn(JobKind) -> RetryPolicy,
}

/// The queue in memory.
#[derive(Default)]
pub(super) struct State {
    objects: HashMap<Arc<str>, (JobKind, ObjectRow)>,
    /// Per kind: (ready time, sequence) → object, for every pending job.
    ready: [BTreeMap<(u64, u64), Arc<str>>; KINDS],
    /// Per kind: (lease end, object), for every claim.
    lease_ends: [BTreeSet<(u64, Arc<str>)>; KINDS],
    dedupe: HashMap<Arc<str>, u64>,
    /// Publish ids in the order they were seen, to forget them.
    dedupe_age: VecDeque<(u64, Arc<str>)>,
    seq: u64,
    /// Rows read with another row's (ready time, sequence), until `loaded`.
    seq_clashes: Vec<Arc<str>>,
}

/// `now` plus `d`, saturating (a `RunAfter(Duration::MAX)` must not overflow).
pub(super) fn later(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// The dead-letter table's key: time first, so the table lists oldest first.
pub(super) fn dead_key(now: u64, job_id: &str) -> String {
    format!("{now:020}/{job_id}")
}

/// The job in `bytes` with its attempt count, or `None` if it does not
/// decode (never for bytes this queue encoded; checked when the file opens).
fn decode_job(bytes: &[u8], attempt: u32) -> Option<Job> {
    let mut job: Job = serde_json::from_slice(bytes).ok()?;
    job.attempt = attempt;
    Some(job)
}

impl State {
    /// Adds a row read from the file.
    pub fn load_row(&mut self, subject: Arc<str>, kind: JobKind, mut row: ObjectRow) {
        if let Some(p) = &mut row.pending {
            self.seq = self.seq.max(p.seq);
            // Two rows with one (time, sequence): not a file this queue
            // wrote, but each pending job needs its own ready entry. The
            // sequence is moved past every row's (see `loaded`).
            match self.ready[kind as usize].entry((p.ready_at_ms, p.seq)) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    self.seq_clashes.push(subject.clone());
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(subject.clone());
                }
            }
        }
        if let Some(h) = &row.held {
            self.lease_ends[kind as usize].insert((h.expires_at_ms, subject.clone()));
        }
        self.objects.insert(subject, (kind, row));
    }

    /// Ends a load: gives rows that clashed a new sequence (past every
    /// row's) and their own ready entry. Returns them, to be written back.
    pub fn loaded(&mut self) -> Vec<Arc<str>> {
        let clashes = std::mem::take(&mut self.seq_clashes);
        for subject in &clashes {
            self.seq += 1;
            let seq = self.seq;
            if let Some((kind, row)) = self.objects.get_mut(subject)
                && let Some(p) = row.pending.as_mut()
            {
                p.seq = seq;
                self.ready[*kind as usize].insert((p.ready_at_ms, seq), subject.clone());
            }
        }
        clashes
    }

    /// Adds a publish id read from the file (call in time order).
    pub fn load_dedupe(&mut self, id: Arc<str>, at_ms: u64) {
        self.dedupe.insert(id.clone(), at_ms);
        self.dedupe_age.push_back((at_ms, id));
    }

    /// The row of `subject`, as it should be on disk.
    pub fn row(&self, subject: &str) -> Option<&ObjectRow> {
        self.objects.get(subject).map(|(_, r)| r)
    }

    /// Pending jobs and claims per kind.
    pub fn counts(&self) -> [(usize, usize); KINDS] {
        std::array::from_fn(|k| (self.ready[k].len(), self.lease_ends[k].len()))
    }

    /// Jobs per kind claimable now (in flight objects' newer jobs included).
    pub fn ready_now(&self, now: u64) -> [usize; KINDS] {
        std::array::from_fn(|k| self.ready[k].range(..=(now, u64::MAX)).count())
    }

    /// Whether `subject` has a pending job.
    pub fn has_pending(&self, subject: &str) -> bool {
        self.row(subject).is_some_and(|r| r.pending.is_some())
    }

    /// Forgets publish ids older than the window.
    pub fn forget_old_ids(&mut self, now: u64, s: &Settings, ch: &mut Changes) {
        let cutoff = now.saturating_sub(later(0, s.dedupe_window));
        while let Some((at, _)) = self.dedupe_age.front() {
            if *at >= cutoff {
                break;
            }
            let (at, id) = self.dedupe_age.pop_front().expect("a front");
            // The id may have been seen again since (then it stays).
            if self.dedupe.get(&id) == Some(&at) {
                self.dedupe.remove(&id);
                ch.dedupe_forgotten.push(id);
            }
        }
    }

    /// Publishes: dedupe, then make the job its object's pending one.
    pub fn publish(&mut self, j: NewJob, now: u64, s: &Settings, ch: &mut Changes) -> Published {
        let window = later(0, s.dedupe_window);
        if let Some(seen) = self.dedupe.get(j.dedupe_id.as_str())
            && now.saturating_sub(*seen) < window
        {
            return Published::Duplicate;
        }
        let id: Arc<str> = j.dedupe_id.into();
        self.dedupe.insert(id.clone(), now);
        self.dedupe_age.push_back((now, id.clone()));
        ch.dedupe_seen.push((id, now));
        let replaced = self.enqueue(j.subject, j.kind, j.job, j.attempt, Vec::new(), now, ch);
        if replaced {
            Published::Coalesced
        } else {
            Published::Queued
        }
    }

    /// Makes `job` the pending job of its object, ready at `ready_at_ms`
    /// (replacing any pending one). Returns whether one was replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        subject: Arc<str>,
        kind: JobKind,
        job: Arc<[u8]>,
        attempt: u32,
        history: Vec<AttemptRecord>,
        ready_at_ms: u64,
        ch: &mut Changes,
    ) -> bool {
        self.seq += 1;
        let seq = self.seq;
        let ready = &mut self.ready[kind as usize];
        let (_, row) = self
            .objects
            .entry(subject.clone())
            .or_insert_with(|| (kind, ObjectRow::default()));
        let (mut attempt, mut history, mut ready_at_ms) = (attempt, history, ready_at_ms);
        let replaced = match row.pending.take() {
            Some(p) => {
                ready.remove(&(p.ready_at_ms, p.seq));
                // Newest wins, but a failing object keeps its failures and
                // its backoff: a new change (often the handler's own status
                // write) must not turn retries into a storm or keep them
                // from ending.
                if p.attempt > attempt {
                    attempt = p.attempt;
                    history = p.history;
                    ready_at_ms = ready_at_ms.max(p.ready_at_ms);
                }
                true
            }
            None => false,
        };
        row.pending = Some(PendingJob {
            ready_at_ms,
            seq,
            attempt,
            job,
            history,
        });
        ready.insert((ready_at_ms, seq), subject.clone());
        ch.objects.push(subject);
        replaced
    }

    /// Claims up to `max` ready jobs of `kind`, first returning expired
    /// claims of that kind. Also returns when waiters should look again:
    /// the next ready time or lease end, whichever is first.
    pub fn claim(
        &mut self,
        kind: JobKind,
        max: usize,
        now: u64,
        s: &Settings,
        ch: &mut Changes,
    ) -> (Vec<Claimed>, Option<u64>) {
        let k = kind as usize;
        // Leases of dead workers come back: each counts as a failed attempt.
        let expired: Vec<Arc<str>> = self.lease_ends[k]
            .iter()
            .take_while(|(end, _)| *end <= now)
            .map(|(_, s)| s.clone())
            .collect();
        for subject in expired {
            let Some(h) = self.take_claim(&subject, None) else {
                continue;
            };
            // A worker that died (or hung) mid-job counts as a failed
            // attempt, so a job that kills its workers ends in the dead letters.
            tracing::warn!(subject = %subject, "claim expired; the job counts a failed attempt");
            self.record_failure(
                subject,
                kind,
                h,
                "lease expired: the worker stopped renewing its claim".into(),
                now,
                s,
                ch,
            );
        }
        // The ready index in order, skipping objects in flight.
        let mut picked = Vec::new();
        let mut next_ready = None;
        for (&(at, seq), subject) in &self.ready[k] {
            if at > now {
                next_ready = Some(at);
                break;
            }
            if picked.len() >= max {
                break;
            }
            let in_flight = self
                .objects
                .get(subject)
                .is_some_and(|(_, r)| r.held.is_some());
            if !in_flight {
                picked.push(((at, seq), subject.clone()));
            }
        }
        let expires_at_ms = later(now, s.lease);
        let mut claims = Vec::with_capacity(picked.len());
        for (key, subject) in picked {
            self.ready[k].remove(&key);
            let Some((_, row)) = self.objects.get_mut(&subject) else {
                continue;
            };
            let Some(p) = row.pending.take() else {
                continue;
            };
            let claim_id = next_claim_id();
            claims.push(Claimed {
                claim_id: claim_id.clone(),
                attempt: p.attempt,
                job: p.job.clone(),
                history: p.history.clone(),
            });
            row.held = Some(HeldJob {
                claim_id,
                expires_at_ms,
                attempt: p.attempt,
                job: p.job,
                history: p.history,
            });
            self.lease_ends[k].insert((expires_at_ms, subject.clone()));
            ch.objects.push(subject);
        }
        let next_lease_end = self.lease_ends[k].first().map(|(end, _)| *end);
        let wake = match (next_ready, next_lease_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (claims, wake)
    }

    /// The map's own key for `subject` (a shared string, cheap to clone).
    fn key(&self, subject: &str) -> Option<Arc<str>> {
        self.objects.get_key_value(subject).map(|(k, _)| k.clone())
    }

    /// Takes `subject`'s claim off it, if it is `claim_id`'s (or any claim,
    /// for `None`). Drops the row if nothing is left of it.
    fn take_claim(&mut self, subject: &Arc<str>, claim_id: Option<&str>) -> Option<HeldJob> {
        let (kind, row) = self.objects.get_mut(subject)?;
        if claim_id.is_some_and(|id| row.held.as_ref().is_none_or(|h| h.claim_id != id)) {
            return None;
        }
        let h = row.held.take()?;
        let kind = *kind;
        if row.is_empty() {
            self.objects.remove(subject);
        }
        self.lease_ends[kind as usize].remove(&(h.expires_at_ms, subject.clone()));
        Some(h)
    }

    /// Extends a claim; `false` when it is no longer this claim's.
    pub fn renew(
        &mut self,
        subject: &str,
        claim_id: &str,
        now: u64,
        s: &Settings,
        ch: &mut Changes,
    ) -> bool {
        let Some(key) = self.key(subject) else {
            return false;
        };
        let Some((kind, row)) = self.objects.get_mut(&key) else {
            return false;
        };
        let Some(h) = row.held.as_mut().filter(|h| h.claim_id == claim_id) else {
            return false;
        };
        let ends = &mut self.lease_ends[*kind as usize];
        ends.remove(&(h.expires_at_ms, key.clone()));
        h.expires_at_ms = later(now, s.lease);
        ends.insert((h.expires_at_ms, key.clone()));
        ch.objects.push(key);
        true
    }

    /// Ends a claim with its handler's outcome. `job_id` is the claimed
    /// job's id, for a claim that is no longer held (see
    /// [`State::finish_unheld`]).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        subject: &str,
        claim_id: &str,
        job_id: &str,
        outcome: Outcome,
        now: u64,
        s: &Settings,
        ch: &mut Changes,
    ) -> Finished {
        let Some(subject) = self.key(subject) else {
            return self.finish_unheld(subject, job_id, &outcome);
        };
        let kind = self.objects[&subject].0;
        let Some(h) = self.take_claim(&subject, Some(claim_id)) else {
            return self.finish_unheld(&subject, job_id, &outcome);
        };
        ch.objects.push(subject.clone());
        match outcome {
            Outcome::Done => Finished::Settled,
            Outcome::RunAfter(d) => {
                // A newer pending job already makes the object run again.
                if !self.has_pending(&subject) {
                    self.enqueue(
                        subject,
                        kind,
                        h.job,
                        h.attempt,
                        h.history,
                        later(now, d),
                        ch,
                    );
                }
                Finished::Settled
            }
            Outcome::Retry(error) => self.record_failure(subject, kind, h, error, now, s, ch),
            Outcome::DeadLetter(error) => {
                let mut history = h.history;
                history.push(AttemptRecord {
                    at_ms: now,
                    error: error.clone(),
                });
                dead_letter(&subject, &h.job, h.attempt, error, history, now, ch);
                Finished::DeadLettered
            }
        }
    }

    /// The answer to a finish whose claim is no longer held. A `Done`
    /// repeated because the first finish's answer was lost (a failed
    /// commit that reached the disk after all) finds its claim gone: it is
    /// `Settled` when nothing will run the job again, that is when the
    /// object neither holds nor queues the same job. Otherwise the lease
    /// was lost and the job runs again elsewhere.
    fn finish_unheld(&self, subject: &str, job_id: &str, outcome: &Outcome) -> Finished {
        let runs_again = self.row(subject).is_some_and(|r| {
            let held = r.held.as_ref().map(|h| (&h.job, h.attempt));
            let pending = r.pending.as_ref().map(|p| (&p.job, p.attempt));
            held.into_iter()
                .chain(pending)
                .any(|(bytes, attempt)| decode_job(bytes, attempt).is_none_or(|j| j.id == job_id))
        });
        if matches!(outcome, Outcome::Done) && !runs_again {
            Finished::Settled
        } else {
            Finished::LeaseLost
        }
    }

    /// Counts a failed attempt: retry after the policy's delay, or
    /// dead-letter at its limit. A newer pending job for the object keeps
    /// its content but takes over the failures and the backoff, so changes
    /// cannot reset them.
    #[allow(clippy::too_many_arguments)]
    fn record_failure(
        &mut self,
        subject: Arc<str>,
        kind: JobKind,
        h: HeldJob,
        error: String,
        now: u64,
        s: &Settings,
        ch: &mut Changes,
    ) -> Finished {
        let mut history = h.history;
        history.push(AttemptRecord {
            at_ms: now,
            error: error.clone(),
        });
        // Saturating: the count comes from the publisher or the file.
        let attempt = h.attempt.saturating_add(1);
        let policy = (s.policy)(kind);
        let delay = policy.delay(attempt);
        // Re-enqueued below, where `enqueue` merges it with itself as the
        // old code did (its own count wins if it is higher).
        let newer = self
            .row(&subject)
            .and_then(|r| r.pending.as_ref())
            .map(|p| (p.job.clone(), p.ready_at_ms));
        let result = if attempt >= policy.max_attempts.max(1) {
            dead_letter(&subject, &h.job, attempt, error, history.clone(), now, ch);
            Finished::DeadLettered
        } else {
            if newer.is_none() {
                self.enqueue(
                    subject.clone(),
                    kind,
                    h.job,
                    attempt,
                    history.clone(),
                    later(now, delay),
                    ch,
                );
            }
            Finished::Retrying(delay)
        };
        if let Some((job, ready_at_ms)) = newer {
            let at = ready_at_ms.max(later(now, delay));
            self.enqueue(subject.clone(), kind, job, attempt, history, at, ch);
        }
        ch.objects.push(subject);
        result
    }

    /// Drops the pending jobs no live claim holds back; returns how many.
    /// Claims in flight stay, and so does the next change of an object in
    /// flight: it runs after the claim, as on JetStream, where dropping it
    /// would let a later change start beside the claim.
    pub fn purge_pending(&mut self, now: u64, ch: &mut Changes) -> usize {
        let mut n = 0;
        for ready in &mut self.ready {
            ready.retain(|_, subject| {
                let Some((_, row)) = self.objects.get_mut(subject) else {
                    return false;
                };
                if row.held.as_ref().is_some_and(|h| h.expires_at_ms > now) {
                    return true;
                }
                row.pending = None;
                if row.is_empty() {
                    self.objects.remove(subject);
                }
                ch.objects.push(subject.clone());
                n += 1;
                false
            });
        }
        n
    }
}

/// Adds a dead letter for the job in `job` (or, if it somehow does not
/// decode, for its bytes).
fn dead_letter(
    subject: &str,
    job: &[u8],
    attempt: u32,
    error: String,
    history: Vec<AttemptRecord>,
    now: u64,
    ch: &mut Changes,
) {
    let d = match decode_job(job, attempt) {
        Some(job) => DeadLetter {
            job,
            error,
            history,
            dead_at_ms: now,
            raw: None,
        },
        None => DeadLetter::malformed(subject, job, error, now),
    };
    tracing::warn!(job = %d.job.id, kind = %d.job.kind, object = %d.job.object_key(), error = %d.error, "job dead-lettered");
    let key = dead_key(now, &d.job.id);
    ch.dead
        .push((key, serde_json::to_vec(&d).expect("dead letters serialize")));
}
