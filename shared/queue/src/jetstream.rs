//! The JetStream backend, for fleets: many watcher and worker processes
//! share one NATS JetStream (a single server or an R3 cluster).
//!
//! Three streams:
//!
//! - `DROVER_JOBS` (`drover.jobs.>`): a WorkQueue stream with one subject
//!   per object and `max_msgs_per_subject = 1`, so a publish replaces the
//!   object's pending job (coalescing, newest wins) and `Nats-Msg-Id`
//!   drops a change published twice (dedupe). One durable pull consumer per
//!   job kind (separate pools); its `ack_wait` is the lease.
//! - `DROVER_OBJECTS` (`drover.objects.>`): one record per object with the
//!   claim that holds it, its failed attempts and its backoff. Records are
//!   written with `Nats-Expected-Last-Subject-Sequence` (compare-and-set on
//!   the record's sequence), so two workers can never both hold an object;
//!   releasing writes a free record. This is a JetStream KV bucket in all
//!   but name; the plain stream lets every step be one publish.
//! - `DROVER_DEAD` (`drover.dead.<kind>.<cluster>.<id>`): dead letters,
//!   one per job (`max_msgs_per_subject = 1`).
//!
//! Why the record is needed: a publish replaces even a message in flight,
//! and the replacement is deliverable at once. A claim that finds the
//! object held naks the message until the holder's lease ends and marks
//! the record "waiting"; the holder, on finishing, sees the mark and
//! re-publishes the newest job so it runs now instead of after the nak.
//!
//! The common finish writes no record: a first attempt that succeeds well
//! inside its lease is only acked, and its hold stays in the record. The
//! hold (which names its message's stream sequence) is over for a newer
//! message that is *fresh* (published into an empty subject, which the
//! publish's expected-sequence check proves, so the holder's message was
//! acked), and for any other message once it has expired. A newer job that replaced the holder's
//! message is not fresh, so it waits; its claimer then sends a core NATS
//! signal to the holder's queue handle (`drover.waiting.<handle>`), which
//! frees the record and wakes the job when the claim ends, or at once if
//! it has ended. A lost signal costs only the wait for the lease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::{AckKind, Acker, PublishMessage};
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, LastRawMessageErrorKind, RetentionPolicy, StorageType, Stream,
};
use bytes::Bytes;
use drover_shared::jobs::{Change, Job, JobKind, TraceContext};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::model::{
    AttemptRecord, Claim, DeadLetter, Finished, JobSelector, Outcome, Published, PurgeScope,
    QueueStats,
};
use crate::{JobQueue, QueueError, RetryPolicy};

/// The oldest nats-server drover accepts. 2.10 brought the consumer and
/// stream fields async-nats' `server_2_10` gate exposes (a 2.9 server
/// silently drops them) and a new storage format.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// The work stream: one subject per object, newest job wins.
pub const JOBS_STREAM: &str = "DROVER_JOBS";
/// The per-object records (holds, attempts, backoff).
pub const OBJECTS_STREAM: &str = "DROVER_OBJECTS";
/// The dead letters.
pub const DEAD_STREAM: &str = "DROVER_DEAD";
const OBJECTS_PREFIX: &str = "drover.objects";
const DEAD_PREFIX: &str = "drover.dead";
/// Nak delays are capped: a "run again after" of years is a bug upstream,
/// and the server takes the delay in nanoseconds.
const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest wait of a fetch (see `claim`).
const MIN_FETCH_WAIT: Duration = Duration::from_millis(20);
/// Compare-and-set rounds before a claim gives the message back.
const CAS_ROUNDS: usize = 8;
/// Core NATS subjects (no stream) on which waiters ask a queue handle to
/// release a hold: `drover.waiting.<handle prefix>`.
const WAITING_PREFIX: &str = "drover.waiting";
/// The header of a job published into an empty subject (see `admit`).
const FRESH: &str = "Drover-Fresh";
/// The W3C trace context headers a job's message carries (the literal
/// names: this crate does not depend on drover's telemetry).
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// How to authenticate to NATS.
#[derive(Clone, Debug, Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// An nkey seed (`SU...`).
    NKeySeed(String),
    /// A `.creds` file (JWT plus nkey seed).
    CredsFile(PathBuf),
}

/// TLS to NATS.
#[derive(Clone, Debug, Default)]
pub struct NatsTls {
    /// Extra root CA (PEM) to trust.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a server that does not offer TLS.
    pub required: bool,
}

/// Settings of a JetStream queue.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// Server URLs, comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS, if any.
    pub tls: Option<NatsTls>,
    /// How long a claim lasts without renewal (the consumers' `ack_wait`).
    pub lease: Duration,
    /// How long a publish id is remembered (the stream's duplicate window).
    pub dedupe_window: Duration,
    /// Retry policy per kind.
    pub policy: fn(JobKind) -> RetryPolicy,
    /// Stream replicas: 1, or 3 on a three-node cluster.
    pub replicas: usize,
    /// Bound on each JetStream API request.
    pub request_timeout: Duration,
    /// How long an object's record (its failures and backoff) outlives the
    /// object's last activity.
    pub record_max_age: Duration,
}

impl JetStreamConfig {
    /// Defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: NatsAuth::None,
            tls: None,
            lease: Duration::from_secs(60),
            dedupe_window: Duration::from_secs(120),
            policy: RetryPolicy::for_kind,
            replicas: 1,
            request_timeout: Duration::from_secs(10),
            record_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Who holds an object, and its failures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold: Option<Hold>,
    #[serde(default)]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<AttemptRecord>,
    /// Backoff: no claim before this time (ms since the epoch).
    #[serde(default)]
    not_before_ms: u64,
    /// A newer job was refused while held: wake it when the hold ends.
    #[serde(default)]
    waiting: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hold {
    claim: String,
    until_ms: u64,
    kind: JobKind,
    /// The stream sequence of the held job's message (0 in records of
    /// older drover versions).
    #[serde(default)]
    seq: u64,
}

/// The parts of a claim id: `<hold id>|<stream sequence>|<ack subject>`. The
/// ack subject lets any process finish a claim, not only the claimer.
struct ClaimRef<'a> {
    id: &'a str,
    seq: u64,
    reply: &'a str,
}

fn parse_claim_id(claim_id: &str) -> Option<ClaimRef<'_>> {
    let mut parts = claim_id.splitn(3, '|');
    Some(ClaimRef {
        id: parts.next()?,
        seq: parts.next()?.parse().ok()?,
        reply: parts.next()?,
    })
}

/// A JetStream-backed [`JobQueue`].
pub struct JetStreamQueue {
    inner: Arc<Inner>,
    /// Answers waiters' requests to release holds (see [`Inner::answer_signals`]);
    /// stopped when the queue is dropped.
    signals: tokio::task::JoinHandle<()>,
}

impl Drop for JetStreamQueue {
    fn drop(&mut self) {
        self.signals.abort();
    }
}

/// What the queue handle and its signal task share.
struct Inner {
    client: async_nats::Client,
    js: Context,
    jobs: Stream,
    objects: Stream,
    dead: Stream,
    consumers: HashMap<JobKind, PullConsumer>,
    config: JetStreamConfig,
    /// This handle's claims in flight.
    claims: Mutex<LiveClaims>,
    /// Hold ids: a random prefix per queue handle, then a counter.
    hold_prefix: String,
    holds: std::sync::atomic::AtomicU64,
}

/// The claims a queue handle holds, by hold id (a claim id's first part).
#[derive(Default)]
struct LiveClaims {
    held: HashMap<String, HeldClaim>,
    /// Held claims that a waiter asked to release when they end.
    signaled: HashSet<String>,
}

struct HeldClaim {
    /// The record's sequence as this handle last wrote it, so finishing
    /// and renewing is one compare-and-set without a read.
    rev: u64,
    /// Until when this handle may act on the claim without checking the
    /// record: the lease measured from before the hold was written, less
    /// a margin, so no other claimer can have taken the object over yet.
    sure_until: tokio::time::Instant,
}

fn nats(op: &'static str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> QueueError {
    move |source| QueueError::Nats { op, source }
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError::Nats {
        op,
        source: Box::new(e),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn later(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses `2.10.3`, `2.11.0-RC.1` and the like.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Refuses a server older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(version: &str) -> Result<(), QueueError> {
    match parse_version(version) {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(QueueError::ServerTooOld {
            found: version.to_owned(),
            minimum: format!(
                "{}.{}.{}",
                MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1, MIN_SERVER_VERSION.2
            ),
        }),
    }
}

/// The `traceparent`/`tracestate` headers for `trace`.
fn trace_headers(trace: Option<&TraceContext>) -> Option<HeaderMap> {
    let trace = trace?;
    let mut h = HeaderMap::new();
    h.insert(TRACEPARENT, trace.traceparent.as_str());
    if let Some(state) = &trace.tracestate {
        h.insert(TRACESTATE, state.as_str());
    }
    Some(h)
}

/// `headers` plus the fresh mark, for a publish that expects an empty
/// subject: the mark is stored only if the subject was empty.
fn fresh_headers(headers: Option<HeaderMap>) -> HeaderMap {
    let mut h = headers.unwrap_or_default();
    h.insert(FRESH, "1");
    h
}

/// The trace context in a message's headers, if any.
fn trace_from_headers(headers: Option<&HeaderMap>) -> Option<TraceContext> {
    let h = headers?;
    let traceparent = h.get(TRACEPARENT)?.as_str().to_owned();
    if traceparent.is_empty() {
        return None;
    }
    let tracestate = h
        .get(TRACESTATE)
        .map(|v| v.as_str().to_owned())
        .filter(|s| !s.is_empty());
    Some(TraceContext {
        traceparent,
        tracestate,
    })
}

fn object_record_subject(job_subject: &str) -> String {
    format!(
        "{OBJECTS_PREFIX}{}",
        job_subject
            .strip_prefix(drover_shared::jobs::SUBJECT_PREFIX)
            .unwrap_or(job_subject)
    )
}

/// The job subject of an object record's subject.
fn job_subject_of_record(record_subject: &str) -> String {
    format!(
        "{}{}",
        drover_shared::jobs::SUBJECT_PREFIX,
        record_subject
            .strip_prefix(OBJECTS_PREFIX)
            .unwrap_or(record_subject)
    )
}

fn dead_subject(job: &Job) -> String {
    let cluster = job.cluster.as_deref().unwrap_or("_").replace('.', "~");
    format!("{DEAD_PREFIX}.{}.{cluster}.{}", job.kind.as_str(), job.id)
}

/// Connects to NATS with `config`'s credentials and TLS.
pub async fn connect(config: &JetStreamConfig) -> Result<async_nats::Client, QueueError> {
    let mut opts = match &config.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
        NatsAuth::NKeySeed(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
        NatsAuth::CredsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(boxed("read the NATS credentials file"))?,
    };
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        opts = opts.require_tls(tls.required);
    }
    let client = opts
        .name("drover")
        .connection_timeout(config.request_timeout)
        .request_timeout(Some(config.request_timeout))
        .connect(
            config
                .url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(boxed("connect to NATS"))?;
    check_server_version(&client.server_info().version)?;
    Ok(client)
}

impl JetStreamQueue {
    /// Connects, checks the server's version, and creates (or updates) the
    /// streams and one durable consumer per job kind.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, QueueError> {
        let client = connect(&config).await?;
        Self::with_client(client, config).await
    }

    /// Like [`JetStreamQueue::connect`] on an existing connection.
    pub async fn with_client(
        client: async_nats::Client,
        config: JetStreamConfig,
    ) -> Result<Self, QueueError> {
        check_server_version(&client.server_info().version)?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let replicas = config.replicas.max(1);
        let jobs = ensure_stream(
            &js,
            stream::Config {
                name: JOBS_STREAM.into(),
                subjects: vec![format!("{}.>", drover_shared::jobs::SUBJECT_PREFIX)],
                retention: RetentionPolicy::WorkQueue,
                max_messages_per_subject: 1,
                duplicate_window: config.dedupe_window,
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let objects = ensure_stream(
            &js,
            stream::Config {
                name: OBJECTS_STREAM.into(),
                subjects: vec![format!("{OBJECTS_PREFIX}.>")],
                max_messages_per_subject: 1,
                allow_direct: true,
                // Free records of objects long gone age out. A held record
                // is rewritten at every renewal, so it never gets this old.
                max_age: config.record_max_age,
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let dead = ensure_stream(
            &js,
            stream::Config {
                name: DEAD_STREAM.into(),
                subjects: vec![format!("{DEAD_PREFIX}.>")],
                // The subject ends in the job's id: one letter per job, the
                // newest. A job can die twice (a message `wake` published
                // again may run beside the delivery it replaced), and a
                // second letter would outlive the replay of the first.
                // Applied to an existing stream, the server trims it too.
                max_messages_per_subject: 1,
                storage: StorageType::File,
                num_replicas: replicas,
                duplicate_window: config.dedupe_window,
                ..Default::default()
            },
        )
        .await?;
        let mut consumers = HashMap::new();
        for kind in JobKind::ALL {
            let name = format!("drover-{}", kind.as_str());
            let c = jobs
                .create_consumer(pull::Config {
                    durable_name: Some(name),
                    filter_subject: format!(
                        "{}.{}.>",
                        drover_shared::jobs::SUBJECT_PREFIX,
                        kind.as_str()
                    ),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.lease,
                    // Attempts are counted in the object record (waiting
                    // and refused claims are deliveries but not failures).
                    max_deliver: -1,
                    // Jobs waiting for their time are "ack pending" too.
                    max_ack_pending: -1,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(boxed("create a consumer"))?;
            consumers.insert(kind, c);
        }
        let hold_prefix = uuid::Uuid::new_v4().simple().to_string();
        // Subscribed before any claim, so no signal to this handle is missed.
        let signals = client
            .subscribe(format!("{WAITING_PREFIX}.{hold_prefix}"))
            .await
            .map_err(boxed("subscribe to release signals"))?;
        let inner = Arc::new(Inner {
            client,
            js,
            jobs,
            objects,
            dead,
            consumers,
            config,
            claims: Mutex::new(LiveClaims::default()),
            hold_prefix,
            holds: std::sync::atomic::AtomicU64::new(0),
        });
        let signals = tokio::spawn(inner.clone().answer_signals(signals));
        Ok(Self { inner, signals })
    }

    /// The JetStream context (for tools and tests).
    pub fn context(&self) -> &Context {
        &self.inner.js
    }
}

impl Inner {
    /// A hold id unique across processes: this queue handle's random prefix
    /// and a counter (a uuid per claim cost a getrandom call each).
    fn next_hold_id(&self) -> String {
        let n = self
            .holds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n:x}", self.hold_prefix)
    }

    fn acker(&self, reply: &str) -> Acker {
        Acker::new(self.js.clone(), Some(reply.to_owned().into()))
    }

    async fn nak(&self, reply: &str, delay: Duration) -> Result<(), QueueError> {
        self.acker(reply)
            .ack_with(AckKind::Nak(Some(delay.min(MAX_DELAY))))
            .await
            .map_err(nats("nak a job"))
    }

    /// Publishes `payload` to `subject` expecting the subject's last
    /// sequence to be `expect` (0: no message). `Ok(None)` when it was not.
    async fn publish_expecting(
        &self,
        subject: String,
        payload: Bytes,
        expect: Option<u64>,
        msg_id: Option<&str>,
        headers: Option<HeaderMap>,
    ) -> Result<Option<(u64, bool)>, QueueError> {
        let mut msg = PublishMessage::build();
        if let Some(h) = headers {
            msg = msg.headers(h);
        }
        let mut msg = msg.payload(payload);
        if let Some(e) = expect {
            msg = msg.expected_last_subject_sequence(e);
        }
        if let Some(id) = msg_id {
            msg = msg.message_id(id);
        }
        let ack = self
            .js
            .send_publish(subject, msg)
            .await
            .map_err(boxed("publish"))?
            .await;
        match ack {
            Ok(a) => Ok(Some((a.sequence, a.duplicate))),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(QueueError::Nats {
                op: "publish",
                source: Box::new(e),
            }),
        }
    }

    /// The object's record. A direct get: served by the stream itself (a
    /// replica on R3, so possibly a little stale; every write after it is
    /// a compare-and-set, so staleness costs a retry, never a double hold).
    async fn read_state(&self, subject: &str) -> Result<Option<(u64, ObjectState)>, QueueError> {
        match self.objects.direct_get_last_for_subject(subject).await {
            Ok(m) => {
                let st =
                    serde_json::from_slice(&m.payload).map_err(|source| QueueError::Corrupt {
                        key: subject.to_owned(),
                        source,
                    })?;
                Ok(Some((m.sequence, st)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(QueueError::Nats {
                op: "read an object record",
                source: Box::new(e),
            }),
        }
    }

    /// Writes the record if its sequence is still `expect` (0: none).
    async fn write_state(
        &self,
        subject: &str,
        st: &ObjectState,
        expect: u64,
    ) -> Result<Option<u64>, QueueError> {
        let body = serde_json::to_vec(st).expect("object records serialize");
        Ok(self
            .publish_expecting(subject.to_owned(), body.into(), Some(expect), None, None)
            .await?
            .map(|(seq, _)| seq))
    }

    /// Stores a dead letter. Its `Nats-Msg-Id` makes a repeat (a crash
    /// between this and the term) one record.
    async fn store_dead(&self, d: &DeadLetter, seq: u64) -> Result<(), QueueError> {
        tracing::warn!(job = %d.job.id, kind = %d.job.kind, object = %d.job.object_key(), error = %d.error, "job dead-lettered");
        let body = serde_json::to_vec(d).expect("dead letters serialize");
        let id = format!("dead/{}/{seq}", d.job.id);
        self.publish_expecting(dead_subject(&d.job), body.into(), None, Some(&id), None)
            .await?;
        Ok(())
    }

    async fn term(&self, reply: &str) -> Result<(), QueueError> {
        self.acker(reply)
            .double_ack_with(AckKind::Term)
            .await
            .map_err(nats("terminate a job"))
    }

    /// A payload that is not a job: dead-lettered with the reason, and
    /// removed from the work stream. The worker goes on.
    async fn dead_letter_malformed(
        &self,
        subject: &str,
        payload: &[u8],
        seq: u64,
        reply: &str,
        reason: String,
    ) -> Result<(), QueueError> {
        let d = DeadLetter::malformed(
            subject,
            payload,
            format!("{reason} (subject {subject}, stream sequence {seq})"),
            now_ms(),
        );
        self.store_dead(&d, seq).await?;
        self.term(reply).await
    }

    /// Turns one delivered message into a claim, or gives it back: held by
    /// another claim, in backoff, or dead-lettered here.
    async fn admit(
        &self,
        kind: JobKind,
        msg: async_nats::jetstream::Message,
    ) -> Result<Option<Claim>, QueueError> {
        let seq = msg.info().map_err(nats("read a delivery"))?.stream_sequence;
        let Some(reply) = msg.reply.as_ref().map(|r| r.to_string()) else {
            return Ok(None);
        };
        let subject = msg.subject.to_string();
        let job = match drover_shared::jobs::decode(&msg.payload) {
            Ok(mut job) if job.kind == kind && job.subject() == subject => {
                if job.trace.is_none() {
                    job.trace = trace_from_headers(msg.headers.as_ref());
                }
                job
            }
            Ok(job) => {
                let reason = format!(
                    "job {} of kind {} for {} arrived on subject {subject}, which names another object or kind",
                    job.id,
                    job.kind,
                    job.subject()
                );
                self.dead_letter_malformed(&subject, &msg.payload, seq, &reply, reason)
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                self.dead_letter_malformed(&subject, &msg.payload, seq, &reply, e.to_string())
                    .await?;
                return Ok(None);
            }
        };
        let fresh = msg.headers.as_ref().is_some_and(|h| h.get(FRESH).is_some());
        let record = object_record_subject(&subject);
        let policy = (self.config.policy)(kind);
        let hold_id = self.next_hold_id();
        let mut current: Option<(u64, ObjectState)> = None;
        for round in 0..CAS_ROUNDS {
            cas_pause(round).await;
            let started = tokio::time::Instant::now();
            let now = now_ms();
            let hold = Some(Hold {
                claim: hold_id.clone(),
                until_ms: later(now, self.config.lease),
                kind,
                seq,
            });
            // The common case first: no record, one write.
            if round > 0 {
                current = self.read_state(&record).await?;
            }
            let (expect, mut st) = match current.take() {
                None => (0, ObjectState::default()),
                Some((rev, st)) => (rev, st),
            };
            // A hold on another message of the object is over when this
            // message is fresh and newer (published into an empty subject
            // after the holder's message, which was therefore acked; an
            // older fresh message may be a late delivery of one that a
            // newer job replaced) or the hold has expired: a run
            // that finished and did not write its record back (see
            // `finish`), or one whose message a newer job replaced, which
            // is not this job's failure.
            if let Some(h) = &st.hold
                && hold_is_over_for(h, seq, fresh, now)
            {
                st.hold = None;
                st.waiting = false;
            }
            if let Some(h) = &st.hold {
                if h.until_ms > now {
                    // Held: come back when the lease ends; the holder wakes
                    // us sooner if it finishes.
                    if !st.waiting {
                        st.waiting = true;
                        if self.write_state(&record, &st, expect).await?.is_none() {
                            continue;
                        }
                    }
                    // Tell the holder's queue handle, which releases the
                    // hold and wakes this job when the claim ends (it may
                    // have ended already without writing the record).
                    self.signal_holder(h, &subject).await;
                    let wait = Duration::from_millis(h.until_ms - now + 50);
                    self.nak(&reply, wait).await?;
                    return Ok(None);
                }
                // The holder stopped renewing: that run failed.
                st.attempts += 1;
                st.history.push(AttemptRecord {
                    at_ms: now,
                    error: format!(
                        "lease expired: the worker holding claim {} stopped renewing it",
                        h.claim
                    ),
                });
                st.hold = None;
                if st.attempts >= policy.max_attempts.max(1) {
                    if self.delete_or_conflict(&record, expect).await? {
                        let mut job = job;
                        job.attempt = st.attempts;
                        let d = DeadLetter {
                            error: st
                                .history
                                .last()
                                .map(|h| h.error.clone())
                                .unwrap_or_default(),
                            job,
                            history: st.history,
                            dead_at_ms: now,
                            raw: None,
                        };
                        self.store_dead(&d, seq).await?;
                        self.term(&reply).await?;
                        return Ok(None);
                    }
                    continue;
                }
            } else if st.not_before_ms > now {
                self.nak(&reply, Duration::from_millis(st.not_before_ms - now))
                    .await?;
                return Ok(None);
            }
            st.hold = hold;
            st.waiting = false;
            st.not_before_ms = 0;
            // Tracked before the write (not yet sure of anything): a waiter
            // may signal this handle as soon as the hold is stored, and the
            // signal must find the claim live, not ended.
            self.track(&hold_id, 0, started);
            let written = match self.write_state(&record, &st, expect).await {
                Ok(w) => w,
                Err(e) => {
                    self.forget(&hold_id);
                    return Err(e);
                }
            };
            match written {
                Some(rev) => {
                    let sure_until = started
                        + self
                            .config
                            .lease
                            .saturating_sub(lease_margin(self.config.lease));
                    self.track(&hold_id, rev, sure_until);
                    let mut job = job;
                    job.attempt = st.attempts;
                    return Ok(Some(Claim {
                        job,
                        claim_id: format!("{hold_id}|{seq}|{reply}"),
                        history: st.history,
                    }));
                }
                None => {
                    self.forget(&hold_id);
                    continue;
                }
            }
        }
        // Heavy contention on one object: try again shortly.
        self.nak(&reply, Duration::from_millis(20)).await?;
        Ok(None)
    }

    /// Ends the tracking of `hold_id` if the claim is sure to be still
    /// this handle's (see [`HeldClaim::sure_until`]); `false` leaves it for
    /// the checked path.
    fn end_if_sure(&self, hold_id: &str) -> bool {
        let mut claims = self.claims.lock().expect("claims");
        match claims.held.get(hold_id) {
            Some(c) if tokio::time::Instant::now() < c.sure_until => {
                claims.held.remove(hold_id);
                true
            }
            _ => false,
        }
    }

    /// Asks the queue handle that holds `h` to release it when its claim
    /// ends: a core NATS message to that handle (its hold ids start with
    /// its prefix), so a lost one only costs the wait for the lease.
    async fn signal_holder(&self, h: &Hold, job_subject: &str) {
        let Some((prefix, _)) = h.claim.split_once('-') else {
            return; // a hold id of another form: wait for its lease
        };
        // Best effort: failing here must not fail the claim batch.
        if let Err(e) = self
            .client
            .publish(
                format!("{WAITING_PREFIX}.{prefix}"),
                format!("{} {} {job_subject}", h.claim, h.seq).into(),
            )
            .await
        {
            tracing::debug!(error = %e, object = %job_subject, "could not signal a holder; the job waits for the lease");
        }
    }

    /// Tracks (or updates) a claim of this handle.
    fn track(&self, hold_id: &str, rev: u64, sure_until: tokio::time::Instant) {
        self.claims
            .lock()
            .expect("claims")
            .held
            .insert(hold_id.to_owned(), HeldClaim { rev, sure_until });
    }

    /// Stops tracking a claim of this handle.
    fn forget(&self, hold_id: &str) {
        let mut claims = self.claims.lock().expect("claims");
        claims.held.remove(hold_id);
        claims.signaled.remove(hold_id);
    }

    /// Answers the signals sent to this handle: a hold still in flight is
    /// marked, and released by its finish; a hold whose claim has ended
    /// is released now and its waiting job woken.
    async fn answer_signals(self: Arc<Self>, mut signals: async_nats::Subscriber) {
        while let Some(m) = signals.next().await {
            let text = String::from_utf8_lossy(&m.payload);
            let mut parts = text.split(' ');
            let (Some(id), Some(Ok(seq)), Some(job_subject)) = (
                parts.next(),
                parts.next().map(str::parse::<u64>),
                parts.next(),
            ) else {
                tracing::debug!(signal = %text, "ignored a malformed release signal");
                continue;
            };
            let ended = {
                let mut claims = self.claims.lock().expect("claims");
                if claims.held.contains_key(id) {
                    claims.signaled.insert(id.to_owned());
                    false
                } else {
                    true
                }
            };
            if ended && let Err(e) = self.release_ended(id, seq, job_subject).await {
                tracing::warn!(error = %e, object = %job_subject, "could not release an ended hold; the waiting job runs when the lease ends");
            }
        }
    }

    /// Frees the record of an ended claim if it still names the claim's
    /// hold (the finish did not write it back), then wakes the newest job.
    async fn release_ended(
        &self,
        hold_id: &str,
        own_seq: u64,
        job_subject: &str,
    ) -> Result<(), QueueError> {
        let record = object_record_subject(job_subject);
        for round in 0..CAS_ROUNDS {
            cas_pause(round).await;
            let Some((rev, st)) = self.read_state(&record).await? else {
                return Ok(());
            };
            if st.hold.as_ref().is_none_or(|h| h.claim != hold_id) {
                return Ok(()); // released or taken over meanwhile
            }
            if self.replace_state(&record, rev, None).await? {
                return self.wake(job_subject, own_seq).await;
            }
        }
        Err(QueueError::Contended(record))
    }

    async fn delete_or_conflict(&self, record: &str, expect: u64) -> Result<bool, QueueError> {
        self.replace_state(record, expect, None).await
    }

    /// The record of `claim`'s object if `claim` still holds it.
    async fn held(
        &self,
        record: &str,
        claim: &ClaimRef<'_>,
    ) -> Result<Option<(u64, ObjectState)>, QueueError> {
        Ok(self
            .read_state(record)
            .await?
            .filter(|(_, st)| st.hold.as_ref().is_some_and(|h| h.claim == claim.id)))
    }

    /// Replaces the held record with `next` (`None`: deletes it). While a
    /// claim holds its object only the claim writes the record (and waiters
    /// set `waiting`), so `next` is computed from the claim alone.
    /// `Ok(None)` when the claim no longer holds the object; otherwise
    /// whether a newer job was waiting.
    async fn release(
        &self,
        record: &str,
        claim: &ClaimRef<'_>,
        next: Option<ObjectState>,
    ) -> Result<Option<bool>, QueueError> {
        // The claim stays tracked until the record is written, so a signal
        // meanwhile is not taken for an ended claim's (which would free the
        // record under this release).
        let cached = self
            .claims
            .lock()
            .expect("claims")
            .held
            .get(claim.id)
            .map(|c| c.rev);
        let released = self.release_from(record, claim, next, cached).await;
        self.forget(claim.id);
        released
    }

    async fn release_from(
        &self,
        record: &str,
        claim: &ClaimRef<'_>,
        next: Option<ObjectState>,
        cached: Option<u64>,
    ) -> Result<Option<bool>, QueueError> {
        // Fast path: the record is as this process last wrote it.
        if let Some(rev) = cached
            && self.replace_state(record, rev, next.as_ref()).await?
        {
            return Ok(Some(false));
        }
        for round in 0..CAS_ROUNDS {
            cas_pause(round).await;
            let Some((rev, st)) = self.held(record, claim).await? else {
                return Ok(None);
            };
            if self.replace_state(record, rev, next.as_ref()).await? {
                return Ok(Some(st.waiting));
            }
        }
        Err(QueueError::Contended(record.to_owned()))
    }

    async fn replace_state(
        &self,
        record: &str,
        rev: u64,
        next: Option<&ObjectState>,
    ) -> Result<bool, QueueError> {
        // Releasing writes a free record rather than deleting one: a
        // publish is far cheaper for the server than a stream API request.
        let free = ObjectState::default();
        Ok(self
            .write_state(record, next.unwrap_or(&free), rev)
            .await?
            .is_some())
    }

    /// Makes the newest job of an object deliverable now: it was naked
    /// while the object was held. Re-published in place (the stream keeps
    /// one message per subject), unless something newer came meanwhile.
    async fn wake(&self, job_subject: &str, own_seq: u64) -> Result<(), QueueError> {
        let newest = match self.jobs.get_last_raw_message_by_subject(job_subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(e) => {
                return Err(QueueError::Nats {
                    op: "read a pending job",
                    source: Box::new(e),
                });
            }
        };
        if newest.sequence == own_seq {
            return Ok(());
        }
        // Only the trace headers: the stored `Nats-Msg-Id` would make the
        // re-publish a duplicate inside the dedupe window.
        let headers = trace_headers(trace_from_headers(Some(&newest.headers)).as_ref());
        self.publish_expecting(
            job_subject.to_owned(),
            newest.payload,
            Some(newest.sequence),
            None,
            headers,
        )
        .await?;
        Ok(())
    }

    async fn dead_letter_claim(
        &self,
        record: &str,
        c: &ClaimRef<'_>,
        job: Job,
        error: String,
        history: Vec<AttemptRecord>,
        now: u64,
    ) -> Result<Finished, QueueError> {
        let Some(waiting) = self.release(record, c, None).await? else {
            return Ok(Finished::LeaseLost);
        };
        let subject = job.subject();
        let d = DeadLetter {
            job,
            error,
            history,
            dead_at_ms: now,
            raw: None,
        };
        self.store_dead(&d, c.seq).await?;
        self.term(c.reply).await?;
        if waiting {
            self.wake(&subject, c.seq).await?;
        }
        Ok(Finished::DeadLettered)
    }

    /// Drops the pending jobs that no live claim holds back, one object at
    /// a time. A stream purge would drop jobs in flight too, and the next
    /// change of such an object, published into an empty subject, would
    /// look fresh and start beside the claim still running. Kept: jobs in
    /// flight, and the next change of an object in flight (it runs after
    /// the claim).
    async fn purge_pending(&self) -> Result<usize, QueueError> {
        let mut listed = self
            .jobs
            .info_with_subjects(format!("{}.>", drover_shared::jobs::SUBJECT_PREFIX))
            .await
            .map_err(boxed("list pending jobs"))?;
        let mut subjects = Vec::new();
        while let Some(s) = listed.next().await {
            subjects.push(s.map_err(boxed("list pending jobs"))?.0);
        }
        let purged = futures_util::stream::iter(
            subjects
                .into_iter()
                .map(|s| async move { self.purge_subject(&s).await }),
        )
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
        purged
            .into_iter()
            .try_fold(0, |n, p| p.map(|purged| n + usize::from(purged)))
    }

    /// Drops the pending job of one object unless a live claim holds it
    /// back. The job is held first, as a claim would hold it (a
    /// compare-and-set on the record), then deleted. A worker that claims
    /// it meanwhile either wins (the job is in flight, and kept) or finds
    /// the hold. The hold stays, like a finished claim's (see `finish`): a
    /// delivery of the message made before the delete may still be on its
    /// way, and must find the object held, not free. The next change,
    /// published into the emptied subject, is fresh and ends the hold. If
    /// the message was not deleted (a newer job replaced it meanwhile, or
    /// the delete failed), the hold is freed at once and the newest job
    /// woken, instead of waiting out the lease.
    async fn purge_subject(&self, subject: &str) -> Result<bool, QueueError> {
        let m = match self.jobs.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(false),
            Err(e) => {
                return Err(QueueError::Nats {
                    op: "read a pending job",
                    source: Box::new(e),
                });
            }
        };
        let seq = m.sequence;
        // A kind no consumer reads is never delivered: nothing to hold.
        let Some(kind) = subject.split('.').nth(2).and_then(JobKind::parse) else {
            return self.delete_job_message(seq).await;
        };
        let fresh = m.headers.get(FRESH).is_some();
        let record = object_record_subject(subject);
        let hold_id = self.next_hold_id();
        for round in 0..CAS_ROUNDS {
            cas_pause(round).await;
            let now = now_ms();
            let (expect, st) = self.read_state(&record).await?.unwrap_or_default();
            if let Some(h) = &st.hold
                && h.until_ms > now
                && !hold_is_over_for(h, seq, fresh, now)
            {
                return Ok(false);
            }
            // The object's attempts go with its job.
            let held = ObjectState {
                hold: Some(Hold {
                    claim: hold_id.clone(),
                    until_ms: later(now, self.config.lease),
                    kind,
                    seq,
                }),
                ..ObjectState::default()
            };
            if self.write_state(&record, &held, expect).await?.is_some() {
                // A waiter's signal meanwhile finds this hold ended (it is
                // not tracked), so the handle frees it and wakes the job.
                let deleted = self.delete_job_message(seq).await;
                if matches!(deleted, Ok(true)) {
                    return deleted;
                }
                // Not deleted here. A subject that still has a message (this
                // one, or a newer job that replaced it) must not wait out
                // the lease for the hold; an empty one keeps it.
                match self.jobs.get_last_raw_message_by_subject(subject).await {
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                    _ => self.release_ended(&hold_id, seq, subject).await?,
                }
                return deleted;
            }
        }
        Err(QueueError::Contended(record))
    }

    /// The answer to a `Done` whose claim no longer holds its object. A
    /// finish repeated because the first one's answer was lost (the server
    /// restarted after taking the ack) finds the hold gone: it is `Settled`
    /// when the job's message is gone too, so nothing will run the job
    /// again (acked, or replaced by a newer job of the object). A message
    /// still there is redelivered: the lease was lost. A replicated stream
    /// drops an acked message a moment after the ack's answer, so there a
    /// message still there is looked up again for up to about a second.
    async fn finish_unheld(&self, seq: u64) -> Result<Finished, QueueError> {
        let lookups = if self.config.replicas > 1 { 7 } else { 1 };
        for round in 0..lookups {
            match self.jobs.get_raw_message(seq).await {
                Ok(_) => {}
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(Finished::Settled);
                }
                Err(e) => {
                    return Err(QueueError::Nats {
                        op: "look up a finished job",
                        source: Box::new(e),
                    });
                }
            }
            if round + 1 < lookups {
                tokio::time::sleep(Duration::from_millis(10 << round)).await;
            }
        }
        Ok(Finished::LeaseLost)
    }

    /// Deletes one message of the work stream; `false` if it was gone
    /// (acked, or replaced by a newer job).
    async fn delete_job_message(&self, seq: u64) -> Result<bool, QueueError> {
        let failed = match self.remove_message(JOBS_STREAM, seq).await? {
            Ok(deleted) => return Ok(deleted),
            Err(why) => why,
        };
        // The server answers a missing message with an error too: tell
        // that apart from a failure (say, a leader change).
        match self.jobs.get_raw_message(seq).await {
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            _ => Err(QueueError::Nats {
                op: "delete a pending job",
                source: failed.into(),
            }),
        }
    }

    /// Deletes message `seq` of `stream` without erasing it. async-nats'
    /// `delete_message` has the server overwrite the message first, which
    /// made 185 deletes/s here, against 10,800/s without (100,000 messages,
    /// one server): the jobs and dead letters hold no secrets worth
    /// overwriting. The inner
    /// error is the server's refusal.
    async fn remove_message(
        &self,
        stream: &str,
        seq: u64,
    ) -> Result<Result<bool, String>, QueueError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            success: bool,
            error: Option<serde_json::Value>,
        }
        let answer: Answer = self
            .js
            .request(
                format!("STREAM.MSG.DELETE.{stream}"),
                &serde_json::json!({ "seq": seq, "no_erase": true }),
            )
            .await
            .map_err(boxed("delete a message"))?;
        Ok(match answer.error {
            Some(e) => Err(e.to_string()),
            None => Ok(answer.success),
        })
    }

    /// Every message of `stream` under `filter` at the time of the call.
    async fn read_all(
        &self,
        stream: &Stream,
        filter: &str,
    ) -> Result<Vec<async_nats::jetstream::Message>, QueueError> {
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(boxed("create a reader"))?;
        let n = consumer.cached_info().num_pending as usize;
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(boxed("read a stream"))?;
        while out.len() < n {
            match tokio::time::timeout(self.config.request_timeout, messages.next()).await {
                Ok(Some(Ok(m))) => out.push(m),
                Ok(Some(Err(e))) => return Err(nats("read a stream")(Box::new(e))),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn dead_with_seq(
        &self,
        selector: &JobSelector,
    ) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
        let filter = match (&selector.kind, &selector.cluster) {
            (Some(k), Some(c)) => format!("{DEAD_PREFIX}.{}.{}.>", k.as_str(), c.replace('.', "~")),
            (Some(k), None) => format!("{DEAD_PREFIX}.{}.>", k.as_str()),
            (None, Some(c)) => format!("{DEAD_PREFIX}.*.{}.>", c.replace('.', "~")),
            (None, None) => format!("{DEAD_PREFIX}.>"),
        };
        let mut out = Vec::new();
        for m in self.read_all(&self.dead, &filter).await? {
            let info = m.info().map_err(nats("read a dead letter"))?;
            let seq = info.stream_sequence;
            let dead_at_ms =
                u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            // The subject names the kind and the job id (see `dead_subject`).
            let mut parts = m.subject.as_str().rsplit('.');
            let id = parts.next().unwrap_or_default();
            let kind = parts.nth(1).and_then(JobKind::parse);
            let d = DeadLetter::stored(id, kind, &m.payload, dead_at_ms);
            if selector.matches(&d.job) {
                out.push((seq, d));
            }
        }
        Ok(out)
    }
}

/// Whether a hold on another message of the object is over for the
/// message `seq` (see `admit`). Holds of older records (no sequence) and
/// this message's own hold keep the old rules: wait, or count a failure.
fn hold_is_over_for(h: &Hold, seq: u64, fresh: bool, now_ms: u64) -> bool {
    h.seq != 0 && h.seq != seq && ((fresh && seq > h.seq) || h.until_ms <= now_ms)
}

/// How much sooner than the lease a handle stops trusting its own clock
/// for a claim: a quarter of the lease, at most two seconds.
fn lease_margin(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_secs(2))
}

/// Between compare-and-set rounds after the second: a replica answering
/// direct gets may lag the leader by a few milliseconds, and rereading at
/// once would see the same stale record.
async fn cas_pause(round: usize) {
    if round >= 2 {
        tokio::time::sleep(Duration::from_millis(2 << round.min(6))).await;
    }
}

async fn ensure_stream(js: &Context, config: stream::Config) -> Result<Stream, QueueError> {
    js.create_or_update_stream(config.clone())
        .await
        .map_err(boxed("create a stream"))?;
    js.get_stream(&config.name)
        .await
        .map_err(boxed("open a stream"))
}

impl Inner {
    async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
        let body: Bytes = serde_json::to_vec(job).expect("jobs serialize").into();
        let id = job.dedupe_id();
        let headers = trace_headers(job.trace.as_ref());
        // Expecting no pending message tells a new job from a coalesced
        // one; only a job stored that way carries the fresh mark.
        match self
            .publish_expecting(
                job.subject(),
                body.clone(),
                Some(0),
                Some(&id),
                Some(fresh_headers(headers.clone())),
            )
            .await?
        {
            Some((_, true)) => Ok(Published::Duplicate),
            Some((_, false)) => Ok(Published::Queued),
            None => match self
                .publish_expecting(job.subject(), body, None, Some(&id), headers)
                .await?
            {
                Some((_, true)) => Ok(Published::Duplicate),
                _ => Ok(Published::Coalesced),
            },
        }
    }

    async fn claim(
        &self,
        kind: JobKind,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        let consumer = &self.consumers[&kind];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut fetch = consumer.fetch().max_messages(max.max(1));
            // no_wait plus expires: wait for the first message, then return
            // what is there (never more than asked: no prefetch). Never a
            // bare no_wait: the server tells consumers of a new message
            // asynchronously, so a no_wait fetch right after a publish's ack
            // can answer "nothing" (seen in CI); a short expiry lets a claim
            // see every job whose publish returned before it started.
            fetch = fetch.expires(left.max(MIN_FETCH_WAIT));
            let mut batch = fetch.messages().await.map_err(boxed("fetch jobs"))?;
            let mut delivered = Vec::new();
            while let Some(m) = batch.next().await {
                match m {
                    Ok(m) => delivered.push(m),
                    Err(e) => {
                        tracing::debug!(error = %e, "fetch ended");
                        break;
                    }
                }
            }
            let admitted =
                futures_util::future::join_all(delivered.into_iter().map(|m| self.admit(kind, m)))
                    .await;
            let mut claims = Vec::new();
            for a in admitted {
                if let Some(c) = a? {
                    claims.push(c);
                }
            }
            if !claims.is_empty() || left < Duration::from_millis(10) {
                return Ok(claims);
            }
        }
    }

    async fn renew(&self, claim: &Claim) -> Result<(), QueueError> {
        let c = parse_claim_id(&claim.claim_id)
            .ok_or_else(|| QueueError::LeaseLost(claim.claim_id.clone()))?;
        let record = object_record_subject(&claim.job.subject());
        for round in 0..CAS_ROUNDS {
            cas_pause(round).await;
            let Some((rev, mut st)) = self.held(&record, &c).await? else {
                self.forget(c.id);
                return Err(QueueError::LeaseLost(claim.job.object_key()));
            };
            let started = tokio::time::Instant::now();
            if let Some(h) = st.hold.as_mut() {
                h.until_ms = later(now_ms(), self.config.lease);
            }
            if let Some(new) = self.write_state(&record, &st, rev).await? {
                let sure_until = started
                    + self
                        .config
                        .lease
                        .saturating_sub(lease_margin(self.config.lease));
                self.track(c.id, new, sure_until);
                // Restart the message's ack timer too.
                return self
                    .acker(c.reply)
                    .ack_with(AckKind::Progress)
                    .await
                    .map_err(nats("renew a claim"));
            }
        }
        Err(QueueError::Contended(record))
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<Finished, QueueError> {
        let Some(c) = parse_claim_id(&claim.claim_id) else {
            return Ok(Finished::LeaseLost);
        };
        let subject = claim.job.subject();
        let record = object_record_subject(&subject);
        let now = now_ms();
        let policy = (self.config.policy)(claim.job.kind);
        match outcome {
            Outcome::Done => {
                // The common case: a first attempt, finished well inside
                // its lease by the handle that claimed it. Only the ack:
                // the record keeps the hold, which the object's next fresh
                // job or the hold's expiry ends (see `admit`). A waiter
                // (a newer job that replaced this one meanwhile) signals
                // this handle, which then releases the record and wakes it.
                if claim.job.attempt == 0 && claim.history.is_empty() && self.end_if_sure(c.id) {
                    let acked = self.acker(c.reply).double_ack().await;
                    let signaled = self.claims.lock().expect("claims").signaled.remove(c.id);
                    acked.map_err(nats("ack a job"))?;
                    if signaled {
                        self.release_ended(c.id, c.seq, &subject).await?;
                    }
                    return Ok(Finished::Settled);
                }
                let Some(waiting) = self.release(&record, &c, None).await? else {
                    return self.finish_unheld(c.seq).await;
                };
                self.acker(c.reply)
                    .double_ack()
                    .await
                    .map_err(nats("ack a job"))?;
                if waiting {
                    self.wake(&subject, c.seq).await?;
                }
                Ok(Finished::Settled)
            }
            Outcome::RunAfter(d) => {
                // Waiting keeps past failures but no backoff: a new change
                // (often the dependency it waits for) runs at once.
                let next = (claim.job.attempt > 0).then(|| ObjectState {
                    attempts: claim.job.attempt,
                    history: claim.history.clone(),
                    ..ObjectState::default()
                });
                let Some(waiting) = self.release(&record, &c, next).await? else {
                    return Ok(Finished::LeaseLost);
                };
                self.nak(c.reply, d).await?;
                if waiting {
                    self.wake(&subject, c.seq).await?;
                }
                Ok(Finished::Settled)
            }
            Outcome::Retry(error) => {
                let attempts = claim.job.attempt + 1;
                let mut history = claim.history.clone();
                history.push(AttemptRecord {
                    at_ms: now,
                    error: error.clone(),
                });
                if attempts >= policy.max_attempts.max(1) {
                    let mut job = claim.job;
                    job.attempt = attempts;
                    return self
                        .dead_letter_claim(&record, &c, job, error, history, now)
                        .await;
                }
                let delay = policy.delay(attempts);
                let next = ObjectState {
                    attempts,
                    history,
                    not_before_ms: later(now, delay),
                    ..ObjectState::default()
                };
                if self.release(&record, &c, Some(next)).await?.is_none() {
                    return Ok(Finished::LeaseLost);
                }
                // A waiting newer job is refused until the backoff ends.
                self.nak(c.reply, delay).await?;
                Ok(Finished::Retrying(delay))
            }
            Outcome::DeadLetter(error) => {
                let mut history = claim.history.clone();
                history.push(AttemptRecord {
                    at_ms: now,
                    error: error.clone(),
                });
                self.dead_letter_claim(&record, &c, claim.job, error, history, now)
                    .await
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stats = QueueStats::default();
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        let now = now_ms();
        let mut live = Vec::new();
        for m in self
            .read_all(&self.objects, &format!("{OBJECTS_PREFIX}.>"))
            .await?
        {
            if let Ok(st) = serde_json::from_slice::<ObjectState>(&m.payload)
                && let Some(h) = st.hold
                && h.until_ms > now
            {
                live.push((job_subject_of_record(&m.subject), h));
            }
        }
        // A finished claim may leave its hold in the record (see `finish`).
        // A hold is in flight while its own message is still there (not
        // acked), or while a newer job that replaced it waits for it (not
        // fresh); a fresh newer job means the hold's run is over.
        let checks = futures_util::stream::iter(live.into_iter().map(|(subject, h)| async move {
            match self.jobs.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => {
                    let fresh = m.headers.get(FRESH).is_some();
                    let in_flight =
                        h.seq == 0 || m.sequence == h.seq || (m.sequence > h.seq && !fresh);
                    Ok(in_flight.then_some(h.kind))
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(QueueError::Nats {
                    op: "read a pending job",
                    source: Box::new(e),
                }),
            }
        }))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
        for kind in checks {
            if let Some(kind) = kind? {
                *held.entry(kind.as_str().to_owned()).or_default() += 1;
            }
        }
        for (kind, consumer) in &self.consumers {
            let mut consumer = consumer.clone();
            let info = consumer.info().await.map_err(boxed("read a consumer"))?;
            let flight = held.get(kind.as_str()).copied().unwrap_or(0);
            let pending = (info.num_pending + info.num_ack_pending as u64).saturating_sub(flight);
            if pending > 0 {
                stats.pending.insert(kind.as_str().to_owned(), pending);
            }
            if flight > 0 {
                stats.in_flight.insert(kind.as_str().to_owned(), flight);
            }
        }
        for (_, d) in self.dead_with_seq(&JobSelector::all()).await? {
            *stats
                .dead
                .entry(d.job.kind.as_str().to_owned())
                .or_default() += 1;
        }
        Ok(stats)
    }

    async fn depth(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        // One consumer info request per kind, at once: `num_pending` is
        // what the consumer has not delivered yet (claims in flight and
        // naked jobs waiting for their time are "ack pending" instead).
        let infos = futures_util::future::join_all(self.consumers.iter().map(
            |(kind, consumer)| async move {
                let mut consumer = consumer.clone();
                let info = consumer.info().await.map_err(boxed("read a consumer"))?;
                Ok::<_, QueueError>((kind.as_str().to_owned(), info.num_pending))
            },
        ))
        .await;
        infos.into_iter().collect()
    }

    async fn dead_letters(&self, selector: &JobSelector) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self
            .dead_with_seq(selector)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    async fn replay(&self, selector: &JobSelector) -> Result<usize, QueueError> {
        let mut replayed = 0;
        for (seq, d) in self.dead_with_seq(selector).await? {
            if d.raw.is_some() {
                continue; // not a job: nothing to run
            }
            let mut job = d.job;
            job.attempt = 0;
            job.cause.change = Change::Replay;
            let body: Bytes = serde_json::to_vec(&job).expect("jobs serialize").into();
            // Never replace a newer pending job of the object.
            let id = format!("replay/{}/{seq}", job.id);
            let headers = fresh_headers(trace_headers(job.trace.as_ref()));
            if self
                .publish_expecting(job.subject(), body, Some(0), Some(&id), Some(headers))
                .await?
                .is_none()
            {
                continue;
            }
            if let Err(why) = self.remove_message(DEAD_STREAM, seq).await? {
                return Err(QueueError::Nats {
                    op: "delete a dead letter",
                    source: why.into(),
                });
            }
            replayed += 1;
        }
        Ok(replayed)
    }

    async fn purge(&self, scope: PurgeScope) -> Result<usize, QueueError> {
        let mut n = 0;
        if matches!(scope, PurgeScope::Pending | PurgeScope::All) {
            n += self.purge_pending().await?;
        }
        if matches!(scope, PurgeScope::Dead | PurgeScope::All) {
            let r = self
                .dead
                .purge()
                .await
                .map_err(boxed("purge dead letters"))?;
            n += r.purged as usize;
        }
        Ok(n)
    }
}

impl JobQueue for JetStreamQueue {
    async fn publish(&self, job: &Job) -> Result<Published, QueueError> {
        self.inner.publish(job).await
    }

    async fn claim(
        &self,
        kind: JobKind,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        self.inner.claim(kind, max, wait).await
    }

    async fn renew(&self, claim: &Claim) -> Result<(), QueueError> {
        self.inner.renew(claim).await
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<Finished, QueueError> {
        self.inner.finish(claim, outcome).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }

    async fn depth(&self) -> Result<BTreeMap<String, u64>, QueueError> {
        self.inner.depth().await
    }

    async fn dead_letters(&self, selector: &JobSelector) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(selector).await
    }

    async fn replay(&self, selector: &JobSelector) -> Result<usize, QueueError> {
        self.inner.replay(selector).await
    }

    async fn purge(&self, scope: PurgeScope) -> Result<usize, QueueError> {
        self.inner.purge(scope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_2_10_are_refused() {
        assert!(check_server_version("2.14.6").is_ok());
        assert!(check_server_version("2.10.0").is_ok());
        assert!(check_server_version("2.11.0-RC.1").is_ok());
        let e = check_server_version("2.9.10").unwrap_err().to_string();
        assert!(e.contains("2.9.10") && e.contains("2.10.0"), "{e}");
        assert!(check_server_version("garbage").is_err());
    }

    #[test]
    fn claim_ids_round_trip() {
        let id = "u|42|$JS.ACK.DROVER_JOBS.drover-noop.1.42.7.1700000000.0";
        let c = parse_claim_id(id).unwrap();
        assert_eq!((c.id, c.seq), ("u", 42));
        assert!(c.reply.starts_with("$JS.ACK."));
        assert!(parse_claim_id("nope").is_none());
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        let t = TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: Some("vendor=1".into()),
        };
        let h = trace_headers(Some(&t)).unwrap();
        assert_eq!(h.get(TRACEPARENT).unwrap().as_str(), t.traceparent);
        assert_eq!(trace_from_headers(Some(&h)), Some(t));
        assert_eq!(trace_headers(None), None);
        assert_eq!(trace_from_headers(Some(&HeaderMap::new())), None);
        assert_eq!(trace_from_headers(None), None);
    }

    #[test]
    fn holds_end_only_for_newer_fresh_messages_or_at_expiry() {
        let h = |seq, until_ms| Hold {
            claim: "p-1".into(),
            until_ms,
            kind: JobKind::Noop,
            seq,
        };
        let (now, live, gone) = (1_000, 2_000, 900);
        // A fresh message published after the holder's: its run is over.
        assert!(hold_is_over_for(&h(10, live), 11, true, now));
        // A replacement, or a late delivery of an older fresh message: wait.
        assert!(!hold_is_over_for(&h(10, live), 11, false, now));
        assert!(!hold_is_over_for(&h(10, live), 9, true, now));
        // Expired holds of other messages are over (not this job's failure).
        assert!(hold_is_over_for(&h(10, gone), 11, false, now));
        // This message's own hold, and holds without a sequence: old rules.
        assert!(!hold_is_over_for(&h(10, gone), 10, true, now));
        assert!(!hold_is_over_for(&h(0, gone), 11, true, now));
    }

    #[test]
    fn records_and_dead_letters_have_their_own_subjects() {
        assert_eq!(
            object_record_subject("drover.jobs.bootstrap.k0sworkerconfig.default.w~0"),
            "drover.objects.bootstrap.k0sworkerconfig.default.w~0"
        );
        assert_eq!(
            job_subject_of_record("drover.objects.bootstrap.k0sworkerconfig.default.w~0"),
            "drover.jobs.bootstrap.k0sworkerconfig.default.w~0"
        );
    }
}
