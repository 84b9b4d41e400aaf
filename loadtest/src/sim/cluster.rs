//! One simulated cluster: its store, the resources it serves, and the REST
//! verbs on them, independent of HTTP. The HTTP layer ([`super::http`])
//! parses requests into [`Target`]s and options and calls these methods;
//! tests and simulated controllers may call them directly.
//!
//! Every write holds one lock over the store, applies admission and field
//! ownership, then fans the resulting events out on a broadcast channel
//! while still holding the lock, so watchers see events in resourceVersion
//! order.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

use super::admission::{self, Allocations};
use super::apply::{self, Writer};
use super::error::ApiError;
use super::patch::{self, PatchError};
use super::resources::{Registry, ResourceInfo, crd_resource};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{EventType, Resource, Store, Subresource, WatchEvent};

/// What a request addresses: a resource, maybe a namespace, maybe one object
/// and one of its subresources.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resource at the requested version.
    pub info: Arc<ResourceInfo>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// `status` or `scale`.
    pub subresource: Option<String>,
}

/// Options every write takes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`; defaults from the user agent.
    pub field_manager: Option<String>,
    /// `force` (apply only).
    pub force: bool,
    /// The client's User-Agent, for the default field manager.
    pub user_agent: String,
    /// `fieldValidation=Strict`: unknown fields of custom resources are a
    /// 400 instead of being pruned.
    pub strict: bool,
}

impl WriteOptions {
    fn manager(&self) -> String {
        self.field_manager.clone().unwrap_or_else(|| {
            let ua = self.user_agent.split('/').next().unwrap_or_default();
            if ua.is_empty() {
                "unknown".into()
            } else {
                ua.to_owned()
            }
        })
    }
}

/// PATCH content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

/// Deletion propagation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now, collect dependents after (the default).
    #[default]
    Background,
    /// Delete dependents first; the owner waits with `foregroundDeletion`.
    Foreground,
    /// Keep dependents, dropping their owner references.
    Orphan,
}

/// `DeleteOptions`, as far as the sim honours them.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Query of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
}

/// What a simulated controller's event loop gets next.
pub(crate) enum ControllerEvent {
    /// A change.
    Change(Arc<WatchEvent>),
    /// Events were missed (the controller fell behind): look at everything.
    Resync,
    /// The cluster stopped.
    Stop,
}

/// The next change for a simulated controller, or a resync when it lagged.
pub(crate) async fn next_event(
    events: &mut broadcast::Receiver<Arc<WatchEvent>>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> ControllerEvent {
    tokio::select! {
        ev = events.recv() => match ev {
            Ok(ev) => ControllerEvent::Change(ev),
            Err(broadcast::error::RecvError::Lagged(_)) => ControllerEvent::Resync,
            Err(broadcast::error::RecvError::Closed) => ControllerEvent::Stop,
        },
        _ = stop.changed() => ControllerEvent::Stop,
    }
}

/// Work for the simulated garbage collector and namespace controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Housekeeping {
    /// Check the dependents of an object that went away or is being deleted.
    OwnerChanged(String),
    /// Check that every owner of this object (uid) still exists.
    CheckOwners(String),
    /// A namespace is terminating: empty it, then remove it.
    NamespaceTerminating(String),
    /// A CRD is being deleted: delete its custom resources, then let it go.
    CrdTerminating(String),
}

type ObjectRef = (Resource, Option<String>, String);

pub(crate) struct State {
    pub(crate) store: Store,
    alloc: Allocations,
    /// uid → where the object lives.
    pub(crate) by_uid: HashMap<String, ObjectRef>,
    /// owner uid → dependents' uids.
    pub(crate) dependents: HashMap<String, BTreeSet<String>>,
}

/// One simulated cluster.
pub struct Cluster {
    name: String,
    state: Mutex<State>,
    /// Copy-on-write: requests resolve paths without the store lock; CRD
    /// installs (rare) swap in a new registry.
    registry: RwLock<Arc<Registry>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    housekeeping: mpsc::UnboundedSender<Housekeeping>,
}

/// The namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

impl Cluster {
    /// A cluster with the built-in kinds and the initial namespaces.
    /// Housekeeping work (GC, namespace cleanup) is sent to the returned
    /// receiver; [`super::controllers`] runs it.
    pub fn new(
        name: &str,
        history_limit: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Housekeeping>) {
        let (events, _) = broadcast::channel(4096);
        let (housekeeping, rx) = mpsc::unbounded_channel();
        let cluster = Arc::new(Self {
            name: name.to_owned(),
            state: Mutex::new(State {
                store: Store::new(history_limit),
                alloc: Allocations::default(),
                by_uid: HashMap::new(),
                dependents: HashMap::new(),
            }),
            registry: RwLock::new(Arc::new(Registry::new())),
            events,
            housekeeping,
        });
        let ns = cluster
            .registry()
            .get("", "v1", "namespaces")
            .expect("namespaces are built in");
        for n in INITIAL_NAMESPACES {
            let t = Target {
                info: ns.clone(),
                namespace: None,
                name: None,
                subresource: None,
            };
            cluster
                .create(
                    &t,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}),
                    &WriteOptions::default(),
                )
                .expect("initial namespaces are valid");
        }
        (cluster, rx)
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a sim bug; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the served resources.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update_registry(&self, f: impl FnOnce(&mut Registry)) {
        let mut guard = self.registry.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    fn info_for(&self, r: &Resource) -> Result<Arc<ResourceInfo>, ApiError> {
        self.registry()
            .all()
            .find(|i| i.resource() == *r)
            .cloned()
            .ok_or_else(ApiError::not_found_path)
    }

    /// Subscribes to every change, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Every stored object of `res`, for simulated controllers that fell
    /// behind the event stream and must look at everything again.
    pub(crate) fn snapshot(&self, res: &Resource) -> Vec<(Option<String>, Arc<Value>)> {
        let st = self.lock();
        let everything = ListQuery::default();
        st.store
            .list(
                res,
                None,
                &everything.labels,
                &everything.fields,
                None,
                None,
            )
            .map(|page| {
                page.items
                    .into_iter()
                    .map(|o| (o["metadata"]["namespace"].as_str().map(str::to_owned), o))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().store.resource_version()
    }

    /// Forgets the watch history: every watch resume before now gets 410.
    pub fn expire_history(&self) {
        self.lock().store.expire_history();
    }

    /// Sets how many events are kept for watch resumes.
    pub fn set_history_limit(&self, limit: usize) {
        self.lock().store.set_history_limit(limit);
    }

    /// Resolves `group/version` and the path segments after it
    /// (`namespaces/ns/plural/name/sub` or `plural/name/sub`).
    pub fn resolve(&self, group: &str, version: &str, segs: &[&str]) -> Result<Target, ApiError> {
        let reg = self.registry();
        let not_found = || ApiError::not_found_path();
        let namespaced_path = segs.len() >= 3
            && segs[0] == "namespaces"
            && reg
                .get(group, version, segs[2])
                .is_some_and(|r| r.namespaced);
        let (namespace, rest) = if namespaced_path {
            (Some(segs[1].to_owned()), &segs[2..])
        } else {
            (None, segs)
        };
        let (plural, name, sub) = match rest {
            [p] => (*p, None, None),
            [p, n] => (*p, Some(*n), None),
            [p, n, s] => (*p, Some(*n), Some(*s)),
            _ => return Err(not_found()),
        };
        let info = reg.get(group, version, plural).ok_or_else(not_found)?;
        if let Some(s) = sub {
            let ok = match s {
                "status" => info.status_subresource,
                "scale" => info.scale.is_some(),
                _ => false,
            };
            if !ok {
                return Err(not_found());
            }
        }
        if !info.namespaced && namespace.is_some() {
            return Err(not_found());
        }
        Ok(Target {
            info,
            namespace,
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        })
    }

    /// GET of one object (or its status or scale).
    pub fn get(&self, t: &Target) -> Result<Arc<Value>, ApiError> {
        let st = self.lock();
        let obj = st
            .store
            .get(&t.info.resource(), t.namespace.as_deref(), name_of(t)?)?;
        Ok(match t.subresource.as_deref() {
            Some("scale") => Arc::new(scale_view(&t.info, &obj)),
            _ => output(&t.info, &obj),
        })
    }

    /// LIST, as a `<Kind>List`.
    pub fn list(&self, t: &Target, q: &ListQuery) -> Result<ObjectList, ApiError> {
        let st = self.lock();
        let page = st.store.list(
            &t.info.resource(),
            t.namespace.as_deref(),
            &q.labels,
            &q.fields,
            q.limit,
            q.continue_token.as_deref(),
        )?;
        Ok(ObjectList {
            api_version: t.info.api_version(),
            kind: format!("{}List", t.info.kind),
            resource_version: page.resource_version.to_string(),
            continue_token: page.continue_token,
            items: page.items.iter().map(|o| output(&t.info, o)).collect(),
        })
    }

    /// POST: creates an object. Returns the stored object.
    pub fn create(
        &self,
        t: &Target,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut obj = expect_object(body)?;
        check_type_meta(&t.info, &mut obj)?;
        set_namespace(t, &mut obj)?;
        if t.subresource.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let obj = stored_form(&t.info, obj);
        let mut st = self.lock();
        let created = self.create_locked(&mut st, t, obj, opts, false)?;
        Ok(output(&t.info, &created))
    }

    fn create_locked(
        &self,
        st: &mut State,
        t: &Target,
        mut obj: Value,
        opts: &WriteOptions,
        applied: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let info = &t.info;
        let meta = obj["metadata"].as_object_mut().expect("checked above");
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), name.into());
                }
                _ => {
                    return Err(ApiError::invalid(
                        &info.kind,
                        "",
                        vec![(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            }
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::resource_version_on_create());
        }
        for f in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            meta.remove(f);
        }
        // With a status subresource, status is not set on create (the CRD
        // admission writes its own status below).
        if info.status_subresource
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        if info.namespaced {
            require_live_namespace(st, t.namespace.as_deref().unwrap_or_default())?;
        }
        if info.custom {
            let crd = st.store.get(&crd_resource(), None, &info.qualified());
            if crd.is_ok_and(|c| c["metadata"].get("deletionTimestamp").is_some()) {
                return Err(ApiError {
                    code: 405,
                    reason: "MethodNotAllowed",
                    message: "create not allowed while custom resource definition is terminating"
                        .into(),
                    details: None,
                });
            }
        }
        admission::admit(info, &mut obj, None, &mut st.alloc, opts.strict)?;
        let now = now();
        // An apply has recorded its own ownership.
        if !applied {
            apply::record_update(
                None,
                &mut obj,
                Writer {
                    manager: &opts.manager(),
                    subresource: None,
                    api_version: &info.api_version(),
                    now: &now,
                },
            );
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let res = info.resource();
        let reserved = admission::node_ports(&obj);
        let created = if opts.dry_run {
            st.store
                .dry_run(|s| s.create(&res, info.rules(), obj, &uid, &now))
        } else {
            st.store.create(&res, info.rules(), obj, &uid, &now)
        };
        // Node ports reserved by admission stay only with a stored object.
        if created.is_err() || opts.dry_run {
            st.alloc.release_ports(&reserved);
        }
        let created = created?;
        self.after_write(st);
        Ok(created)
    }

    /// PUT: replaces an object (or its status, or its scale).
    pub fn replace(
        &self,
        t: &Target,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut obj = expect_object(body)?;
        if t.subresource.as_deref() == Some("scale") {
            return self.write_scale(t, obj, opts);
        }
        check_type_meta(&t.info, &mut obj)?;
        set_namespace(t, &mut obj)?;
        let obj = stored_form(&t.info, obj);
        let name = name_of(t)?;
        let body_name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if t.info.custom
            && obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err(ApiError::invalid(
                &t.info.kind,
                name,
                vec![(
                    "metadata.resourceVersion".into(),
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            ));
        }
        let mut st = self.lock();
        let updated = self.update_locked(&mut st, t, obj, opts, false)?;
        Ok(output(&t.info, &updated))
    }

    fn update_locked(
        &self,
        st: &mut State,
        t: &Target,
        mut obj: Value,
        opts: &WriteOptions,
        applied: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let info = &t.info;
        let res = info.resource();
        let name = name_of(t)?;
        let old = st.store.get(&res, t.namespace.as_deref(), name)?;
        let sub = match t.subresource.as_deref() {
            Some("status") => Subresource::Status,
            _ => Subresource::Main,
        };
        // Admission sees the object as it will be stored.
        if sub == Subresource::Status {
            let status = obj.get("status").cloned();
            let rv = obj.pointer("/metadata/resourceVersion").cloned();
            let managed = obj.pointer("/metadata/managedFields").cloned();
            obj = (*old).clone();
            if applied && let Some(m) = managed {
                obj["metadata"]["managedFields"] = m;
            }
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            }
            match rv {
                Some(rv) => obj["metadata"]["resourceVersion"] = rv,
                None => {
                    obj["metadata"]
                        .as_object_mut()
                        .map(|m| m.remove("resourceVersion"));
                }
            }
        }
        if sub == Subresource::Main && info.status_subresource {
            // Main-resource writes cannot change status: it is reset before
            // validation and field ownership, as the apiserver does.
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        let old_ports = admission::node_ports(&old);
        admission::admit(info, &mut obj, Some(&old), &mut st.alloc, opts.strict)?;
        let now = now();
        if !applied {
            apply::record_update(
                Some(&old),
                &mut obj,
                Writer {
                    manager: &opts.manager(),
                    subresource: t.subresource.as_deref(),
                    api_version: &info.api_version(),
                    now: &now,
                },
            );
        }
        let new_ports = admission::node_ports(&obj);
        let updated = if opts.dry_run {
            st.store.dry_run(|s| s.update(&res, info.rules(), sub, obj))
        } else {
            st.store.update(&res, info.rules(), sub, obj)
        };
        // Ports the write gave up are free once it is stored; ports it took
        // are free again if it was not.
        let (kept, freed) = if updated.is_ok() && !opts.dry_run {
            (new_ports, old_ports)
        } else {
            (old_ports, new_ports)
        };
        let freed: Vec<i64> = freed.into_iter().filter(|p| !kept.contains(p)).collect();
        st.alloc.release_ports(&freed);
        let updated = updated?;
        self.after_write(st);
        Ok(updated)
    }

    /// PATCH of an object, its status or its scale. Returns the object and
    /// whether it was created (apply of a missing object).
    pub fn patch(
        &self,
        t: &Target,
        ty: PatchType,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let name = name_of(t)?.to_owned();
        if ty == PatchType::Strategic && t.info.custom {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let mut st = self.lock();
        let res = t.info.resource();
        let current = match st.store.get(&res, t.namespace.as_deref(), &name) {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 && ty == PatchType::Apply && t.subresource.is_none() => None,
            Err(e) => return Err(e),
        };
        if t.subresource.as_deref() == Some("scale") {
            let current = current.expect("scale patches need the object");
            let mut scale = scale_view(&t.info, &current);
            apply_patch(ty, &mut scale, &body)?;
            drop(st);
            return Ok((self.write_scale(t, scale, opts)?, false));
        }
        let mut next = match ty {
            PatchType::Apply => {
                let field_manager = opts.field_manager.as_deref().ok_or_else(|| {
                    ApiError::bad_request(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    )
                })?;
                let mut applied = expect_object(body)?;
                let want_av = t.info.api_version();
                if applied["apiVersion"].as_str().is_none_or(str::is_empty)
                    || applied["kind"].as_str().is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(format!(
                        "Incorrect version specified in apply patch. Specified patch version: {}, expected: {want_av}",
                        applied["apiVersion"].as_str().unwrap_or_default()
                    )));
                }
                check_type_meta(&t.info, &mut applied)?;
                set_namespace(t, &mut applied)?;
                let applied = stored_form(&t.info, applied);
                let applied_name = applied["metadata"]["name"].as_str().unwrap_or_default();
                if applied_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )));
                }
                let now = now();
                let writer = Writer {
                    manager: field_manager,
                    subresource: t.subresource.as_deref(),
                    api_version: &t.info.api_version(),
                    now: &now,
                };
                let mut result = apply::apply(current.as_deref(), &applied, writer, opts.force)
                    .map_err(|c| {
                        ApiError::apply_conflict(
                            &t.info.qualified(),
                            &name,
                            &t.info.api_version(),
                            c,
                        )
                    })?;
                // An applied resourceVersion is a precondition.
                if let Some(rv) = applied
                    .pointer("/metadata/resourceVersion")
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                {
                    result["metadata"]["resourceVersion"] = rv.clone();
                }
                if current.is_none() {
                    let created = self.create_locked(&mut st, t, result, opts, true)?;
                    return Ok((output(&t.info, &created), true));
                }
                result
            }
            _ => {
                // Patches apply to the object as this API shows it.
                let current = current.expect("non-apply patches need the object");
                let mut obj = (*output(&t.info, &current)).clone();
                apply_patch(ty, &mut obj, &body)?;
                stored_form(&t.info, obj)
            }
        };
        for (field, want) in [
            ("name", Some(name.as_str())),
            ("namespace", t.namespace.as_deref()),
        ] {
            if next["metadata"][field].as_str() != want {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field}: the patch may not change the object's {field}"
                )));
            }
        }
        if next.get("apiVersion").is_none() {
            next["apiVersion"] = t.info.api_version().into();
        }
        let updated = self.update_locked(&mut st, t, next, opts, ty == PatchType::Apply)?;
        Ok((output(&t.info, &updated), false))
    }

    fn write_scale(
        &self,
        t: &Target,
        scale: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let paths = t.info.scale.clone().ok_or_else(ApiError::not_found_path)?;
        let name = name_of(t)?;
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    name,
                    vec![("spec.replicas".into(), "Required value".into())],
                )
            })?;
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                name,
                vec![(
                    "spec.replicas".into(),
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let mut st = self.lock();
        let current = st
            .store
            .get(&t.info.resource(), t.namespace.as_deref(), name)?;
        let mut obj = (*current).clone();
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
        {
            obj["metadata"]["resourceVersion"] = rv.into();
        }
        set_path(&mut obj, &paths.spec_replicas, replicas.into());
        let main = Target {
            subresource: None,
            ..t.clone()
        };
        let updated = self.update_locked(&mut st, &main, obj, opts, false)?;
        Ok(Arc::new(scale_view(&t.info, &updated)))
    }

    /// DELETE of one object. Returns the answer body (the object, or a
    /// Success Status for built-in kinds removed at once).
    pub fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Arc<Value>, ApiError> {
        if t.subresource.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let name = name_of(t)?;
        let res = t.info.resource();
        let ns = t.namespace.as_deref();
        let mut st = self.lock();
        let run = |s: &mut Store| -> Result<(Arc<Value>, bool), ApiError> {
            let current = s.get(&res, ns, name)?;
            check_preconditions(&t.info, name, &current, opts)?;
            let being_deleted = current["metadata"].get("deletionTimestamp").is_some();
            let now = now();
            if t.info.kind == "Namespace" && t.info.group.is_empty() {
                let obj = s.mark_deleting(&res, ns, name, &now, |o| {
                    o["status"]["phase"] = "Terminating".into();
                })?;
                return Ok((obj, false));
            }
            let extra = match opts.propagation {
                Propagation::Background => None,
                Propagation::Foreground => Some("foregroundDeletion"),
                Propagation::Orphan => Some("orphan"),
            };
            match extra {
                Some(f) if !being_deleted => {
                    let obj = s.mark_deleting(&res, ns, name, &now, |o| {
                        let meta = o["metadata"]
                            .as_object_mut()
                            .expect("stored objects have metadata");
                        let list = meta
                            .entry("finalizers")
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Some(l) = list.as_array_mut()
                            && !l.iter().any(|x| x == f)
                        {
                            l.push(f.into());
                        }
                    })?;
                    Ok((obj, false))
                }
                _ => s.delete(&res, ns, name, None, None, &now),
            }
        };
        let (obj, gone) = if opts.dry_run {
            st.store.dry_run(run)?
        } else {
            run(&mut st.store)?
        };
        self.after_write(&mut st);
        if gone && !t.info.custom && t.info.kind != "Pod" {
            return Ok(Arc::new(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": t.info.group,
                    "kind": t.info.plural,
                    "uid": obj["metadata"]["uid"],
                }
            })));
        }
        Ok(output(&t.info, &obj))
    }

    /// DELETE of a collection: deletes every matching object, returns the list.
    pub fn delete_collection(
        &self,
        t: &Target,
        q: &ListQuery,
        opts: &DeleteOptions,
    ) -> Result<ObjectList, ApiError> {
        let mut list = self.list(
            t,
            &ListQuery {
                limit: None,
                continue_token: None,
                ..q.clone()
            },
        )?;
        let mut items = Vec::new();
        for item in &list.items {
            let one = Target {
                namespace: item["metadata"]["namespace"].as_str().map(str::to_owned),
                name: item["metadata"]["name"].as_str().map(str::to_owned),
                ..t.clone()
            };
            match self.delete(&one, opts) {
                Ok(v) if v["kind"] != "Status" => items.push(v),
                Ok(_) => items.push(item.clone()),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        list.items = items;
        list.resource_version = self.resource_version().to_string();
        Ok(list)
    }

    /// Publishes new events, keeps the uid and owner indexes and the served
    /// CRDs in step with them, and queues housekeeping.
    fn after_write(&self, st: &mut State) {
        for ev in st.store.drain_new_events() {
            let obj = &ev.object;
            let uid = obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let owners: Vec<String> = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["uid"].as_str().map(str::to_owned))
                .collect();
            if let Some(prev) = &ev.prev {
                for o in prev["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(set) = o["uid"].as_str().and_then(|u| st.dependents.get_mut(u)) {
                        set.remove(&uid);
                    }
                }
            }
            let is_crd = ev.resource == crd_resource();
            let deleting = obj["metadata"].get("deletionTimestamp").is_some();
            match ev.kind {
                EventType::Added | EventType::Modified => {
                    let name = obj["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    st.by_uid.insert(
                        uid.clone(),
                        (ev.resource.clone(), ev.namespace.clone(), name),
                    );
                    for o in &owners {
                        st.dependents
                            .entry(o.clone())
                            .or_default()
                            .insert(uid.clone());
                    }
                    let prev_owners: Vec<&str> = ev
                        .prev
                        .iter()
                        .flat_map(|p| {
                            p["metadata"]["ownerReferences"]
                                .as_array()
                                .into_iter()
                                .flatten()
                        })
                        .filter_map(|o| o["uid"].as_str())
                        .collect();
                    if owners.iter().any(|o| !prev_owners.contains(&o.as_str())) {
                        let _ = self
                            .housekeeping
                            .send(Housekeeping::CheckOwners(uid.clone()));
                    }
                    if deleting {
                        let _ = self
                            .housekeeping
                            .send(Housekeeping::OwnerChanged(uid.clone()));
                        let n = obj["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        if ev.resource == Resource::new("", "namespaces") {
                            let _ = self
                                .housekeeping
                                .send(Housekeeping::NamespaceTerminating(n));
                        } else if is_crd {
                            let _ = self.housekeeping.send(Housekeeping::CrdTerminating(n));
                        }
                    }
                    if is_crd && !deleting {
                        // Admission validated it; a failure here is a sim bug worth seeing.
                        self.update_registry(|reg| {
                            if let Err(e) = reg.install_crd(obj) {
                                tracing::error!(error = %e, "installing a CRD that passed admission failed");
                            }
                        });
                    }
                }
                EventType::Deleted => {
                    st.by_uid.remove(&uid);
                    for o in &owners {
                        if let Some(set) = st.dependents.get_mut(o) {
                            set.remove(&uid);
                        }
                        // A foreground-deleting owner may be waiting for this one.
                        let _ = self
                            .housekeeping
                            .send(Housekeeping::OwnerChanged(o.clone()));
                    }
                    if ev.resource == Resource::new("", "services") {
                        st.alloc.release(obj);
                    }
                    if st.dependents.get(&uid).is_some_and(|d| !d.is_empty()) {
                        let _ = self
                            .housekeeping
                            .send(Housekeeping::OwnerChanged(uid.clone()));
                    }
                    if is_crd {
                        let group = obj["spec"]["group"].as_str().unwrap_or_default();
                        let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default();
                        self.update_registry(|reg| reg.remove_crd(group, plural));
                    }
                }
            }
            // No receivers is fine: nobody watches yet.
            let _ = self.events.send(Arc::new(ev));
        }
    }

    /// Removes a finalizer the sim's own controllers manage (`orphan`,
    /// `foregroundDeletion`), as their owner would.
    pub(crate) fn remove_finalizer(&self, r: &ObjectRef, finalizer: &str) -> Result<(), ApiError> {
        let mut st = self.lock();
        let current = st.store.get(&r.0, r.1.as_deref(), &r.2)?;
        let mut obj = (*current).clone();
        if let Some(list) = obj["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f != finalizer);
        }
        let info = self.info_for(&r.0)?;
        st.store
            .update(&r.0, info.rules(), Subresource::Main, obj)?;
        self.after_write(&mut st);
        Ok(())
    }

    /// Writes an object through the normal update path as a built-in
    /// controller (`manager`), for the sim's controllers.
    pub(crate) fn controller_update(
        &self,
        r: &ObjectRef,
        status: bool,
        manager: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<(), ApiError> {
        let mut st = self.lock();
        let current = st.store.get(&r.0, r.1.as_deref(), &r.2)?;
        let info = self.info_for(&r.0)?;
        let mut obj = (*current).clone();
        edit(&mut obj);
        let t = Target {
            info,
            namespace: r.1.clone(),
            name: Some(r.2.clone()),
            subresource: status.then(|| "status".to_owned()),
        };
        let opts = WriteOptions {
            field_manager: Some(manager.to_owned()),
            ..WriteOptions::default()
        };
        self.update_locked(&mut st, &t, obj, &opts, false)?;
        Ok(())
    }

    /// Deletes an object for the sim's controllers.
    pub(crate) fn controller_delete(
        &self,
        r: &ObjectRef,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        let info = self.info_for(&r.0)?;
        let t = Target {
            info,
            namespace: r.1.clone(),
            name: Some(r.2.clone()),
            subresource: None,
        };
        self.delete(
            &t,
            &DeleteOptions {
                propagation,
                ..DeleteOptions::default()
            },
        )
        .map(|_| ())
    }

    /// Finishes a namespace deletion once it is empty.
    pub(crate) fn finish_namespace(&self, name: &str) -> Result<bool, ApiError> {
        let mut st = self.lock();
        let empty = !st
            .by_uid
            .values()
            .any(|(_, ns, _)| ns.as_deref() == Some(name));
        if !empty {
            return Ok(false);
        }
        st.store
            .finish_deletion(&Resource::new("", "namespaces"), None, name)?;
        self.after_write(&mut st);
        Ok(true)
    }

    /// Queues housekeeping work again after `delay`.
    pub(crate) fn requeue(&self, work: Housekeeping, delay: std::time::Duration) {
        let tx = self.housekeeping.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(work);
        });
    }

    /// Runs `f` over the locked state (for the sim's controllers).
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }
}

fn check_preconditions(
    info: &ResourceInfo,
    name: &str,
    current: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let meta = &current["metadata"];
    if let Some(uid) = &opts.precondition_uid
        && meta["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &info.qualified(),
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && meta["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            &info.qualified(),
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta["resourceVersion"].as_str().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn apply_patch(ty: PatchType, obj: &mut Value, body: &Value) -> Result<(), ApiError> {
    match ty {
        PatchType::Merge => {
            patch::merge_patch(obj, body);
            Ok(())
        }
        PatchType::Strategic => {
            patch::strategic_merge_patch(obj, body);
            Ok(())
        }
        PatchType::Json => patch::json_patch(obj, body).map_err(|e| match e {
            PatchError::Malformed(m) => ApiError::bad_request(m),
            PatchError::DoesNotApply(m) => ApiError::invalid_message(m),
        }),
        PatchType::Apply => Err(ApiError::bad_request("apply patches do not apply to scale")),
    }
}

fn require_live_namespace(st: &State, ns: &str) -> Result<(), ApiError> {
    let nsobj = st
        .store
        .get(&Resource::new("", "namespaces"), None, ns)
        .map_err(|_| ApiError::not_found("namespaces", ns))?;
    if nsobj["metadata"].get("deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

fn name_of(t: &Target) -> Result<&str, ApiError> {
    t.name.as_deref().ok_or_else(ApiError::method_not_allowed)
}

fn expect_object(body: Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let mut body = body;
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = Value::Object(Map::new());
    }
    Ok(body)
}

/// Fills in or checks `apiVersion` and `kind` against the endpoint.
fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = want_av.clone().into(),
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        Some(_) => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = info.kind.clone().into(),
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

fn set_namespace(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("checked by expect_object");
    if !t.info.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let Some(path_ns) = &t.namespace else {
        return Err(ApiError::bad_request(
            "the namespace of the object must be given in the request path",
        ));
    };
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), path_ns.clone().into());
            Ok(())
        }
        Some(ns) if ns == path_ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// The object as served at `info`'s version (a copy only when the stored
/// version differs).
pub(crate) fn output(info: &ResourceInfo, obj: &Arc<Value>) -> Arc<Value> {
    if super::events::is_view(&info.group, &info.plural) {
        return Arc::new(super::events::from_core(obj));
    }
    let av = info.api_version();
    if obj["apiVersion"].as_str() == Some(av.as_str()) {
        return obj.clone();
    }
    let mut v = (**obj).clone();
    v["apiVersion"] = av.into();
    Arc::new(v)
}

/// A LIST answer (`<Kind>List`), serialized without copying its items.
#[derive(Clone, Debug)]
pub struct ObjectList {
    /// `apiVersion` of the list.
    pub api_version: String,
    /// `<Kind>List`.
    pub kind: String,
    /// The store's resourceVersion when listed.
    pub resource_version: String,
    /// Token for the next page, empty on the last.
    pub continue_token: String,
    /// The objects.
    pub items: Vec<Arc<Value>>,
}

impl ObjectList {
    /// The list's `metadata`.
    pub fn metadata(&self) -> Value {
        let mut meta = Map::new();
        meta.insert(
            "resourceVersion".into(),
            self.resource_version.clone().into(),
        );
        if !self.continue_token.is_empty() {
            meta.insert("continue".into(), self.continue_token.clone().into());
        }
        Value::Object(meta)
    }
}

impl serde::Serialize for ObjectList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("metadata", &self.metadata())?;
        let items: Vec<&Value> = self.items.iter().map(|a| &**a).collect();
        m.serialize_entry("items", &items)?;
        m.end()
    }
}

/// The object as stored: events.k8s.io Events become core Events.
fn stored_form(info: &ResourceInfo, obj: Value) -> Value {
    if super::events::is_view(&info.group, &info.plural) {
        super::events::to_core(&obj)
    } else {
        obj
    }
}

/// Reads a `.a.b.c` path.
pub(crate) fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(obj, |cur, k| cur.get(k))
}

fn set_path(obj: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for k in &keys[..keys.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Map::new());
        }
        cur = &mut cur[*k];
    }
    cur[keys[keys.len() - 1]] = value;
}

/// The `autoscaling/v1` Scale of an object.
fn scale_view(info: &ResourceInfo, obj: &Value) -> Value {
    let paths = info
        .scale
        .as_ref()
        .expect("resolve checked the scale subresource");
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            Value::Object(ls) => ls
                .get("matchLabels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        });
    let meta = &obj["metadata"];
    let mut status = json!({
        "replicas": get_path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(s) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = s.into();
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": get_path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

/// RFC 3339 at second precision, as metav1.Time serializes.
pub fn now() -> String {
    let ts = jiff::Timestamp::now();
    jiff::Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

/// Five characters from the apiserver's `generateName` alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
