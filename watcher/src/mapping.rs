//! The mapping: which jobs a change implies. Pure (no I/O, no clock); the
//! dispatcher feeds it summaries and publishes what it returns.
//!
//! # The kinds
//!
//! [`KINDS`] is the table of every watched kind: its API version, the job
//! kind it gets (none: it only makes jobs for others), whether it honours
//! pause and whether the `--watch-filter` label selector applies.
//!
//! | Kind | Job | Pause | Filter |
//! |---|---|---|---|
//! | K0sWorkerConfig, K0sControllerConfig | bootstrap | yes | yes |
//! | K0sControlPlane | control-plane | yes | yes |
//! | K0smotronControlPlane | hosted-control-plane | yes | yes |
//! | k0smotron.io Cluster | hosted-control-plane | no | yes |
//! | JoinTokenRequest | join-token | no | yes |
//! | RemoteCluster | remote-cluster | no | yes |
//! | RemoteMachine | remote-machine | yes | yes |
//! | PooledRemoteMachine, CAPI Cluster, Machine | — | — | yes |
//! | Secret, ConfigMap (metadata only) | — | — | no |
//!
//! Pause follows k0smotron: only the kinds whose controllers check it.
//!
//! # The relations
//!
//! | Changed object | When | Jobs for |
//! |---|---|---|
//! | one of drover's kinds | added; fingerprint changed; deleted | itself: `Added`, `Modified`, `Deleted` |
//! | Machine | added, changed (fingerprint, watched status, flags), deleted | its `bootstrap.configRef` (K0sWorkerConfig, K0sControllerConfig), `infrastructureRef` (RemoteMachine), controller owner (K0sControlPlane); old and new |
//! | CAPI Cluster | the same | its `infrastructureRef` (RemoteCluster), `controlPlaneRef` (K0sControlPlane, K0smotronControlPlane) |
//! | CAPI Cluster | control plane becomes initialized; `controlPlaneEndpoint` changes | the cluster's bootstrap configs still waiting for their data Secret |
//! | CAPI Cluster | `spec.paused` flips | every pause-honouring object of the cluster, paused or not (so each can set or clear its Paused condition) |
//! | PooledRemoteMachine | added, changed, deleted | the RemoteMachine in `status.machineRef`; old and new |
//! | PooledRemoteMachine | becomes (or is added) unreserved | the pool's RemoteMachines in its namespace that are not provisioned |
//! | Secret, ConfigMap | new resourceVersion; deleted | every object that reads it (`files[].contentFrom`, `customUserDataRef`, `sshKeyRef`, `remoteHostCluster.kubeconfigRef`, kine `dataSourceSecretName`, manifest and mount volumes) |
//! | Secret `<cluster>-kubeconfig` | the same | the cluster's waiting bootstrap configs and JoinTokenRequests without a token |
//!
//! Related jobs carry [`Change::Related`] and the changed object as `via`.
//!
//! # Pause
//!
//! A pause-honouring object is paused when it has the
//! `cluster.x-k8s.io/paused` annotation or its CAPI Cluster has
//! `spec.paused` ([`drover_shared::paused`]'s rule). A paused object gets
//! no jobs, except one when it enters pause and, through the Cluster
//! relation above, one when its cluster flips.

use drover_shared::api::{bootstrap, capi, controlplane, infrastructure, k0smotron};
use drover_shared::jobs::{Change, JobKind};

use crate::index::Index;
use crate::summary::{Flags, Key, Summary};

/// Every kind the watcher watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ObjKind {
    /// `bootstrap.cluster.x-k8s.io` K0sWorkerConfig.
    K0sWorkerConfig,
    /// `bootstrap.cluster.x-k8s.io` K0sControllerConfig.
    K0sControllerConfig,
    /// `controlplane.cluster.x-k8s.io` K0sControlPlane.
    K0sControlPlane,
    /// `controlplane.cluster.x-k8s.io` K0smotronControlPlane.
    K0smotronControlPlane,
    /// `k0smotron.io` Cluster.
    K0smotronCluster,
    /// `k0smotron.io` JoinTokenRequest.
    JoinTokenRequest,
    /// `infrastructure.cluster.x-k8s.io` RemoteCluster.
    RemoteCluster,
    /// `infrastructure.cluster.x-k8s.io` RemoteMachine.
    RemoteMachine,
    /// `infrastructure.cluster.x-k8s.io` PooledRemoteMachine.
    PooledRemoteMachine,
    /// CAPI `cluster.x-k8s.io` Cluster.
    CapiCluster,
    /// CAPI `cluster.x-k8s.io` Machine.
    Machine,
    /// Core Secret (metadata only).
    Secret,
    /// Core ConfigMap (metadata only).
    ConfigMap,
}

/// One row of [`KINDS`].
#[derive(Clone, Copy, Debug)]
pub struct KindRow {
    /// The kind.
    pub kind: ObjKind,
    /// `kind` as Kubernetes spells it.
    pub name: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// `group/version` or `v1`.
    pub api_version: &'static str,
    /// The job kind of its own jobs; `None`: it only makes jobs for others.
    pub job: Option<JobKind>,
    /// Whether its handler skips it while paused.
    pub honours_pause: bool,
    /// Whether the `--watch-filter` label selector applies to its watch.
    pub watch_filtered: bool,
}

const fn row(
    kind: ObjKind,
    name: &'static str,
    group: &'static str,
    api_version: &'static str,
    job: Option<JobKind>,
    honours_pause: bool,
    watch_filtered: bool,
) -> KindRow {
    KindRow {
        kind,
        name,
        group,
        api_version,
        job,
        honours_pause,
        watch_filtered,
    }
}

const BOOTSTRAP: &str = "bootstrap.cluster.x-k8s.io/v1beta2";
const CONTROLPLANE: &str = "controlplane.cluster.x-k8s.io/v1beta2";
const K0SMOTRON: &str = "k0smotron.io/v1beta2";
const INFRA: &str = "infrastructure.cluster.x-k8s.io/v1beta2";
const CAPI: &str = "cluster.x-k8s.io/v1beta2";

/// Every watched kind, in [`ObjKind`] order.
#[rustfmt::skip]
pub const KINDS: [KindRow; 13] = {
    use JobKind as J;
    use ObjKind as K;
    [
        row(K::K0sWorkerConfig, "K0sWorkerConfig", bootstrap::GROUP, BOOTSTRAP, Some(J::Bootstrap), true, true),
        row(K::K0sControllerConfig, "K0sControllerConfig", bootstrap::GROUP, BOOTSTRAP, Some(J::Bootstrap), true, true),
        row(K::K0sControlPlane, "K0sControlPlane", controlplane::GROUP, CONTROLPLANE, Some(J::ControlPlane), true, true),
        row(K::K0smotronControlPlane, "K0smotronControlPlane", controlplane::GROUP, CONTROLPLANE, Some(J::HostedControlPlane), true, true),
        row(K::K0smotronCluster, "Cluster", k0smotron::GROUP, K0SMOTRON, Some(J::HostedControlPlane), false, true),
        row(K::JoinTokenRequest, "JoinTokenRequest", k0smotron::GROUP, K0SMOTRON, Some(J::JoinToken), false, true),
        row(K::RemoteCluster, "RemoteCluster", infrastructure::GROUP, INFRA, Some(J::RemoteCluster), false, true),
        row(K::RemoteMachine, "RemoteMachine", infrastructure::GROUP, INFRA, Some(J::RemoteMachine), true, true),
        row(K::PooledRemoteMachine, "PooledRemoteMachine", infrastructure::GROUP, INFRA, None, false, true),
        row(K::CapiCluster, "Cluster", capi::GROUP, CAPI, None, false, true),
        row(K::Machine, "Machine", capi::GROUP, CAPI, None, false, true),
        row(K::Secret, "Secret", "", "v1", None, false, false),
        row(K::ConfigMap, "ConfigMap", "", "v1", None, false, false),
    ]
};

impl ObjKind {
    /// Every kind, in table order.
    pub const ALL: [ObjKind; 13] = {
        let mut all = [ObjKind::Secret; 13];
        let mut i = 0;
        while i < KINDS.len() {
            all[i] = KINDS[i].kind;
            i += 1;
        }
        all
    };

    /// Its row of [`KINDS`].
    pub fn row(self) -> &'static KindRow {
        &KINDS[self as usize]
    }

    /// `kind` as Kubernetes spells it.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// A name unique among the watched kinds, for health checks, metrics
    /// and logs (`Cluster` is ambiguous).
    pub fn label(self) -> &'static str {
        match self {
            Self::K0smotronCluster => "Cluster.k0smotron.io",
            Self::CapiCluster => "Cluster.cluster.x-k8s.io",
            other => other.name(),
        }
    }

    /// API group.
    pub fn group(self) -> &'static str {
        self.row().group
    }

    /// `group/version`.
    pub fn api_version(self) -> &'static str {
        self.row().api_version
    }

    /// The job kind of its own jobs.
    pub fn job_kind(self) -> Option<JobKind> {
        self.row().job
    }

    /// Whether it honours pause.
    pub fn honours_pause(self) -> bool {
        self.row().honours_pause
    }

    /// K0sWorkerConfig or K0sControllerConfig.
    pub fn is_bootstrap(self) -> bool {
        matches!(self, Self::K0sWorkerConfig | Self::K0sControllerConfig)
    }

    /// The kind a `{apiGroup, kind}` reference names, if watched.
    pub fn from_ref(group: &str, kind: &str) -> Option<ObjKind> {
        KINDS
            .iter()
            .find(|r| r.name == kind && r.group == group)
            .map(|r| r.kind)
    }
}

/// A job the mapping asks for. The dispatcher fills in ids, uids and
/// resourceVersions from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The object the job is for.
    pub target: Key,
    /// Why: the object's own change, or [`Change::Related`].
    pub change: Change,
}

/// Whether the object `key` (summary `s`) is paused now.
pub fn is_paused(index: &Index, key: &Key, s: &Summary) -> bool {
    if !key.kind.honours_pause() {
        return false;
    }
    if s.flags.has(Flags::PAUSED_ANNOTATION) {
        return true;
    }
    s.cluster.as_ref().is_some_and(|c| {
        let cluster = Key {
            kind: ObjKind::CapiCluster,
            ns: key.ns.clone(),
            name: c.clone(),
        };
        index
            .get(&cluster)
            .is_some_and(|cl| cl.flags.has(Flags::SPEC_PAUSED))
    })
}

/// The jobs implied by `key` changing from `old` to `new` (`None`: absent).
/// `index` already holds the new state.
pub fn plan(
    index: &Index,
    key: &Key,
    old: Option<&Summary>,
    new: Option<&Summary>,
) -> Vec<Planned> {
    let mut out = Plans {
        index,
        planned: Vec::new(),
    };
    own_job(&mut out, key, old, new);
    let Some(current) = new.or(old) else {
        return out.planned;
    };
    let changed = match (old, new) {
        (Some(o), Some(n)) => {
            o.fingerprint != n.fingerprint || o.related != n.related || o.flags != n.flags
        }
        _ => true,
    };
    let flag = |s: Option<&Summary>, f: Flags| s.is_some_and(|s| s.flags.has(f));
    match key.kind {
        ObjKind::Machine | ObjKind::PooledRemoteMachine | ObjKind::CapiCluster if changed => {
            let targets = old.into_iter().chain(new).flat_map(|s| s.notifies.iter());
            for target in targets {
                out.related(target, false);
            }
        }
        _ => {}
    }
    match key.kind {
        ObjKind::CapiCluster => {
            let Some(cluster) = &current.cluster else {
                return out.planned;
            };
            let members = index.in_cluster(&key.ns, cluster);
            let initialized = !flag(old, Flags::CONTROL_PLANE_INITIALIZED)
                && flag(new, Flags::CONTROL_PLANE_INITIALIZED);
            let endpoint_moved = matches!((old, new), (Some(o), Some(n)) if o.related != n.related);
            if initialized || endpoint_moved {
                for m in members.iter().filter(|m| m.kind.is_bootstrap()) {
                    if waiting(index, m) {
                        out.related(m, false);
                    }
                }
            }
            if old.is_some()
                && new.is_some()
                && flag(old, Flags::SPEC_PAUSED) != flag(new, Flags::SPEC_PAUSED)
            {
                for m in members.iter().filter(|m| m.kind.honours_pause()) {
                    out.related(m, true);
                }
            }
        }
        ObjKind::PooledRemoteMachine => {
            let freed = new.is_some_and(|n| !n.flags.has(Flags::RESERVED))
                && old.is_none_or(|o| o.flags.has(Flags::RESERVED));
            if freed && let Some(pool) = &current.pool {
                for m in index.in_pool(&key.ns, pool) {
                    if waiting(index, m) {
                        out.related(m, false);
                    }
                }
            }
        }
        ObjKind::Secret | ObjKind::ConfigMap if changed => {
            for user in index.users_of(key) {
                out.related(user, false);
            }
            if key.kind == ObjKind::Secret
                && let Some(cluster) = key.name.strip_suffix("-kubeconfig")
            {
                let cluster: crate::summary::Sym = cluster.into();
                for m in index.in_cluster(&key.ns, &cluster) {
                    if (m.kind.is_bootstrap() || m.kind == ObjKind::JoinTokenRequest)
                        && waiting(index, m)
                    {
                        out.related(m, false);
                    }
                }
            }
        }
        _ => {}
    }
    out.planned
}

fn waiting(index: &Index, key: &Key) -> bool {
    index.get(key).is_some_and(|s| s.flags.has(Flags::WAITING))
}

struct Plans<'a> {
    index: &'a Index,
    planned: Vec<Planned>,
}

impl Plans<'_> {
    fn push(&mut self, target: &Key, change: Change) {
        if !self.planned.iter().any(|p| &p.target == target) {
            self.planned.push(Planned {
                target: target.clone(),
                change,
            });
        }
    }

    /// A related job for `target`, if it is one of drover's kinds, is
    /// cached (it needs a uid; an uncached one gets its own `Added` job
    /// when it arrives) and is not paused (unless `ignore_pause`).
    fn related(&mut self, target: &Key, ignore_pause: bool) {
        if target.kind.job_kind().is_none() {
            return;
        }
        let Some(s) = self.index.get(target) else {
            return;
        };
        if ignore_pause || !is_paused(self.index, target, s) {
            self.push(target, Change::Related);
        }
    }
}

/// The object's own job: added, fingerprint changed, deleted; none while
/// it stays paused.
fn own_job(out: &mut Plans<'_>, key: &Key, old: Option<&Summary>, new: Option<&Summary>) {
    if key.kind.job_kind().is_none() {
        return;
    }
    let change = match (old, new) {
        (None, Some(_)) => Change::Added,
        (Some(o), Some(n)) if o.fingerprint != n.fingerprint => Change::Modified,
        (Some(_), None) => Change::Deleted,
        _ => return,
    };
    let paused_now = new.or(old).is_some_and(|s| is_paused(out.index, key, s));
    let paused_before = old.is_some_and(|s| is_paused(out.index, key, s));
    // Entering pause gets one job (the handler sets the Paused condition).
    if !(paused_now && paused_before) {
        out.push(key, change);
    }
}
