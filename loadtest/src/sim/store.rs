//! The object store of one simulated cluster: objects by resource, one
//! strictly increasing resourceVersion counter, and a bounded history of
//! watch events for resuming watches (older resume points get 410 Gone).
//!
//! Pure and synchronous: the HTTP layer wraps one `Store` per cluster in a
//! lock and fans [`WatchEvent`]s out to watchers. Time and uids are passed in
//! so tests are deterministic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::selector::{FieldSelector, LabelSelector};

/// A resource: API group and plural name (`""`/`secrets`, `bootstrap.cluster.x-k8s.io`/`k0sworkerconfigs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

impl Resource {
    /// A resource of `group` named `plural`.
    pub fn new(group: &str, plural: &str) -> Self {
        Self {
            group: group.to_owned(),
            plural: plural.to_owned(),
        }
    }

    /// `plural.group` (or `plural` for core), as the API server names resources in errors.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// How a resource behaves on writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceRules {
    /// Namespaced (false: cluster-scoped).
    pub namespaced: bool,
    /// Has a status subresource: main-resource writes ignore `.status`,
    /// status writes touch only `.status`, and `generation` moves only on spec changes.
    pub status_subresource: bool,
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed (including deletion marking).
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub resource: Resource,
    /// Namespace of the object (`None` for cluster-scoped).
    pub namespace: Option<String>,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before removal, for DELETED).
    pub object: Arc<Value>,
    /// The object before the change (MODIFIED only): watches with selectors
    /// turn a change that leaves or enters the selection into DELETED or ADDED.
    pub prev: Option<Arc<Value>>,
    /// `object` serialized, made by the first watcher that needs it and
    /// shared by the rest (fan-out serializes each event once).
    pub object_json: Arc<std::sync::OnceLock<bytes::Bytes>>,
}

impl WatchEvent {
    /// The object as JSON bytes, serialized once per event.
    pub fn object_json(&self) -> bytes::Bytes {
        self.object_json
            .get_or_init(|| {
                bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())
            })
            .clone()
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ListPage {
    /// Matching objects, by namespace then name.
    pub items: Vec<Arc<Value>>,
    /// The store's resourceVersion when the list was taken.
    pub resource_version: u64,
    /// Token for the next page; empty when this is the last page.
    pub continue_token: String,
}

type ObjectKey = (String, String); // (namespace or "", name)

/// The objects and history of one simulated cluster.
pub struct Store {
    rv: u64,
    objects: HashMap<Resource, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<WatchEvent>,
    history_limit: usize,
    /// Events not yet handed to [`Store::drain_new_events`].
    pending: Vec<WatchEvent>,
    /// Inside [`Store::dry_run`]: compute results, change nothing.
    dry: bool,
}

impl Store {
    /// An empty store keeping at most `history_limit` events for watch resumes.
    pub fn new(history_limit: usize) -> Self {
        Self {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            pending: Vec::new(),
            dry: false,
        }
    }

    /// Runs `f` without changing the store (`dryRun=All`): results are what
    /// the write would return, but nothing is stored, recorded or counted.
    pub fn dry_run<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let rv = self.rv;
        self.dry = true;
        let out = f(self);
        self.dry = false;
        self.rv = rv;
        out
    }

    /// The events recorded since the last call, oldest first, for fan-out.
    pub fn drain_new_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.pending)
    }

    /// Sets the retained history size (fault injection shrinks it).
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
    }

    /// Marks an object as being deleted regardless of `metadata.finalizers`
    /// (namespaces wait on `spec.finalizers` instead). No-op when already marked.
    pub fn mark_deleting(
        &mut self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        now: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<Arc<Value>, ApiError> {
        let current = self.get(res, ns, name)?;
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Ok(current);
        }
        let mut obj = (*current).clone();
        edit(&mut obj);
        self.rv += 1;
        mark(meta_mut(&mut obj), now, self.rv);
        Ok(self.put(
            res,
            ns.map(str::to_owned),
            key(ns, name),
            obj,
            EventType::Modified,
        ))
    }

    /// Removes an object that is being deleted and has no finalizers left
    /// (what the namespace controller does once a namespace is empty).
    pub fn finish_deletion(
        &mut self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self.get(res, ns, name)?;
        let meta = &current["metadata"];
        let finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if meta.get("deletionTimestamp").is_none() || finalizers {
            return Ok(current);
        }
        self.rv += 1;
        let mut obj = (*current).clone();
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        Ok(self.remove(res, ns.map(str::to_owned), &key(ns, name), obj))
    }

    /// Every stored resource that has objects (for namespace cleanup and GC).
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.objects
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(r, _)| r)
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Reads one object.
    pub fn get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(res)
            .and_then(|m| m.get(&key(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&res.qualified(), name))
    }

    /// Creates an object. The caller has validated it and set a name (from
    /// `generateName` if needed); the store sets uid, creationTimestamp,
    /// resourceVersion and generation, and drops any client-set deletion fields.
    pub fn create(
        &mut self,
        res: &Resource,
        rules: ResourceRules,
        mut obj: Value,
        uid: &str,
        now: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let (ns, name) = ns_name(&obj, rules)?;
        let k = key(ns.as_deref(), &name);
        if self.objects.get(res).is_some_and(|m| m.contains_key(&k)) {
            return Err(ApiError::already_exists(&res.qualified(), &name));
        }
        self.rv += 1;
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), uid.into());
        meta.insert("creationTimestamp".into(), now.into());
        meta.insert("resourceVersion".into(), self.rv.to_string().into());
        meta.insert("generation".into(), 1.into());
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        Ok(self.put(res, ns, k, obj, EventType::Added))
    }

    /// Replaces an object (PUT semantics). A `metadata.resourceVersion` that
    /// is not the stored one is a 409 Conflict.
    pub fn update(
        &mut self,
        res: &Resource,
        rules: ResourceRules,
        sub: Subresource,
        mut obj: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let (ns, name) = ns_name(&obj, rules)?;
        let current = self.get(res, ns.as_deref(), &name)?;
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(ApiError::conflict(
                &res.qualified(),
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        match sub {
            // Status writes change only status.
            Subresource::Status => {
                let status = obj.get("status").cloned();
                let managed = obj.pointer("/metadata/managedFields").cloned();
                obj = (*current).clone();
                match status {
                    Some(s) => obj["status"] = s,
                    None => {
                        obj.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                // Field ownership of status writes is recorded too.
                let meta = meta_mut(&mut obj);
                match managed {
                    Some(m) => meta.insert("managedFields".into(), m),
                    None => meta.remove("managedFields"),
                };
            }
            // Main writes keep the stored status when there is a status subresource.
            Subresource::Main if rules.status_subresource => match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            },
            Subresource::Main => {}
        }
        // Server-owned metadata is kept from the stored object.
        let cur_meta = current["metadata"].as_object().cloned().unwrap_or_default();
        let meta = meta_mut(&mut obj);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match cur_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        if cur_meta.contains_key("deletionTimestamp") {
            let old: Vec<&Value> = cur_meta
                .get("finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let new_finalizers = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if new_finalizers.iter().any(|f| !old.contains(&f)) {
                return Err(ApiError::invalid(
                    &res.qualified(),
                    &name,
                    vec![(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        if is_no_op(&obj, &current) {
            return Ok(current); // a no-op write does not bump the resourceVersion
        }
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = spec_changed(&obj, &current, rules);
        self.rv += 1;
        let meta = meta_mut(&mut obj);
        meta.insert("resourceVersion".into(), self.rv.to_string().into());
        meta.insert(
            "generation".into(),
            (if spec_changed {
                generation + 1
            } else {
                generation
            })
            .into(),
        );
        let finalizers_empty = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        let deleting = meta.contains_key("deletionTimestamp");
        let k = key(ns.as_deref(), &name);
        if !(deleting && finalizers_empty) {
            return Ok(self.put(res, ns, k, obj, EventType::Modified));
        }
        // The last finalizer of a deleting object went: the object goes.
        Ok(self.remove(res, ns, &k, obj))
    }

    /// Deletes an object: with finalizers it is only marked (`deletionTimestamp`,
    /// MODIFIED); without, it is removed (DELETED). Returns the object and
    /// whether it is gone. `precondition_uid`/`precondition_rv` give 409 on mismatch.
    pub fn delete(
        &mut self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
        now: &str,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let current = self.get(res, ns, name)?;
        let meta = &current["metadata"];
        if let Some(uid) = precondition_uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                &res.qualified(),
                name,
                "Precondition failed: UID in precondition does not match",
            ));
        }
        if let Some(rv) = precondition_rv
            && meta["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(
                &res.qualified(),
                name,
                "Precondition failed: ResourceVersion in precondition does not match",
            ));
        }
        let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let k = key(ns, name);
        if has_finalizers {
            if meta.get("deletionTimestamp").is_some() {
                return Ok((current, false)); // already marked: a no-op
            }
            let mut obj = (*current).clone();
            self.rv += 1;
            mark(meta_mut(&mut obj), now, self.rv);
            return Ok((
                self.put(res, ns.map(str::to_owned), k, obj, EventType::Modified),
                false,
            ));
        }
        self.rv += 1;
        let mut obj = (*current).clone();
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        Ok((self.remove(res, ns.map(str::to_owned), &k, obj), true))
    }

    /// Lists objects of `res`, optionally in one namespace, filtered by
    /// selectors, `limit` at a time. `continue_token` resumes after the key
    /// the previous page ended at.
    ///
    /// Every page reports the first page's resourceVersion (carried in the
    /// token), so a client that watches from it after the last page sees
    /// every change made while it paged: the pages themselves show the
    /// latest state, not a snapshot (see loadtest/README.md). A token whose
    /// resourceVersion has left the watch history is 410 Expired, as a real
    /// apiserver's compacted continue token is.
    pub fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (start, list_rv) = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                if rv < self.oldest_resumable() {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (Some(key), rv)
            }
            None => (None, self.rv),
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        if let Some(m) = self.objects.get(res) {
            // Keys sort by namespace first, so a namespaced list is one range.
            let lower = match (&start, ns) {
                (Some(after), _) => Bound::Excluded(after.clone()),
                (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
                (None, None) => Bound::Unbounded,
            };
            for (k, obj) in m.range((lower, Bound::Unbounded)) {
                if let Some(ns) = ns
                    && k.0 != ns
                {
                    if k.0.as_str() > ns {
                        break;
                    }
                    continue;
                }
                let obj_labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
                if !labels.matches(obj_labels) || !fields.matches(obj) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    more = true;
                    break;
                }
                items.push(obj.clone());
                last = Some(k.clone());
            }
        }
        let continue_token = match (more, last) {
            (true, Some(k)) => encode_continue(list_rv, &k),
            _ => String::new(),
        };
        Ok(ListPage {
            items,
            resource_version: list_rv,
            continue_token,
        })
    }

    /// Events after `rv`, oldest first, or 410 Gone when `rv` is older than
    /// the retained history (the client must re-list).
    pub fn events_since(&self, rv: u64) -> Result<Vec<WatchEvent>, ApiError> {
        if rv > self.rv {
            return Err(ApiError::too_large_resource_version(rv, self.rv));
        }
        let oldest_known = self.oldest_resumable();
        if rv < oldest_known {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({oldest_known})"
            )));
        }
        // The history is in resourceVersion order: find the start by
        // bisection. A scan would hold the cluster's lock for the whole
        // history (hundreds of thousands of events in load tests) each time
        // a lagging watch catches up.
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }

    /// The oldest resourceVersion a watch can still resume from.
    fn oldest_resumable(&self) -> u64 {
        self.history.front().map_or(self.rv, |e| e.rv - 1)
    }

    /// Forgets the whole event history, so every resume point before now is
    /// gone (fault injection for relist tests).
    pub fn expire_history(&mut self) {
        self.history.clear();
    }

    /// Stores `obj` under `k` and records the event.
    fn put(
        &mut self,
        res: &Resource,
        ns: Option<String>,
        k: ObjectKey,
        obj: Value,
        kind: EventType,
    ) -> Arc<Value> {
        let obj = Arc::new(obj);
        if self.dry {
            return obj;
        }
        let prev = self
            .objects
            .entry(res.clone())
            .or_default()
            .insert(k, obj.clone());
        self.record(res, ns, kind, obj.clone(), prev);
        obj
    }

    /// Removes the object under `k` and records its DELETED event (`obj` is
    /// the object as last seen, at the deleting resourceVersion).
    fn remove(
        &mut self,
        res: &Resource,
        ns: Option<String>,
        k: &ObjectKey,
        obj: Value,
    ) -> Arc<Value> {
        let obj = Arc::new(obj);
        if self.dry {
            return obj;
        }
        if let Some(m) = self.objects.get_mut(res) {
            m.remove(k);
        }
        self.record(res, ns, EventType::Deleted, obj.clone(), None);
        obj
    }

    fn record(
        &mut self,
        res: &Resource,
        ns: Option<String>,
        kind: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        if self.history.len() >= self.history_limit {
            self.history.pop_front();
        }
        let event = WatchEvent {
            rv: self.rv,
            resource: res.clone(),
            namespace: ns,
            kind,
            object,
            prev: prev.filter(|_| kind == EventType::Modified),
            object_json: Arc::default(),
        };
        self.pending.push(event.clone());
        self.history.push_back(event);
    }
}

fn key(ns: Option<&str>, name: &str) -> ObjectKey {
    (ns.unwrap_or_default().to_owned(), name.to_owned())
}

fn ns_name(obj: &Value, rules: ResourceRules) -> Result<(Option<String>, String), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "object",
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            )
        })?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    match (rules.namespaced, ns) {
        (true, None) => Err(ApiError::bad_request(
            "the namespace of the object is required",
        )),
        (true, Some(ns)) => Ok((Some(ns.to_owned()), name.to_owned())),
        (false, _) => Ok((None, name.to_owned())),
    }
}

/// Marks metadata as being deleted, as the apiserver's `markAsDeleting`
/// does: deletionTimestamp, a zero grace period, and a generation bump.
fn mark(m: &mut Map<String, Value>, now: &str, rv: u64) {
    m.insert("deletionTimestamp".into(), now.into());
    m.insert("deletionGracePeriodSeconds".into(), 0.into());
    m.insert("resourceVersion".into(), rv.to_string().into());
    let generation = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
    m.insert("generation".into(), (generation + 1).into());
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Whether two objects are equal, ignoring the top-level keys in `skip` and
/// the `metadata` keys in `skip_meta`. Compares in place: writes run this on
/// every update, and cloning whole objects to compare them was a hot spot.
fn eq_ignoring(a: &Value, b: &Value, skip: &[&str], skip_meta: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
    if kept(a) != kept(b) {
        return false;
    }
    a.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .all(|(k, v)| match b.get(k) {
            None => false,
            Some(w) if k == "metadata" && !skip_meta.is_empty() => {
                eq_ignoring(v, w, skip_meta, &[])
            }
            Some(w) => v == w,
        })
}

/// A write that changes nothing but the fields the server rewrites.
fn is_no_op(new: &Value, current: &Value) -> bool {
    eq_ignoring(new, current, &[], &["resourceVersion", "managedFields"])
}

/// Whether "spec" changed, for generation: everything but metadata and
/// status (for kinds with a status subresource), everything but metadata otherwise.
fn spec_changed(new: &Value, current: &Value, rules: ResourceRules) -> bool {
    let skip: &[&str] = if rules.status_subresource {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    !eq_ignoring(new, current, skip, &[])
}

fn encode_continue(rv: u64, k: &ObjectKey) -> String {
    // Opaque to clients; hex keeps it URL-safe without another dependency.
    let raw = format!("{rv}\u{0}{}\u{0}{}", k.0, k.1);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(t: &str) -> Result<(u64, ObjectKey), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {t:?}"));
    if !t.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16))
        .collect();
    let raw = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = raw.splitn(3, '\u{0}');
    let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let rv = rv.parse::<u64>().map_err(|_| bad())?;
    Ok((rv, (ns.to_owned(), name.to_owned())))
}

#[cfg(test)]
mod tests;
