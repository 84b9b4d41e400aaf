//! Jobs: what the watcher hands the workers through the queue.
//!
//! A job names an object and says why it was made. It is a hint, not a
//! snapshot: workers re-read the object before they act. Jobs for the same
//! object coalesce (the newest pending one wins), so the queue holds at most
//! one pending job per object and [`JobKind`].
//!
//! Pure: ids and timestamps are passed in. The JSON schema of [`Job`] is
//! generated into `schemas/jobs/job.schema.json` by `drover crds`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which handler (and which worker pool) a job goes to. Kinds map to
/// separate queue subjects and consumers, so each pool scales on its own.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// K0sWorkerConfig and K0sControllerConfig: render bootstrap data, mint join tokens.
    Bootstrap,
    /// K0sControlPlane: control planes on machines.
    ControlPlane,
    /// K0smotronControlPlane and k0smotron.io Cluster: hosted control planes in pods.
    HostedControlPlane,
    /// RemoteCluster: the infrastructure cluster.
    RemoteCluster,
    /// RemoteMachine and PooledRemoteMachine: SSH provisioning (slow).
    RemoteMachine,
    /// JoinTokenRequest.
    JoinToken,
    /// Does nothing (tests and load tests).
    Noop,
    /// Sleeps for a configured time, standing in for slow SSH (tests and load tests).
    Echo,
}

impl JobKind {
    /// Every kind, in a stable order.
    pub const ALL: [JobKind; 8] = [
        Self::Bootstrap,
        Self::ControlPlane,
        Self::HostedControlPlane,
        Self::RemoteCluster,
        Self::RemoteMachine,
        Self::JoinToken,
        Self::Noop,
        Self::Echo,
    ];

    /// The kebab-case name, as in JSON and in queue subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::ControlPlane => "control-plane",
            Self::HostedControlPlane => "hosted-control-plane",
            Self::RemoteCluster => "remote-cluster",
            Self::RemoteMachine => "remote-machine",
            Self::JoinToken => "join-token",
            Self::Noop => "noop",
            Self::Echo => "echo",
        }
    }

    /// Parses [`JobKind::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object a job is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `group/version` (or `v1`).
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// uid, so a job for a deleted-and-recreated object is recognisably stale.
    pub uid: String,
}

/// What kind of change made the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub enum Change {
    /// The object appeared (or was listed for the first time).
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted (its finalizer still holds it, or it is gone).
    Deleted,
    /// A periodic resync: nothing is known to have changed.
    Resync,
    /// A related object changed (see [`Cause::via`]).
    Related,
    /// An operator replayed a dead-lettered job.
    Replay,
}

/// Why the job was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    /// The change.
    pub change: Change,
    /// `metadata.generation` of the object when the change was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `metadata.resourceVersion` of the object (or of `via`) when the change was seen.
    pub resource_version: String,
    /// For [`Change::Related`]: the object whose change caused this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ObjectRef>,
}

/// W3C trace context, so one trace follows a job from the watch event to
/// the handler's writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// A uuid v7 (time-ordered), assigned when the job is made.
    pub id: String,
    /// Which handler runs it.
    pub kind: JobKind,
    /// The object.
    pub object: ObjectRef,
    /// The CAPI cluster the object belongs to (`cluster.x-k8s.io/cluster-name`),
    /// for `drover jobs dead --cluster` and replays by cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Why.
    pub cause: Cause,
    /// Failed attempts so far (waiting, "run again after D", does not count).
    #[serde(default)]
    pub attempt: u32,
    /// Trace context of the change that made the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// The subject prefix of job subjects.
pub const SUBJECT_PREFIX: &str = "drover.jobs";

impl Job {
    /// The queue subject of this job's object:
    /// `drover.jobs.<job kind>.<object kind>.<ns>.<name>`, one per object so
    /// that pending jobs coalesce per object. The object's kind is part of
    /// it because one job kind serves several (a K0sWorkerConfig and a
    /// K0sControllerConfig may share a name). Namespaces are DNS labels (no
    /// dots); dots in names become `~`, which Kubernetes names cannot hold;
    /// cluster-scoped objects use `_`.
    pub fn subject(&self) -> String {
        object_subject(
            self.kind,
            &self.object.kind,
            self.object.namespace.as_deref(),
            &self.object.name,
        )
    }

    /// The key that makes publishing idempotent: the same object state seen
    /// twice (two watcher replicas, a relist, a restart) gives the same key.
    /// It names the state, not the event: one replica may see a
    /// resourceVersion in its initial list (`Added`) and another as
    /// `Modified`, and a resync of an unchanged object is the same work, so
    /// those three share `<kind>/<uid>@<rv>`. A deletion and a related
    /// object's change are different work and keep their own keys.
    pub fn dedupe_id(&self) -> String {
        let rv = &self.cause.resource_version;
        let (kind, uid) = (self.kind, &self.object.uid);
        match (self.cause.change, &self.cause.via) {
            (Change::Related, Some(via)) => format!("{kind}/{uid}/via/{}@{rv}", via.uid),
            (Change::Deleted, _) => format!("{kind}/{uid}/deleted@{rv}"),
            (Change::Replay, _) => format!("{kind}/{uid}/replay/{}", self.id),
            _ => format!("{kind}/{uid}@{rv}"),
        }
    }

    /// `namespace/name` (or `name`), for logs and tables.
    pub fn object_key(&self) -> String {
        match &self.object.namespace {
            Some(ns) => format!("{ns}/{}", self.object.name),
            None => self.object.name.clone(),
        }
    }
}

/// The subject for one object's jobs of one kind.
pub fn object_subject(
    kind: JobKind,
    object_kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> String {
    format!(
        "{SUBJECT_PREFIX}.{kind}.{}.{}.{}",
        object_kind.to_ascii_lowercase(),
        namespace.unwrap_or("_"),
        name.replace('.', "~")
    )
}

/// The parts of a subject made by [`object_subject`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectParts {
    /// The job kind.
    pub kind: JobKind,
    /// The object's kind, lowercase.
    pub object_kind: String,
    /// The namespace (`None`: cluster-scoped).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

/// Reads a subject made by [`object_subject`] back.
pub fn parse_subject(subject: &str) -> Option<SubjectParts> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    let mut parts = rest.splitn(4, '.');
    let kind = JobKind::parse(parts.next()?)?;
    let object_kind = parts.next()?.to_owned();
    let ns = parts.next()?;
    let name = parts.next()?.replace('~', ".");
    Some(SubjectParts {
        kind,
        object_kind,
        namespace: (ns != "_").then(|| ns.to_owned()),
        name,
    })
}

/// Why a job payload was refused.
#[derive(Debug, thiserror::Error)]
#[error("malformed job payload: {0}")]
pub struct MalformedJob(#[from] serde_json::Error);

/// Decodes a job payload (JSON). Unknown fields are an error: a payload
/// from a newer or foreign producer is dead-lettered with this message
/// rather than half-understood.
pub fn decode(payload: &[u8]) -> Result<Job, MalformedJob> {
    Ok(serde_json::from_slice(payload)?)
}

/// The JSON schema of [`Job`], as written to `schemas/jobs/job.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Job);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: "0190f0c4-0000-7000-8000-000000000000".into(),
            kind: JobKind::Bootstrap,
            object: ObjectRef {
                api_version: "bootstrap.cluster.x-k8s.io/v1beta2".into(),
                kind: "K0sWorkerConfig".into(),
                namespace: Some("default".into()),
                name: "w.0".into(),
                uid: "u1".into(),
            },
            cluster: Some("c1".into()),
            cause: Cause {
                change: Change::Modified,
                generation: Some(2),
                resource_version: "42".into(),
                via: None,
            },
            attempt: 0,
            trace: None,
        }
    }

    #[test]
    fn subjects_are_one_per_object_and_reversible() {
        let j = job();
        assert_eq!(
            j.subject(),
            "drover.jobs.bootstrap.k0sworkerconfig.default.w~0"
        );
        assert_eq!(
            parse_subject(&j.subject()),
            Some(SubjectParts {
                kind: JobKind::Bootstrap,
                object_kind: "k0sworkerconfig".into(),
                namespace: Some("default".into()),
                name: "w.0".into()
            })
        );
        // Two kinds of object with one name and one job kind are two subjects.
        let mut controller = j.clone();
        controller.object.kind = "K0sControllerConfig".into();
        assert_ne!(controller.subject(), j.subject());
        assert_eq!(
            object_subject(JobKind::RemoteMachine, "RemoteMachine", None, "n"),
            "drover.jobs.remote-machine.remotemachine._.n"
        );
        assert_eq!(parse_subject("drover.jobs.nope.x._.n"), None);
    }

    #[test]
    fn the_same_state_has_the_same_dedupe_id() {
        let a = job();
        let mut b = job();
        b.id = "another-id".into();
        assert_eq!(a.dedupe_id(), b.dedupe_id());
        // Seen in an initial list by one replica, as a change by another,
        // or again by a resync: the same state, the same key.
        for change in [Change::Added, Change::Resync] {
            b.cause.change = change;
            assert_eq!(a.dedupe_id(), b.dedupe_id(), "{change:?}");
        }
        b.cause.resource_version = "43".into();
        assert_ne!(a.dedupe_id(), b.dedupe_id());
        // Deletions and related changes are other work.
        let mut d = job();
        d.cause.change = Change::Deleted;
        assert_ne!(d.dedupe_id(), a.dedupe_id());
        let mut r = job();
        r.cause.change = Change::Related;
        r.cause.via = Some(ObjectRef {
            api_version: "cluster.x-k8s.io/v1beta2".into(),
            kind: "Machine".into(),
            namespace: Some("default".into()),
            name: "m".into(),
            uid: "m-uid".into(),
        });
        assert_ne!(r.dedupe_id(), a.dedupe_id());
        assert!(r.dedupe_id().contains("m-uid"));
        // Replays are never swallowed by the window.
        let mut p1 = job();
        p1.cause.change = Change::Replay;
        let mut p2 = p1.clone();
        p2.id = "other".into();
        assert_ne!(p1.dedupe_id(), p2.dedupe_id());
    }

    #[test]
    fn payloads_round_trip_and_unknown_fields_are_refused() {
        let j = job();
        let text = serde_json::to_vec(&j).unwrap();
        assert_eq!(decode(&text).unwrap(), j);
        let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        v["extra"] = 1.into();
        let err = decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        assert!(decode(b"not json").is_err());
    }

    #[test]
    fn kinds_parse_back() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
