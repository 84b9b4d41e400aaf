//! Compact summaries: what the watcher keeps of each object instead of the
//! object itself.
//!
//! A typed object is converted on arrival ([`Summarize`]) and dropped; only a
//! [`Key`] and a [`Summary`] stay. Repeated strings (namespaces, cluster,
//! pool and referenced Secret names) are interned ([`Interner`]), so 100,000
//! objects in a few hundred clusters share a few thousand strings.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use drover_shared::api::bootstrap::{
    ContentSource, File, K0sControllerConfig, K0sWorkerConfig, ProvisionerSpec,
};
use drover_shared::api::capi;
use drover_shared::api::controlplane::{K0sControlPlane, K0smotronControlPlane};
use drover_shared::api::infrastructure::{PooledRemoteMachine, RemoteCluster, RemoteMachine};
use drover_shared::api::k0smotron::{self, JoinTokenRequest};
use drover_shared::{conditions, labels, owners};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;

use crate::mapping::ObjKind;

/// A shared string: interned for repeated values, plain for unique ones.
pub type Sym = Arc<str>;

/// Interns repeated strings. Shared by the watch tasks (they summarize
/// objects as they arrive), hence the lock; it is held only for one lookup.
#[derive(Default)]
pub struct Interner {
    strings: Mutex<HashSet<Sym>>,
}

impl Interner {
    /// The one shared copy of `s`.
    pub fn intern(&self, s: &str) -> Sym {
        let mut strings = self.strings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = strings.get(s) {
            return existing.clone();
        }
        let sym: Sym = Arc::from(s);
        strings.insert(sym.clone());
        sym
    }

    /// Forgets strings no summary uses any more (deleted clusters and
    /// namespaces), so the table does not grow forever.
    pub fn prune(&self) {
        let mut strings = self.strings.lock().unwrap_or_else(|e| e.into_inner());
        strings.retain(|s| Arc::strong_count(s) > 1);
    }

    /// How many strings are interned.
    pub fn len(&self) -> usize {
        self.strings.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the interned strings (an estimate, for the memory test).
    pub fn heap_bytes(&self) -> usize {
        let strings = self.strings.lock().unwrap_or_else(|e| e.into_inner());
        strings.capacity() * (size_of::<Sym>() + 8)
            + strings.iter().map(|s| s.len() + 16).sum::<usize>()
    }
}

/// Which object: kind, namespace, name. Every kind drover watches is namespaced.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The kind.
    pub kind: ObjKind,
    /// The namespace (interned).
    pub ns: Sym,
    /// The name (shared between the cache and its indexes, not interned).
    pub name: Sym,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind.name(), self.ns, self.name)
    }
}

/// Bits of state the mapping looks at. One byte instead of a struct of bools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// The object has the `cluster.x-k8s.io/paused` annotation.
    pub const PAUSED_ANNOTATION: Flags = Flags(1);
    /// `metadata.deletionTimestamp` is set.
    pub const DELETING: Flags = Flags(1 << 1);
    /// Still waiting for its result: a bootstrap config without its data
    /// Secret, a JoinTokenRequest without a token, a RemoteMachine not provisioned.
    pub const WAITING: Flags = Flags(1 << 2);
    /// CAPI Cluster: the control plane is initialized.
    pub const CONTROL_PLANE_INITIALIZED: Flags = Flags(1 << 3);
    /// CAPI Cluster: `spec.paused`.
    pub const SPEC_PAUSED: Flags = Flags(1 << 4);
    /// CAPI Cluster: the infrastructure is provisioned.
    pub const INFRASTRUCTURE_PROVISIONED: Flags = Flags(1 << 5);
    /// PooledRemoteMachine: reserved by a RemoteMachine.
    pub const RESERVED: Flags = Flags(1 << 6);

    /// Whether every bit of `other` is set.
    pub fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set when `on`.
    pub fn with(self, other: Flags, on: bool) -> Flags {
        if on { Flags(self.0 | other.0) } else { self }
    }
}

/// What the watcher keeps of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `metadata.uid`.
    pub uid: Box<str>,
    /// `metadata.resourceVersion`.
    pub resource_version: Box<str>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Hash of what makes a job for the object itself: generation, labels,
    /// annotations, finalizers, owner references, deletion. Status is not in
    /// it, so a worker's status write does not come back as a job. For
    /// Secrets and ConfigMaps (metadata-only watches) it is the resourceVersion.
    pub fingerprint: u64,
    /// Hash of the status fields other objects' jobs depend on (Machine
    /// addresses and initialization, Cluster endpoint, pool reservation).
    pub related: u64,
    /// The CAPI cluster the object belongs to.
    pub cluster: Option<Sym>,
    /// RemoteMachine and PooledRemoteMachine: the pool.
    pub pool: Option<Sym>,
    /// See [`Flags`].
    pub flags: Flags,
    /// Secrets and ConfigMaps it reads: their changes make jobs for it.
    pub uses: Box<[Key]>,
    /// Objects its changes make jobs for (Machine → bootstrap config, ...).
    pub notifies: Box<[Key]>,
}

impl Summary {
    /// Heap and inline bytes, an estimate for the memory test.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>()
            + self.uid.len()
            + self.resource_version.len()
            + (self.uses.len() + self.notifies.len()) * size_of::<Key>()
    }
}

/// Turns a typed object into its key and summary.
pub trait Summarize {
    /// The kind (the watch's, for objects that do not say).
    const KIND: ObjKind;
    /// The key and summary; `None` for objects without a name or namespace.
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)>;
}

/// The parts every kind shares.
struct Base {
    key: Key,
    summary: Summary,
}

fn base(kind: ObjKind, meta: &ObjectMeta, interner: &Interner) -> Option<Base> {
    let ns = interner.intern(meta.namespace.as_deref()?);
    let name: Sym = Arc::from(meta.name.as_deref()?);
    let annotations = meta.annotations.as_ref();
    let flags = Flags::default()
        .with(
            Flags::PAUSED_ANNOTATION,
            annotations.is_some_and(|a| a.contains_key(labels::PAUSED)),
        )
        .with(Flags::DELETING, meta.deletion_timestamp.is_some());
    let cluster = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::CLUSTER_NAME))
        .map(|c| interner.intern(c));
    Some(Base {
        key: Key {
            kind,
            ns,
            name: name.clone(),
        },
        summary: Summary {
            uid: meta.uid.as_deref().unwrap_or_default().into(),
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            generation: meta.generation,
            fingerprint: fingerprint(meta),
            related: 0,
            cluster,
            pool: None,
            flags,
            uses: Box::new([]),
            notifies: Box::new([]),
        },
    })
}

/// The hash of the metadata a handler cares about (see [`Summary::fingerprint`]).
pub fn fingerprint(meta: &ObjectMeta) -> u64 {
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    for o in meta.owner_references.as_deref().unwrap_or_default() {
        (&o.uid, &o.kind, &o.name, o.controller).hash(&mut h);
    }
    // The timestamp never changes once set; only its presence matters.
    meta.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Hashes API types that do not implement `Hash`, through their JSON.
fn hash_json(value: &impl serde::Serialize) -> u64 {
    hash_of(serde_json::to_vec(value).unwrap_or_default())
}

/// Collects the Secrets and ConfigMaps an object reads, without repeats.
struct Uses<'a> {
    ns: &'a Sym,
    interner: &'a Interner,
    keys: Vec<Key>,
}

impl<'a> Uses<'a> {
    fn new(ns: &'a Sym, interner: &'a Interner) -> Self {
        Self {
            ns,
            interner,
            keys: Vec::new(),
        }
    }

    fn add(&mut self, kind: ObjKind, ns: Option<&str>, name: &str) {
        if name.is_empty() {
            return;
        }
        let key = Key {
            kind,
            ns: ns.map_or_else(|| self.ns.clone(), |n| self.interner.intern(n)),
            name: self.interner.intern(name),
        };
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    fn content_source(&mut self, source: &ContentSource) {
        if let Some(s) = &source.secret_ref {
            self.add(ObjKind::Secret, None, &s.name);
        }
        if let Some(c) = &source.config_map_ref {
            self.add(ObjKind::ConfigMap, None, &c.name);
        }
    }

    fn bootstrap(&mut self, files: &[File], provisioner: &ProvisionerSpec) {
        for source in files.iter().filter_map(|f| f.content_from.as_ref()) {
            self.content_source(source);
        }
        if let Some(source) = &provisioner.custom_user_data_ref {
            self.content_source(source);
        }
    }

    fn hosted(&mut self, spec: &k0smotron::ClusterSpec) {
        if let Some(r) = spec
            .remote_host_cluster
            .as_ref()
            .and_then(|r| r.kubeconfig_ref.as_ref())
        {
            let ns = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
            self.add(ObjKind::Secret, ns, &r.name);
        }
        if let Some(kine) = &spec.storage.kine {
            self.add(ObjKind::Secret, None, &kine.data_source_secret_name);
        }
        // User-provided manifests and mounts; certificateRefs are left out:
        // the handler generates those Secrets itself.
        for v in &spec.manifests {
            if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                self.add(ObjKind::Secret, None, s);
            }
            if let Some(c) = &v.config_map {
                self.add(ObjKind::ConfigMap, None, &c.name);
            }
        }
        for m in &spec.mounts {
            let source = &m.volume_source;
            if let Some(s) = source
                .get("secret")
                .and_then(|s| s.get("secretName"))
                .and_then(|s| s.as_str())
            {
                self.add(ObjKind::Secret, None, s);
            }
            if let Some(c) = source
                .get("configMap")
                .and_then(|c| c.get("name"))
                .and_then(|c| c.as_str())
            {
                self.add(ObjKind::ConfigMap, None, c);
            }
        }
    }

    fn finish(self) -> Box<[Key]> {
        self.keys.into_boxed_slice()
    }
}

fn bootstrap_waiting(
    status: Option<&drover_shared::api::bootstrap::BootstrapConfigStatus>,
) -> bool {
    !status.is_some_and(|s| {
        s.data_secret_name.is_some() || s.initialization.data_secret_created == Some(true)
    })
}

impl Summarize for K0sWorkerConfig {
    const KIND: ObjKind = ObjKind::K0sWorkerConfig;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let mut uses = Uses::new(&key.ns, interner);
        uses.bootstrap(&self.spec.files, &self.spec.provisioner);
        summary.uses = uses.finish();
        summary.flags = summary
            .flags
            .with(Flags::WAITING, bootstrap_waiting(self.status.as_ref()));
        Some((key, summary))
    }
}

impl Summarize for K0sControllerConfig {
    const KIND: ObjKind = ObjKind::K0sControllerConfig;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let spec = &self.spec.k0s_config_spec;
        let mut uses = Uses::new(&key.ns, interner);
        uses.bootstrap(&spec.files, &spec.provisioner);
        summary.uses = uses.finish();
        summary.flags = summary
            .flags
            .with(Flags::WAITING, bootstrap_waiting(self.status.as_ref()));
        Some((key, summary))
    }
}

impl Summarize for K0sControlPlane {
    const KIND: ObjKind = ObjKind::K0sControlPlane;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let spec = &self.spec.k0s_config_spec;
        let mut uses = Uses::new(&key.ns, interner);
        uses.bootstrap(&spec.files, &spec.provisioner);
        summary.uses = uses.finish();
        Some((key, summary))
    }
}

impl Summarize for K0smotronControlPlane {
    const KIND: ObjKind = ObjKind::K0smotronControlPlane;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let mut uses = Uses::new(&key.ns, interner);
        uses.hosted(&self.spec.cluster);
        summary.uses = uses.finish();
        Some((key, summary))
    }
}

impl Summarize for k0smotron::Cluster {
    const KIND: ObjKind = ObjKind::K0smotronCluster;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let mut uses = Uses::new(&key.ns, interner);
        uses.hosted(&self.spec);
        summary.uses = uses.finish();
        // A K0smotronControlPlane waits for its hosted cluster's external
        // address and ready replicas (k0smotron watches the Clusters it
        // owns, any owner reference): those changes notify it.
        let status = self.status.as_ref();
        summary.related = hash_json(&(
            &self.spec.external_address,
            status.map(|s| (s.replicas, s.ready_replicas, s.updated_replicas)),
            status.map(|s| condition_states(&s.conditions)),
        ));
        let owners: Vec<Key> = self
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|o| {
                o.kind == ObjKind::K0smotronControlPlane.name()
                    && owners::group_of(&o.api_version) == ObjKind::K0smotronControlPlane.group()
            })
            .map(|o| ref_key(ObjKind::K0smotronControlPlane, &key.ns, &o.name, interner))
            .collect();
        summary.notifies = owners.into_boxed_slice();
        Some((key, summary))
    }
}

/// Each condition's type and status, without times, reasons or messages:
/// a transition is news to the objects that wait on it, a rewrite of the
/// same state is not.
fn condition_states(conditions: &[drover_shared::api::common::Condition]) -> Vec<(&str, String)> {
    conditions
        .iter()
        .map(|c| (c.r#type.as_str(), format!("{:?}", c.status)))
        .collect()
}

impl Summarize for JoinTokenRequest {
    const KIND: ObjKind = ObjKind::JoinTokenRequest;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        if !self.spec.cluster_name.is_empty() {
            summary.cluster = Some(interner.intern(&self.spec.cluster_name));
        }
        let has_token = self.status.as_ref().is_some_and(|s| !s.token_id.is_empty());
        summary.flags = summary.flags.with(Flags::WAITING, !has_token);
        Some((key, summary))
    }
}

impl Summarize for RemoteCluster {
    const KIND: ObjKind = ObjKind::RemoteCluster;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, summary } = base(Self::KIND, &self.metadata, interner)?;
        Some((key, summary))
    }
}

impl Summarize for RemoteMachine {
    const KIND: ObjKind = ObjKind::RemoteMachine;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        if !self.spec.pool.is_empty() {
            summary.pool = Some(interner.intern(&self.spec.pool));
        }
        let mut uses = Uses::new(&key.ns, interner);
        if let Some(r) = &self.spec.ssh_key_ref {
            uses.add(ObjKind::Secret, None, &r.name);
        }
        summary.uses = uses.finish();
        let provisioned = self
            .status
            .as_ref()
            .and_then(|s| s.initialization.as_ref())
            .and_then(|i| i.provisioned)
            == Some(true);
        summary.flags = summary.flags.with(Flags::WAITING, !provisioned);
        Some((key, summary))
    }
}

impl Summarize for PooledRemoteMachine {
    const KIND: ObjKind = ObjKind::PooledRemoteMachine;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        summary.pool = Some(interner.intern(&self.spec.pool));
        let status = self.status.clone().unwrap_or_default();
        summary.flags = summary.flags.with(Flags::RESERVED, status.reserved);
        summary.related = hash_json(&status.machine_ref);
        if !status.machine_ref.name.is_empty() {
            let ns = if status.machine_ref.namespace.is_empty() {
                key.ns.clone()
            } else {
                interner.intern(&status.machine_ref.namespace)
            };
            summary.notifies = Box::new([Key {
                kind: ObjKind::RemoteMachine,
                ns,
                name: interner.intern(&status.machine_ref.name),
            }]);
        }
        Some((key, summary))
    }
}

impl Summarize for capi::Cluster {
    const KIND: ObjKind = ObjKind::CapiCluster;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        summary.cluster = Some(interner.intern(&key.name));
        let status = self.status.as_ref();
        let init = status.and_then(|s| s.initialization.as_ref());
        let cp_initialized = init.and_then(|i| i.control_plane_initialized) == Some(true)
            || status
                .is_some_and(|s| conditions::is_true(&s.conditions, "ControlPlaneInitialized"));
        let infra = init.and_then(|i| i.infrastructure_provisioned) == Some(true);
        summary.flags = summary
            .flags
            .with(Flags::CONTROL_PLANE_INITIALIZED, cp_initialized)
            .with(Flags::INFRASTRUCTURE_PROVISIONED, infra)
            .with(Flags::SPEC_PAUSED, self.spec.paused == Some(true));
        summary.related = hash_json(&self.spec.control_plane_endpoint);
        let mut notifies = Vec::new();
        if let Some(r) = &self.spec.infrastructure_ref
            && let Some(kind) = ObjKind::from_ref(&r.api_group, &r.kind)
            && kind == ObjKind::RemoteCluster
        {
            notifies.push(ref_key(kind, &key.ns, &r.name, interner));
        }
        if let Some(r) = &self.spec.control_plane_ref
            && let Some(kind) = ObjKind::from_ref(&r.api_group, &r.kind)
            && matches!(
                kind,
                ObjKind::K0sControlPlane | ObjKind::K0smotronControlPlane
            )
        {
            notifies.push(ref_key(kind, &key.ns, &r.name, interner));
        }
        summary.notifies = notifies.into_boxed_slice();
        Some((key, summary))
    }
}

impl Summarize for capi::Machine {
    const KIND: ObjKind = ObjKind::Machine;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        let Base { key, mut summary } = base(Self::KIND, &self.metadata, interner)?;
        let spec = &self.spec;
        if !spec.cluster_name.is_empty() {
            summary.cluster = Some(interner.intern(&spec.cluster_name));
        }
        // Of the conditions, only the states of those CAPI core computes and
        // K0sControlPlane scaling reads (Ready, Available, UpToDate); their
        // times and messages are left out, so rewrites are not news.
        let status = self.status.as_ref();
        let gating: Vec<_> = status
            .map(|s| condition_states(&s.conditions))
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| matches!(*t, "Ready" | "Available" | "UpToDate"))
            .collect();
        summary.related = hash_json(&(
            &spec.bootstrap.data_secret_name,
            &spec.provider_id,
            &spec.version,
            status.map(|s| (&s.initialization, &s.node_ref, &s.addresses, &s.phase)),
            gating,
        ));
        let mut notifies = Vec::new();
        if let Some(r) = &spec.bootstrap.config_ref
            && let Some(kind) = ObjKind::from_ref(&r.api_group, &r.kind)
            && kind.is_bootstrap()
        {
            notifies.push(ref_key(kind, &key.ns, &r.name, interner));
        }
        let infra = &spec.infrastructure_ref;
        if ObjKind::from_ref(&infra.api_group, &infra.kind) == Some(ObjKind::RemoteMachine) {
            notifies.push(ref_key(
                ObjKind::RemoteMachine,
                &key.ns,
                &infra.name,
                interner,
            ));
        }
        if let Some(owner) = owners::controller_of(&self.metadata)
            && owner.kind == ObjKind::K0sControlPlane.name()
            && owners::group_of(&owner.api_version) == ObjKind::K0sControlPlane.group()
        {
            notifies.push(ref_key(
                ObjKind::K0sControlPlane,
                &key.ns,
                &owner.name,
                interner,
            ));
        }
        summary.notifies = notifies.into_boxed_slice();
        Some((key, summary))
    }
}

impl Summarize for PartialObjectMeta<Secret> {
    const KIND: ObjKind = ObjKind::Secret;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        metadata_only(Self::KIND, &self.metadata, interner)
    }
}

impl Summarize for PartialObjectMeta<ConfigMap> {
    const KIND: ObjKind = ObjKind::ConfigMap;
    fn summarize(&self, interner: &Interner) -> Option<(Key, Summary)> {
        metadata_only(Self::KIND, &self.metadata, interner)
    }
}

/// Secrets and ConfigMaps: the data is not watched, so any new
/// resourceVersion counts as a change.
fn metadata_only(kind: ObjKind, meta: &ObjectMeta, interner: &Interner) -> Option<(Key, Summary)> {
    let Base { key, mut summary } = base(kind, meta, interner)?;
    summary.fingerprint = hash_of(&summary.resource_version);
    // Their labels name a cluster, but nothing looks them up by cluster.
    summary.cluster = None;
    Some((key, summary))
}

/// The key of an object another one names. Not interned: a bootstrap
/// config or RemoteMachine is named by one Machine only.
fn ref_key(kind: ObjKind, ns: &Sym, name: &str, _interner: &Interner) -> Key {
    Key {
        kind,
        ns: ns.clone(),
        name: Arc::from(name),
    }
}
