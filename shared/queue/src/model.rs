//! What goes into and out of a queue.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_shared::jobs::{Job, JobKind};
use serde::{Deserialize, Serialize};

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// A new pending job.
    Queued,
    /// It replaced the pending job of the same object (newest wins).
    Coalesced,
    /// The same change was published inside the dedupe window: nothing new.
    Duplicate,
}

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// When it failed, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The error, as the handler reported it.
    pub error: String,
}

/// A claimed job: a lease on its object until finished or expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The job.
    pub job: Job,
    /// Identifies this lease (a later claim of the same object has another).
    pub claim_id: String,
    /// Failures so far, oldest first.
    pub history: Vec<AttemptRecord>,
}

/// How a handler's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; nothing more until the next change.
    Done,
    /// Waiting for something (a dependency): run again after this long.
    /// Costs no attempt.
    RunAfter(Duration),
    /// Failed; retry with backoff until the policy's limit, then dead-letter.
    Retry(String),
    /// Failed in a way retries cannot fix (bad input): dead-letter now.
    DeadLetter(String),
}

/// What finishing a claim did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Done, or queued to run again. A `Done` repeated after the first
    /// finish's answer was lost is `Settled` too, once nothing will run
    /// the job again: finishing is safe to retry.
    Settled,
    /// Queued for a retry after this delay.
    Retrying(Duration),
    /// Moved to the dead letters.
    DeadLettered,
    /// The lease had expired and the object was claimed again: the outcome
    /// was dropped (the other claim decides).
    LeaseLost,
}

/// A job that failed for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The job as it last ran.
    pub job: Job,
    /// The last error.
    pub error: String,
    /// Every failed attempt.
    pub history: Vec<AttemptRecord>,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub dead_at_ms: u64,
    /// A payload that did not decode as a job, as received (lossy UTF-8).
    /// Then `job` is rebuilt from the subject and cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl DeadLetter {
    /// A dead letter for bytes that are not a job (a foreign or buggy
    /// producer, or a record written by another drover version): the job
    /// is rebuilt from the subject as far as it goes, and the bytes are kept
    /// in `raw`. Such a dead letter cannot be replayed.
    pub fn malformed(subject: &str, payload: &[u8], error: String, now_ms: u64) -> Self {
        let parts = drover_shared::jobs::parse_subject(subject);
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind: parts.as_ref().map_or(JobKind::Noop, |p| p.kind),
            object: drover_shared::jobs::ObjectRef {
                api_version: String::new(),
                kind: parts
                    .as_ref()
                    .map_or_else(String::new, |p| p.object_kind.clone()),
                namespace: parts.as_ref().and_then(|p| p.namespace.clone()),
                name: parts.as_ref().map_or_else(String::new, |p| p.name.clone()),
                uid: String::new(),
            },
            cluster: None,
            cause: drover_shared::jobs::Cause {
                change: drover_shared::jobs::Change::Related,
                generation: None,
                resource_version: String::new(),
                via: None,
            },
            attempt: 0,
            trace: None,
        };
        Self {
            job,
            error,
            history: Vec::new(),
            dead_at_ms: now_ms,
            raw: Some(String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned()),
        }
    }

    /// A dead letter as a backend stored it. If the bytes do not decode
    /// (another drover version wrote them, or the store is damaged), it is
    /// shown as a malformed dead letter under its stored `id`, with the
    /// job's kind and cluster where they can still be read (else `kind`,
    /// where the store knows it): one bad record hides neither the others
    /// nor itself, filters by kind and cluster still find it, and purge
    /// removes it.
    pub fn stored(id: &str, kind: Option<JobKind>, bytes: &[u8], dead_at_ms: u64) -> Self {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            let error = format!("this dead letter does not decode: {e}");
            let mut d = Self::malformed("", bytes, error, dead_at_ms);
            d.job.id = id.to_owned();
            let job = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("job").cloned());
            let field = |name: &str| {
                job.as_ref()
                    .and_then(|j| j.get(name)?.as_str().map(str::to_owned))
            };
            if let Some(kind) = field("kind").and_then(|k| JobKind::parse(&k)).or(kind) {
                d.job.kind = kind;
            }
            d.job.cluster = field("cluster");
            d
        })
    }
}

/// Which jobs an operation applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSelector {
    /// One job id.
    pub id: Option<String>,
    /// One kind.
    pub kind: Option<JobKind>,
    /// One CAPI cluster.
    pub cluster: Option<String>,
}

impl JobSelector {
    /// Every job.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `job` matches.
    pub fn matches(&self, job: &Job) -> bool {
        self.id.as_ref().is_none_or(|i| *i == job.id)
            && self.kind.is_none_or(|k| k == job.kind)
            && self
                .cluster
                .as_ref()
                .is_none_or(|c| job.cluster.as_ref() == Some(c))
    }
}

/// What `purge` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeScope {
    /// Pending jobs, but not claims in flight, nor the next change of an
    /// object in flight (it runs after the claim).
    Pending,
    /// Dead letters.
    Dead,
    /// Both.
    All,
}

/// Counts for `drover jobs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Pending jobs per kind (ready or waiting for their time).
    pub pending: BTreeMap<String, u64>,
    /// Claims in flight per kind.
    pub in_flight: BTreeMap<String, u64>,
    /// Dead letters per kind.
    pub dead: BTreeMap<String, u64>,
}
