//! PATCH bodies applied to stored JSON: JSON merge patch (RFC 7386), JSON
//! patch (RFC 6902, with `test`), and an approximation of strategic merge
//! patch for built-in kinds. Server-side apply lives in [`super::apply`].
//!
//! Pure functions; errors are [`PatchError`]s the HTTP layer turns into
//! 400 (malformed patch) or 422 (a well-formed patch that does not apply).

use serde_json::{Map, Value};

/// Why a patch was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but does not apply to this object (422).
    #[error("{0}")]
    DoesNotApply(String),
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// RFC 6902. The whole patch applies or none of it does.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        PatchError::Malformed("a JSON patch must be an array of operations".into())
    })?;
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.get(name).ok_or_else(|| {
                PatchError::Malformed(format!("operation {i}: missing field \"{name}\""))
            })
        };
        let name = field("op")?.as_str().ok_or_else(|| {
            PatchError::Malformed(format!("operation {i}: \"op\" is not a string"))
        })?;
        let path = pointer(field("path")?, i)?;
        match name {
            "add" => add(&mut doc, &path, field("value")?.clone())?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                remove(&mut doc, &path)?;
                add(&mut doc, &path, field("value")?.clone())?;
            }
            "move" => {
                let from = pointer(field("from")?, i)?;
                let v = remove(&mut doc, &from)?;
                add(&mut doc, &path, v)?;
            }
            "copy" => {
                let from = pointer(field("from")?, i)?;
                let v = get(&doc, &from)?.clone();
                add(&mut doc, &path, v)?;
            }
            "test" => {
                let want = field("value")?;
                let got = get(&doc, &path)?;
                if got != want {
                    return Err(PatchError::DoesNotApply(format!(
                        "testing value {} failed: found {got}, expected {want}",
                        display(&path)
                    )));
                }
            }
            other => {
                return Err(PatchError::Malformed(format!(
                    "operation {i}: unsupported op \"{other}\""
                )));
            }
        }
    }
    *target = doc;
    Ok(())
}

fn pointer(v: &Value, i: usize) -> Result<Vec<String>, PatchError> {
    let s = v
        .as_str()
        .ok_or_else(|| PatchError::Malformed(format!("operation {i}: path is not a string")))?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let rest = s.strip_prefix('/').ok_or_else(|| {
        PatchError::Malformed(format!("operation {i}: path {s:?} does not start with /"))
    })?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn display(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

fn missing(path: &[String]) -> PatchError {
    PatchError::DoesNotApply(format!("doc is missing path: \"{}\"", display(path)))
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(cur)
}

fn parent<'a>(doc: &'a mut Value, path: &[String]) -> Result<(&'a mut Value, String), PatchError> {
    let (last, init) = path.split_last().ok_or_else(|| missing(path))?;
    let mut cur = doc;
    for t in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok((cur, last.clone()))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| missing(path))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, PatchError> {
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| missing(path))?;
            Ok(a.remove(i))
        }
        _ => Err(missing(path)),
    }
}

/// The merge key of a list field in built-in kinds (`patchMergeKey`), by
/// field name. Lists not named here are replaced whole, as lists without a
/// merge strategy are; `finalizers` merges as a set of strings.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "volumeClaimTemplates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ownerReferences" => "uid",
        "conditions" | "addresses" => "type",
        // Service ports merge on `port`, container ports on `containerPort`.
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// Strategic merge patch, approximated: a merge patch whose lists with a
/// known merge key merge item by item (`$patch: delete` removes an item),
/// whose `finalizers` merge as a set, and whose `$patch: replace` on a map
/// replaces it; `$deleteFromPrimitiveList/<field>` removes values from a
/// list of scalars. `$retainKeys` and `$setElementOrder` are accepted and ignored.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    smp(target, patch);
}

fn smp(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    // `$deleteFromPrimitiveList/<field>`: remove these values from a list of
    // scalars (kubectl edit removing a finalizer sends this).
    for (k, v) in p {
        if let (Some(field), Some(gone)) =
            (k.strip_prefix("$deleteFromPrimitiveList/"), v.as_array())
            && let Some(Value::Array(list)) = t.get_mut(field)
        {
            list.retain(|x| !gone.contains(x));
        }
    }
    for (k, v) in p {
        // Other directives ($retainKeys, $setElementOrder/...) are not data.
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Array(items) if k == "finalizers" => {
                let cur = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(c) = cur {
                    for i in items {
                        if !c.contains(i) {
                            c.push(i.clone());
                        }
                    }
                } else {
                    *cur = v.clone();
                }
            }
            Value::Array(items) => match merge_key(k, items) {
                Some(mk) if items.iter().all(Value::is_object) => {
                    let cur = t
                        .entry(k.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if !cur.is_array() {
                        *cur = Value::Array(Vec::new());
                    }
                    let c = cur.as_array_mut().expect("made an array above");
                    for item in items {
                        let key = item.get(mk);
                        let pos = c.iter().position(|e| key.is_some() && e.get(mk) == key);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(i), true) => {
                                c.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => smp(&mut c[i], item),
                            (None, false) => {
                                let mut fresh = Value::Object(Map::new());
                                smp(&mut fresh, item);
                                c.push(fresh);
                            }
                        }
                    }
                }
                _ => {
                    t.insert(k.clone(), v.clone());
                }
            },
            Value::Object(_) => smp(t.entry(k.clone()).or_insert(Value::Null), v),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The RFC's own example.
        let mut t = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"], "content": "This will be unchanged"});
        merge_patch(
            &mut t,
            &json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null}, "tags": ["example"]}),
        );
        assert_eq!(
            t,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"], "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
    }

    #[test]
    fn json_patch_applies_all_ops_or_none() {
        let mut t = json!({"metadata": {"finalizers": ["a"]}, "spec": {"x": 1}});
        json_patch(
            &mut t,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["a"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
                {"op": "replace", "path": "/spec/x", "value": 2},
                {"op": "copy", "from": "/spec/x", "path": "/spec/y"},
                {"op": "move", "from": "/spec/y", "path": "/spec/z"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"x": 2, "z": 2}})
        );

        let before = t.clone();
        let err = json_patch(
            &mut t,
            &json!([
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "test", "path": "/metadata/finalizers", "value": ["b"]}
            ]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::DoesNotApply(_)), "{err}");
        assert_eq!(t, before, "a failed patch changes nothing");
        assert!(matches!(
            json_patch(&mut t, &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::DoesNotApply(_))
        ));
        assert!(matches!(
            json_patch(&mut t, &json!([{"op": "frobnicate", "path": "/spec"}])),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn json_pointer_escapes() {
        let mut t = json!({"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}});
        json_patch(
            &mut t,
            &json!([{"op": "remove", "path": "/metadata/annotations/a~1b"}, {"op": "remove", "path": "/metadata/annotations/c~0d"}]),
        )
        .unwrap();
        assert_eq!(t, json!({"metadata": {"annotations": {}}}));
    }

    #[test]
    fn strategic_merge_merges_keyed_lists() {
        let mut t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}}, "metadata": {"finalizers": ["f1"]}});
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ]}}}, "metadata": {"finalizers": ["f2", "f1"]}}),
        );
        assert_eq!(
            t,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}}}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
        let mut t = json!({"metadata": {"finalizers": ["a", "b"]}});
        strategic_merge_patch(
            &mut t,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(t, json!({"metadata": {"finalizers": ["b"]}}));
        // Lists without a merge key are replaced.
        let mut t = json!({"spec": {"args": ["a", "b"]}});
        strategic_merge_patch(&mut t, &json!({"spec": {"args": ["c"]}}));
        assert_eq!(t, json!({"spec": {"args": ["c"]}}));
    }
}
