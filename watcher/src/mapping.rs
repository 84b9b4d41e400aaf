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
//! | Machine | added, changed (fingerprint, watched status, flags), deleted | its `bootstrap.configRef` (K0sWorkerConfig, K0sControllerConfig) while that waits for its data, `infrastructureRef` (RemoteMachine), controller owner (K0sControlPlane); old and new |
//! | CAPI Cluster | the same | its `infrastructureRef` (RemoteCluster), `controlPlaneRef` (K0sControlPlane, K0smotronControlPlane) |
//! | CAPI Cluster | control plane becomes initialized; `controlPlaneEndpoint` changes | the cluster's bootstrap configs still waiting for their data Secret |
//! | CAPI Cluster | `spec.paused` flips | every pause-honouring object of the cluster, paused or not (so each can set or clear its Paused condition) |
//! | PooledRemoteMachine | added, changed, deleted | the RemoteMachine in `status.machineRef`; old and new |
//! | PooledRemoteMachine | becomes (or is added) unreserved | the pool's RemoteMachines in its namespace that are not provisioned |
//! | Secret, ConfigMap | new resourceVersion; deleted | every object that reads it (`files[].contentFrom`, `customUserDataRef`, `sshKeyRef`, `remoteHostCluster.kubeconfigRef`, kine `dataSourceSecretName`, manifest and mount volumes) |
//! | Secret `<cluster>-kubeconfig` | the same | the cluster's waiting bootstrap configs and JoinTokenRequests without a token |
//! | Secret `<cluster>-ca`, `-sa`, `-proxy`, `-etcd`, `-ingress-haproxy`, `-frp-token` | the same | the cluster's waiting bootstrap configs |
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
        ObjKind::Machine
        | ObjKind::PooledRemoteMachine
        | ObjKind::CapiCluster
        | ObjKind::K0smotronCluster
            if changed =>
        {
            let targets = old.into_iter().chain(new).flat_map(|s| s.notifies.iter());
            for target in targets {
                // A bootstrap config that has its data needs nothing from
                // its Machine any more (generation is one-shot; the token
                // keep-alive is scheduled): each Machine phase change would
                // otherwise run it again.
                if key.kind == ObjKind::Machine
                    && target.kind.is_bootstrap()
                    && index
                        .get(target)
                        .is_some_and(|s| !s.flags.has(Flags::WAITING))
                {
                    continue;
                }
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
            // RemoteMachines wait for their cluster's infrastructure.
            let provisioned = !flag(old, Flags::INFRASTRUCTURE_PROVISIONED)
                && flag(new, Flags::INFRASTRUCTURE_PROVISIONED);
            if provisioned {
                for m in members.iter().filter(|m| m.kind == ObjKind::RemoteMachine) {
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
            // The cluster CA and the other cluster certificates the
            // bootstrap configs wait for (written by the control plane).
            if key.kind == ObjKind::Secret
                && let Some(cluster) = CLUSTER_CERT_SUFFIXES
                    .iter()
                    .find_map(|s| key.name.strip_suffix(s))
            {
                let cluster: crate::summary::Sym = cluster.into();
                for m in index.in_cluster(&key.ns, &cluster) {
                    if m.kind.is_bootstrap() && waiting(index, m) {
                        out.related(m, false);
                    }
                }
            }
        }
        _ => {}
    }
    out.planned
}

/// Secrets named `<cluster><suffix>` that bootstrap configs wait for: the
/// CAPI cluster certificates, the ingress HAProxy pair, the FRP token.
const CLUSTER_CERT_SUFFIXES: [&str; 6] = [
    "-ca",
    "-sa",
    "-proxy",
    "-etcd",
    "-ingress-haproxy",
    "-frp-token",
];

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

#[cfg(test)]
mod tests {
    use drover_shared::api::bootstrap::{K0sControllerConfig, K0sWorkerConfig};
    use drover_shared::api::capi;
    use drover_shared::api::controlplane::{K0sControlPlane, K0smotronControlPlane};
    use drover_shared::api::infrastructure::{PooledRemoteMachine, RemoteCluster, RemoteMachine};
    use drover_shared::api::k0smotron::JoinTokenRequest;
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::PartialObjectMeta;
    use serde_json::{Value, json};

    use super::*;
    use crate::summary::{Interner, Summarize};

    /// A cache fed with typed objects, as the dispatcher feeds it, that
    /// answers with the planned jobs as `Kind/name Change` strings.
    #[derive(Default)]
    struct World {
        index: Index,
        interner: Interner,
    }

    impl World {
        fn apply<K: Summarize>(&mut self, obj: &K) -> Vec<String> {
            let (key, summary) = obj.summarize(&self.interner).expect("named");
            let old = self.index.insert(key.clone(), summary.clone());
            show(plan(&self.index, &key, old.as_ref(), Some(&summary)))
        }

        fn delete<K: Summarize>(&mut self, obj: &K) -> Vec<String> {
            let (key, summary) = obj.summarize(&self.interner).expect("named");
            self.index.remove(&key);
            show(plan(&self.index, &key, Some(&summary), None))
        }
    }

    fn show(planned: Vec<Planned>) -> Vec<String> {
        let mut v: Vec<String> = planned
            .into_iter()
            .map(|p| format!("{}/{} {:?}", p.target.kind.name(), p.target.name, p.change))
            .collect();
        v.sort();
        v
    }

    /// A typed object from JSON, with namespace `default`, a uid and a
    /// resourceVersion filled in.
    fn obj<K: serde::de::DeserializeOwned>(mut v: Value) -> K {
        let meta = v["metadata"].as_object_mut().expect("metadata");
        meta.entry("namespace").or_insert(json!("default"));
        let name = meta["name"].as_str().unwrap().to_owned();
        meta.entry("uid").or_insert(json!(format!("uid-{name}")));
        meta.entry("resourceVersion").or_insert(json!("1"));
        meta.entry("generation").or_insert(json!(1));
        serde_json::from_value(v).expect("valid object")
    }

    fn cluster_meta(name: &str, cluster: &str) -> Value {
        json!({"name": name, "labels": {"cluster.x-k8s.io/cluster-name": cluster}})
    }

    fn worker_config(name: &str, cluster: &str, ready: bool) -> K0sWorkerConfig {
        let status = if ready {
            json!({"dataSecretName": name, "initialization": {"dataSecretCreated": true}})
        } else {
            json!({})
        };
        obj(json!({"metadata": cluster_meta(name, cluster), "spec": {
            "files": [{"path": "/etc/x", "contentFrom": {"secretRef": {"name": "files", "key": "x"}}}],
            "provisioner": {"customUserDataRef": {"configMapRef": {"name": "userdata", "key": "u"}}}
        }, "status": status}))
    }

    fn capi_cluster(name: &str, status: Value, paused: bool) -> capi::Cluster {
        obj(json!({"metadata": {"name": name}, "spec": {
            "paused": paused,
            "controlPlaneEndpoint": {"host": "cp.example", "port": 6443},
            "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteCluster", "name": name},
            "controlPlaneRef": {"apiGroup": "controlplane.cluster.x-k8s.io", "kind": "K0sControlPlane", "name": name}
        }, "status": status}))
    }

    fn with_rv<K: kube::Resource>(mut o: K, rv: &str) -> K {
        o.meta_mut().resource_version = Some(rv.into());
        o
    }

    #[test]
    fn our_kinds_rows_name_what_the_crds_serve() {
        // Jobs carry the row's apiVersion; workers resolve it against the
        // served kinds, so a stale row would dead-letter every job.
        let served = drover_shared::crds::served_kinds();
        for k in ObjKind::ALL {
            if matches!(k, ObjKind::Secret | ObjKind::ConfigMap) {
                continue;
            }
            assert!(
                served.iter().any(|s| s.api_version == k.api_version()
                    && s.kind == k.name()
                    && s.group == k.group()),
                "{} {} is not served",
                k.api_version(),
                k.name()
            );
        }
    }

    #[test]
    fn every_kind_has_its_row_in_order() {
        for (i, k) in ObjKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(k.row().kind, *k);
        }
        assert_eq!(
            ObjKind::from_ref("bootstrap.cluster.x-k8s.io", "K0sWorkerConfig"),
            Some(ObjKind::K0sWorkerConfig)
        );
        assert_eq!(
            ObjKind::from_ref("k0smotron.io", "Cluster"),
            Some(ObjKind::K0smotronCluster)
        );
        assert_eq!(
            ObjKind::from_ref("cluster.x-k8s.io", "Cluster"),
            Some(ObjKind::CapiCluster)
        );
        assert_eq!(ObjKind::from_ref("example.com", "K0sWorkerConfig"), None);
        assert_eq!(
            K0sWorkerConfig::KIND.api_version(),
            "bootstrap.cluster.x-k8s.io/v1beta2"
        );
        assert_eq!(
            ObjKind::JoinTokenRequest.job_kind(),
            Some(JobKind::JoinToken)
        );
        assert_eq!(ObjKind::Machine.job_kind(), None);
    }

    #[test]
    fn own_jobs_on_add_spec_change_and_delete_but_not_on_status_writes() {
        let mut w = World::default();
        let cfg = worker_config("w1", "c1", false);
        assert_eq!(w.apply(&cfg), ["K0sWorkerConfig/w1 Added"]);
        // A worker writes status: new resourceVersion, same generation.
        let done = with_rv(worker_config("w1", "c1", true), "2");
        assert_eq!(w.apply(&done), Vec::<String>::new());
        // A spec change bumps the generation.
        let mut changed = with_rv(done.clone(), "3");
        changed.metadata.generation = Some(2);
        assert_eq!(w.apply(&changed), ["K0sWorkerConfig/w1 Modified"]);
        // Labels, annotations, finalizers and deletion count too.
        let mut finalized = with_rv(changed.clone(), "4");
        finalized.metadata.finalizers = Some(vec!["x".into()]);
        assert_eq!(w.apply(&finalized), ["K0sWorkerConfig/w1 Modified"]);
        assert_eq!(w.delete(&finalized), ["K0sWorkerConfig/w1 Deleted"]);
    }

    #[test]
    fn a_machine_makes_jobs_for_its_config_infra_machine_and_control_plane() {
        let mut w = World::default();
        w.apply(&obj::<K0sControllerConfig>(
            json!({"metadata": cluster_meta("m1", "c1"), "spec": {}}),
        ));
        w.apply(&obj::<RemoteMachine>(
            json!({"metadata": cluster_meta("m1", "c1"), "spec": {}}),
        ));
        w.apply(&obj::<K0sControlPlane>(
            json!({"metadata": cluster_meta("cp", "c1"), "spec": {
            "k0sConfigSpec": {}, "machineTemplate": {"infrastructureRef": {"name": "t"}}}}),
        ));
        let machine: capi::Machine = obj(json!({"metadata": {"name": "m1", "ownerReferences": [{
                "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2", "kind": "K0sControlPlane",
                "name": "cp", "uid": "uid-cp", "controller": true}]},
            "spec": {"clusterName": "c1",
                "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sControllerConfig", "name": "m1"}},
                "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachine", "name": "m1"}}}));
        let all = [
            "K0sControlPlane/cp Related",
            "K0sControllerConfig/m1 Related",
            "RemoteMachine/m1 Related",
        ];
        assert_eq!(w.apply(&machine), all);
        // A Machine's watched status (addresses) counts; conditions other
        // than Ready, Available and UpToDate do not.
        let mut addressed = with_rv(machine.clone(), "2");
        addressed.status = Some(
            serde_json::from_value(
                json!({"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}),
            )
            .unwrap(),
        );
        assert_eq!(w.apply(&addressed), all);
        let mut conditioned = with_rv(addressed.clone(), "3");
        conditioned.status.as_mut().unwrap().conditions = serde_json::from_value(json!([{
            "type": "HealthCheckSucceeded", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "R", "message": ""}])).unwrap();
        assert_eq!(w.apply(&conditioned), Vec::<String>::new());
        assert_eq!(w.delete(&conditioned), all);
    }

    #[test]
    fn a_machine_change_skips_a_config_that_has_its_data() {
        let mut w = World::default();
        w.apply(&worker_config("m1", "c1", true));
        let machine: capi::Machine = obj(json!({"metadata": {"name": "m1"},
            "spec": {"clusterName": "c1",
                "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfig", "name": "m1"}},
                "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachine", "name": "m1"}}}));
        assert_eq!(w.apply(&machine), Vec::<String>::new());
        w.apply(&worker_config("m2", "c1", false));
        let mut waiting = machine.clone();
        waiting.metadata.name = Some("m2".into());
        waiting.spec.bootstrap.config_ref.as_mut().unwrap().name = "m2".into();
        assert_eq!(w.apply(&waiting), ["K0sWorkerConfig/m2 Related"]);
    }

    #[test]
    fn control_plane_initialized_wakes_waiting_configs_only() {
        let mut w = World::default();
        let cluster = capi_cluster("c1", json!({}), false);
        w.apply(&cluster);
        w.apply(&worker_config("waiting", "c1", false));
        w.apply(&worker_config("ready", "c1", true));
        w.apply(&worker_config("elsewhere", "c2", false));
        w.apply(&obj::<RemoteCluster>(
            json!({"metadata": cluster_meta("c1", "c1"), "spec": {}}),
        ));
        w.apply(&obj::<K0sControlPlane>(
            json!({"metadata": cluster_meta("c1", "c1"), "spec": {
            "k0sConfigSpec": {}, "machineTemplate": {"infrastructureRef": {"name": "t"}}}}),
        ));
        let initialized = with_rv(
            capi_cluster(
                "c1",
                json!({"initialization": {"controlPlaneInitialized": true}}),
                false,
            ),
            "2",
        );
        assert_eq!(
            w.apply(&initialized),
            [
                "K0sControlPlane/c1 Related",
                "K0sWorkerConfig/waiting Related",
                "RemoteCluster/c1 Related"
            ]
        );
        // The condition form counts too.
        let mut w2 = World::default();
        w2.apply(&cluster);
        w2.apply(&worker_config("waiting", "c1", false));
        let by_condition = with_rv(
            capi_cluster(
                "c1",
                json!({"conditions": [{"type": "ControlPlaneInitialized", "status": "True",
            "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "R", "message": ""}]}),
                false,
            ),
            "2",
        );
        assert!(
            w2.apply(&by_condition)
                .contains(&"K0sWorkerConfig/waiting Related".to_string())
        );
        // The endpoint moving wakes them again.
        let mut moved = with_rv(initialized, "3");
        moved.spec.control_plane_endpoint.as_mut().unwrap().port = 443;
        moved.metadata.generation = Some(2);
        assert!(
            w.apply(&moved)
                .contains(&"K0sWorkerConfig/waiting Related".to_string())
        );
    }

    #[test]
    fn infrastructure_provisioned_wakes_waiting_remote_machines() {
        let mut w = World::default();
        w.apply(&capi_cluster("c1", json!({}), false));
        for (name, provisioned) in [("waiting", false), ("done", true)] {
            w.apply(&obj::<RemoteMachine>(
                json!({"metadata": cluster_meta(name, "c1"), "spec": {},
                "status": {"initialization": {"provisioned": provisioned}}}),
            ));
        }
        let provisioned = with_rv(
            capi_cluster(
                "c1",
                json!({"initialization": {"infrastructureProvisioned": true}}),
                false,
            ),
            "2",
        );
        let jobs = w.apply(&provisioned);
        assert!(
            jobs.contains(&"RemoteMachine/waiting Related".to_string()),
            "{jobs:?}"
        );
        assert!(
            !jobs.contains(&"RemoteMachine/done Related".to_string()),
            "{jobs:?}"
        );
        // Already provisioned: a later change wakes no RemoteMachine.
        let again = with_rv(provisioned, "3");
        assert!(
            w.apply(&again)
                .iter()
                .all(|j| !j.starts_with("RemoteMachine/"))
        );
    }

    #[test]
    fn a_hosted_cluster_tells_its_control_plane_about_address_and_replicas() {
        let mut w = World::default();
        let kcp_owner = json!([{"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
            "kind": "K0smotronControlPlane", "name": "kcp", "uid": "uid-kcp"}]);
        let kmc = |rv: &str, address: &str, ready: i32| -> drover_shared::api::k0smotron::Cluster {
            obj(
                json!({"metadata": {"name": "c1", "resourceVersion": rv, "ownerReferences": kcp_owner},
                "spec": {"externalAddress": address},
                "status": {"replicas": 1, "readyReplicas": ready}}),
            )
        };
        w.apply(&obj::<K0smotronControlPlane>(
            json!({"metadata": {"name": "kcp"}, "spec": {}}),
        ));
        w.apply(&kmc("1", "", 0));
        // The address appears (a status-like write by the hosted handler).
        assert_eq!(
            w.apply(&kmc("2", "10.0.0.9", 0)),
            ["K0smotronControlPlane/kcp Related"]
        );
        assert_eq!(
            w.apply(&kmc("3", "10.0.0.9", 1)),
            ["K0smotronControlPlane/kcp Related"]
        );
        // The same state again is no news.
        assert!(w.apply(&kmc("4", "10.0.0.9", 1)).is_empty());
    }

    #[test]
    fn machine_condition_transitions_reach_the_control_plane_but_rewrites_do_not() {
        let mut w = World::default();
        w.apply(&obj::<K0sControlPlane>(
            json!({"metadata": cluster_meta("cp", "c1"), "spec": {
            "k0sConfigSpec": {}, "machineTemplate": {"infrastructureRef": {"name": "t"}}}}),
        ));
        let machine = |rv: &str, available: &str, at: &str| -> capi::Machine {
            obj(json!({"metadata": {"name": "m1", "resourceVersion": rv,
                "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
                "ownerReferences": [{"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                    "kind": "K0sControlPlane", "name": "cp", "uid": "uid-cp", "controller": true}]},
                "spec": {"clusterName": "c1", "bootstrap": {},
                    "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "Other", "name": "x"}},
                "status": {"conditions": [{"type": "Available", "status": available,
                    "lastTransitionTime": at, "reason": "R", "message": at}]}}))
        };
        w.apply(&machine("1", "False", "2024-01-01T00:00:00Z"));
        assert_eq!(
            w.apply(&machine("2", "True", "2024-01-01T00:01:00Z")),
            ["K0sControlPlane/cp Related"]
        );
        // Same state, new time and message: nothing.
        assert!(
            w.apply(&machine("3", "True", "2024-01-01T00:02:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn pooled_machines_wake_their_remote_machine_and_the_pool_when_freed() {
        let mut w = World::default();
        for (name, provisioned) in [("rm1", true), ("rm2", false), ("rm3", false)] {
            w.apply(&obj::<RemoteMachine>(json!({"metadata": {"name": name}, "spec": {"pool": if name == "rm3" { "other" } else { "p" }},
                "status": {"initialization": {"provisioned": provisioned}}})));
        }
        let reserved: PooledRemoteMachine = obj(json!({"metadata": {"name": "h1"},
            "spec": {"pool": "p", "machine": {"address": "10.0.0.1", "sshKeyRef": {"name": "k"}}},
            "status": {"reserved": true, "machineRef": {"name": "rm1", "namespace": "default"}}}));
        assert_eq!(w.apply(&reserved), ["RemoteMachine/rm1 Related"]);
        let freed: PooledRemoteMachine = with_rv(
            obj(json!({"metadata": {"name": "h1"},
            "spec": {"pool": "p", "machine": {"address": "10.0.0.1", "sshKeyRef": {"name": "k"}}},
            "status": {"reserved": false, "machineRef": {"name": "", "namespace": ""}}})),
            "2",
        );
        // The old claimant hears of it; of the pool only the unprovisioned one.
        assert_eq!(
            w.apply(&freed),
            ["RemoteMachine/rm1 Related", "RemoteMachine/rm2 Related"]
        );
    }

    #[test]
    fn referenced_secrets_and_config_maps_wake_their_users() {
        let mut w = World::default();
        w.apply(&worker_config("w1", "c1", true));
        w.apply(&obj::<RemoteMachine>(
            json!({"metadata": {"name": "rm"}, "spec": {"sshKeyRef": {"name": "files"}}}),
        ));
        w.apply(&obj::<K0smotronControlPlane>(json!({"metadata": {"name": "hcp"}, "spec": {
            "remoteHostCluster": {"kubeconfigRef": {"name": "hosting", "namespace": "infra", "key": "value"}}}})));
        let secret = |name: &str, ns: &str, rv: &str| -> PartialObjectMeta<Secret> {
            serde_json::from_value(json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": rv}})).unwrap()
        };
        assert_eq!(
            w.apply(&secret("files", "default", "5")),
            ["K0sWorkerConfig/w1 Related", "RemoteMachine/rm Related"]
        );
        assert_eq!(
            w.apply(&secret("files", "default", "5")),
            Vec::<String>::new(),
            "same resourceVersion: no change"
        );
        assert_eq!(
            w.apply(&secret("hosting", "infra", "6")),
            ["K0smotronControlPlane/hcp Related"]
        );
        assert_eq!(
            w.apply(&secret("hosting", "default", "7")),
            Vec::<String>::new(),
            "another namespace"
        );
        assert_eq!(
            w.apply(&secret("unused", "default", "8")),
            Vec::<String>::new()
        );
        let cm: PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap> = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "userdata", "namespace": "default", "uid": "u", "resourceVersion": "9"}})).unwrap();
        assert_eq!(w.apply(&cm), ["K0sWorkerConfig/w1 Related"]);
        assert_eq!(w.delete(&cm), ["K0sWorkerConfig/w1 Related"]);
    }

    #[test]
    fn a_kubeconfig_secret_wakes_waiting_configs_and_token_requests() {
        let mut w = World::default();
        w.apply(&worker_config("waiting", "c1", false));
        w.apply(&worker_config("ready", "c1", true));
        w.apply(&obj::<JoinTokenRequest>(
            json!({"metadata": {"name": "jtr"}, "spec": {"clusterName": "c1"}}),
        ));
        w.apply(&obj::<JoinTokenRequest>(json!({"metadata": {"name": "done"}, "spec": {"clusterName": "c1"}, "status": {"tokenID": "abc"}})));
        let kubeconfig: PartialObjectMeta<Secret> = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "c1-kubeconfig", "namespace": "default", "uid": "k", "resourceVersion": "3"}})).unwrap();
        assert_eq!(
            w.apply(&kubeconfig),
            [
                "JoinTokenRequest/jtr Related",
                "K0sWorkerConfig/waiting Related"
            ]
        );
    }

    #[test]
    fn cluster_certificates_wake_waiting_bootstrap_configs() {
        let mut w = World::default();
        w.apply(&worker_config("waiting", "c1", false));
        w.apply(&worker_config("ready", "c1", true));
        w.apply(&worker_config("other", "c2", false));
        let ca: PartialObjectMeta<Secret> = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "c1-ca", "namespace": "default", "uid": "k", "resourceVersion": "3"}})).unwrap();
        assert_eq!(w.apply(&ca), ["K0sWorkerConfig/waiting Related"]);
    }

    #[test]
    fn pause_by_annotation_gives_one_job_on_entry_and_one_on_exit() {
        let mut w = World::default();
        let cfg = worker_config("w1", "c1", false);
        w.apply(&cfg);
        let mut paused = with_rv(cfg.clone(), "2");
        paused.metadata.annotations =
            Some([(drover_shared::labels::PAUSED.to_owned(), String::new())].into());
        assert_eq!(
            w.apply(&paused),
            ["K0sWorkerConfig/w1 Modified"],
            "entering pause"
        );
        let mut changed = with_rv(paused.clone(), "3");
        changed.metadata.generation = Some(5);
        assert_eq!(w.apply(&changed), Vec::<String>::new(), "paused: nothing");
        let mut unpaused = with_rv(changed, "4");
        unpaused.metadata.annotations = None;
        assert_eq!(w.apply(&unpaused), ["K0sWorkerConfig/w1 Modified"]);
        // Kinds whose handlers ignore pause keep their jobs.
        let mut rc: RemoteCluster = obj(
            json!({"metadata": {"name": "rc", "annotations": {"cluster.x-k8s.io/paused": ""}}, "spec": {}}),
        );
        assert_eq!(w.apply(&rc), ["RemoteCluster/rc Added"]);
        rc.metadata.generation = Some(2);
        assert_eq!(w.apply(&rc), ["RemoteCluster/rc Modified"]);
    }

    #[test]
    fn a_paused_cluster_silences_its_objects_and_unpausing_wakes_them() {
        let mut w = World::default();
        w.apply(&capi_cluster("c1", json!({}), false));
        let cfg = worker_config("w1", "c1", false);
        w.apply(&cfg);
        w.apply(&obj::<RemoteCluster>(
            json!({"metadata": cluster_meta("c1", "c1"), "spec": {}}),
        ));
        let mut paused = with_rv(capi_cluster("c1", json!({}), true), "2");
        paused.metadata.generation = Some(2);
        // Entering pause: each pause-honouring object once; RemoteCluster via infrastructureRef.
        assert_eq!(
            w.apply(&paused),
            ["K0sWorkerConfig/w1 Related", "RemoteCluster/c1 Related"]
        );
        let mut changed = with_rv(cfg.clone(), "3");
        changed.metadata.generation = Some(2);
        assert_eq!(
            w.apply(&changed),
            Vec::<String>::new(),
            "paused by its cluster"
        );
        let mut initialized = with_rv(
            capi_cluster(
                "c1",
                json!({"initialization": {"controlPlaneInitialized": true}}),
                true,
            ),
            "4",
        );
        initialized.metadata.generation = Some(2);
        assert_eq!(
            w.apply(&initialized),
            ["RemoteCluster/c1 Related"],
            "related jobs skip paused objects"
        );
        let mut unpaused = with_rv(initialized, "5");
        unpaused.spec.paused = Some(false);
        unpaused.metadata.generation = Some(3);
        assert_eq!(
            w.apply(&unpaused),
            ["K0sWorkerConfig/w1 Related", "RemoteCluster/c1 Related"]
        );
    }

    #[test]
    fn a_relist_of_the_same_state_plans_nothing() {
        let mut w = World::default();
        w.apply(&capi_cluster("c1", json!({}), false));
        w.apply(&worker_config("w1", "c1", false));
        assert_eq!(
            w.apply(&worker_config("w1", "c1", false)),
            Vec::<String>::new()
        );
        assert_eq!(
            w.apply(&capi_cluster("c1", json!({}), false)),
            Vec::<String>::new()
        );
    }
}
