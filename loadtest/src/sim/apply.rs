//! Field ownership (`metadata.managedFields`) and server-side apply, approximated.
//!
//! What it does: every write records which leaf fields its field manager
//! set; an apply merges the applied configuration into the object, removes
//! fields the same manager applied before and no longer applies (when no
//! other manager owns them), and answers 409 with one cause per field when
//! it would change a field another manager owns, unless `force=true`.
//!
//! What it does not do (a real apiserver does): lists are atomic (no
//! per-item ownership through `x-kubernetes-list-map-keys`, so `k:{...}`
//! and `v:...` entries never appear); a field owned by several managers with
//! the same value is shared only for appliers; no version conversion of
//! field sets.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A leaf field: its key path from the object root.
pub type FieldPath = Vec<String>;

/// A set of owned leaf fields.
pub type FieldSet = BTreeSet<FieldPath>;

/// Whether a write is an apply or an ordinary update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One apply conflict: another manager owns a field with another value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// The field, dotted with a leading dot (`.spec.replicas`).
    pub field: String,
}

/// The leaf fields of an object that field ownership tracks: everything
/// but `apiVersion`, `kind` and server-owned metadata. Arrays are leaves.
pub fn leaves(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for f in ["labels", "annotations"] {
                    if let Some(map) = v.get(f).and_then(Value::as_object) {
                        for key in map.keys() {
                            out.insert(vec!["metadata".into(), f.into(), key.clone()]);
                        }
                    }
                }
                for f in ["finalizers", "ownerReferences"] {
                    if v.get(f).is_some() {
                        out.insert(vec!["metadata".into(), f.into()]);
                    }
                }
            }
            _ => collect(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                collect(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, k| cur.get(k))
}

fn set(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for k in &path[..path.len() - 1] {
        if !cur.get(k).is_some_and(Value::is_object) {
            cur[k] = Value::Object(Map::new());
        }
        cur = &mut cur[k];
    }
    cur[&path[path.len() - 1]] = value;
}

fn unset(obj: &mut Value, path: &[String]) {
    let (last, init) = path.split_last().expect("field paths are not empty");
    let mut cur = obj;
    for k in init {
        match cur.get_mut(k) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Whether two paths overlap (one is a prefix of the other).
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// `.spec.replicas`, as conflicts name fields.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// A field set in the `FieldsV1` form (`{"f:spec": {"f:replicas": {}}}`).
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for k in path {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

/// The leaf paths of a `FieldsV1` value. Keys other than `f:` (`k:`, `v:`,
/// `i:`, `.`) end the path where they appear.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("f:"))
            .collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k[2..].to_owned());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    manager: String,
    operation: Operation,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Entry {
                manager: e.get("manager")?.as_str()?.to_owned(),
                operation: match e.get("operation")?.as_str()? {
                    "Apply" => Operation::Apply,
                    _ => Operation::Update,
                },
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

fn write_entries(obj: &mut Value, list: Vec<Entry>) {
    let list: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation.as_str(),
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = s.into();
            }
            v
        })
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who writes, and how, for recording ownership.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// `status` for status-subresource writes.
    pub subresource: Option<&'a str>,
    /// The apiVersion the write used.
    pub api_version: &'a str,
    /// The write's time (RFC 3339).
    pub now: &'a str,
}

/// Records an ordinary write: the fields that changed from `old` (all of
/// them on create) now belong to `writer`'s Update entry and to no one else.
/// The managedFields of `new` as sent by the client are ignored.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: Writer<'_>) {
    let mut list = old.map(entries).unwrap_or_default();
    let changed: FieldSet = leaves(new)
        .into_iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(new, p)))
        .collect();
    if changed.is_empty() {
        write_entries(new, list);
        return;
    }
    for e in &mut list {
        e.fields.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
    }
    upsert(&mut list, writer, Operation::Update, |fields| {
        fields.extend(changed.iter().cloned());
    });
    write_entries(new, list);
}

fn upsert(list: &mut Vec<Entry>, w: Writer<'_>, op: Operation, f: impl FnOnce(&mut FieldSet)) {
    let sub = w.subresource.map(str::to_owned);
    let pos = list
        .iter()
        .position(|e| e.manager == w.manager && e.operation == op && e.subresource == sub);
    let e = match pos {
        Some(i) => &mut list[i],
        None => {
            list.push(Entry {
                manager: w.manager.to_owned(),
                operation: op,
                subresource: sub,
                api_version: w.api_version.to_owned(),
                time: w.now.to_owned(),
                fields: FieldSet::new(),
            });
            list.last_mut().expect("just pushed")
        }
    };
    e.time = w.now.to_owned();
    e.api_version = w.api_version.to_owned();
    f(&mut e.fields);
}

/// Server-side apply of `applied` onto `current` (`None`: the object is
/// created from the applied configuration). Returns the new object, or the
/// conflicts when `force` is false and another manager owns a field that
/// the apply would change.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    writer: Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let applied_fields = leaves(applied);
    let Some(current) = current else {
        let mut obj = applied.clone();
        let mut list = Vec::new();
        upsert(&mut list, writer, Operation::Apply, |f| *f = applied_fields);
        write_entries(&mut obj, list);
        return Ok(obj);
    };
    let mut list = entries(current);
    let me = |e: &Entry| {
        e.manager == writer.manager
            && e.operation == Operation::Apply
            && e.subresource.as_deref() == writer.subresource
    };
    // An applied empty map only asks for the map to exist: it changes
    // nothing where the map is there, so it neither conflicts nor replaces.
    let is_empty_map =
        |p: &FieldPath| get(applied, p).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
    let changes = |p: &FieldPath| {
        if is_empty_map(p) {
            !get(current, p).is_some_and(Value::is_object)
        } else {
            get(current, p) != get(applied, p)
        }
    };
    let mut conflicts = Vec::new();
    for p in &applied_fields {
        if !changes(p) {
            continue;
        }
        for e in list.iter().filter(|e| !me(e)) {
            if let Some(owned) = e.fields.iter().find(|o| overlaps(o, p)) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: dotted(if owned.len() > p.len() { p } else { owned }),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.dedup();
        return Err(conflicts);
    }
    let mut obj = current.clone();
    // Fields this manager applied before and no longer applies go, unless
    // someone else owns them too.
    let previous: FieldSet = list
        .iter()
        .filter(|e| me(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in previous.difference(&applied_fields) {
        let shared = list
            .iter()
            .filter(|e| !me(e))
            .any(|e| e.fields.iter().any(|o| overlaps(o, p)));
        if !shared {
            unset(&mut obj, p);
        }
    }
    for p in &applied_fields {
        if let Some(v) = get(applied, p)
            && changes(p)
        {
            set(&mut obj, p, v.clone());
        }
    }
    // Taken-over fields (force, or equal values) leave their old owners
    // unless the value is unchanged, in which case ownership is shared.
    for e in list.iter_mut().filter(|e| !me(e)) {
        e.fields
            .retain(|o| !applied_fields.iter().any(|p| overlaps(o, p) && changes(p)));
    }
    upsert(&mut list, writer, Operation::Apply, |f| *f = applied_fields);
    write_entries(&mut obj, list);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            subresource: None,
            api_version: "v1",
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v", "l": "w"}});
        let set = leaves(&obj);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:data": {"f:k": {}, "f:l": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_creates_updates_and_removes_what_it_stopped_applying() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1", "gone": "x"}});
        let obj = apply(None, &a, w("drover"), false).unwrap();
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "drover");
        let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "2"}});
        let obj = apply(Some(&obj), &a2, w("drover"), false).unwrap();
        assert_eq!(obj["data"], json!({"k": "2"}));
    }

    #[test]
    fn apply_conflicts_with_another_owner_unless_forced() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1, "paused": false}});
        record_update(None, &mut obj, w("kubectl-edit"));
        let a = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let err = apply(Some(&obj), &a, w("drover"), false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "kubectl-edit".into(),
                field: ".spec.replicas".into()
            }]
        );
        // Same value: no conflict, shared ownership.
        let same = json!({"metadata": {"name": "x"}, "spec": {"paused": false}});
        apply(Some(&obj), &same, w("drover"), false).unwrap();
        // Forced: the field changes hands.
        let obj = apply(Some(&obj), &a, w("drover"), true).unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
        let owners = entries(&obj);
        let edit = owners.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert!(
            !edit
                .fields
                .contains(&vec!["spec".to_owned(), "replicas".to_owned()])
        );
    }

    #[test]
    fn updates_take_over_the_fields_they_change() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"a": 1, "b": 1}});
        record_update(None, &mut obj, w("one"));
        let mut next = obj.clone();
        next["spec"]["a"] = 2.into();
        record_update(Some(&obj), &mut next, w("two"));
        let e = entries(&next);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].fields.len(), 1, "one keeps spec.b");
        assert_eq!(e[1].manager, "two");
    }
}
