//! What the API server does to an object before it is stored: defaulting
//! and validation. Custom resources go through their CRD's structural schema
//! (prune, default, validate), as the apiextensions apiserver does; built-in
//! kinds get the handful of defaults and checks drover and its tests meet
//! (Secret `stringData`, Service IPs and node ports, Namespace phase, ...).
//!
//! Pure functions over JSON; the allocation state for Services is passed in.

use std::collections::BTreeSet;

use base64::Engine as _;
use drover_shared::manifests::is_dns_subdomain;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::resources::{ResourceInfo, parse_crd, validate_crd};

/// Addresses and ports handed out to Services.
#[derive(Debug, Default)]
pub struct Allocations {
    next_ip: u32,
    node_ports: BTreeSet<i64>,
}

impl Allocations {
    fn cluster_ip(&mut self) -> String {
        self.next_ip += 1;
        let n = self.next_ip;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    fn node_port(&mut self) -> Option<i64> {
        let p = (30000..=32767).find(|p| !self.node_ports.contains(p))?;
        self.node_ports.insert(p);
        Some(p)
    }

    /// Frees a deleted Service's node ports.
    pub fn release(&mut self, svc: &Value) {
        self.release_ports(&node_ports(svc));
    }

    /// Frees node ports.
    pub fn release_ports(&mut self, ports: &[i64]) {
        for p in ports {
            self.node_ports.remove(p);
        }
    }
}

/// The node ports an object (a Service) holds.
pub fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .collect()
}

type Causes = Vec<(String, String)>;

/// The finalizer that holds a CRD until its custom resources are gone.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Defaults and validates `obj` for a write of `info`. `old` is the stored
/// object on updates. Returns 422 with one cause per bad field.
pub fn admit(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocations,
    strict: bool,
) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut causes = metadata_causes(info, obj);
    if let Some(schema) = &info.schema {
        // fieldValidation=Strict: unknown fields are an error, not pruned.
        if strict {
            let mut pruned = obj.clone();
            schema.prune(&mut pruned, true);
            let mut unknown = Vec::new();
            removed_fields(obj, &pruned, "", &mut unknown);
            if !unknown.is_empty() {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
        }
        if let Err(errors) = schema.process(obj) {
            causes.extend(
                errors
                    .into_iter()
                    .map(|e| (e.path.clone(), format!("{}: {}", e.kind, e.detail))),
            );
        }
    } else if !info.custom {
        built_in(info, obj, old, alloc, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&info.kind, &name, causes))
    }
}

/// Dotted paths of fields in `before` that `after` lacks.
fn removed_fields(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    None => out.push(p),
                    Some(av) => removed_fields(v, av, &p, out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                removed_fields(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn metadata_causes(info: &ResourceInfo, obj: &Value) -> Causes {
    let mut causes = Causes::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let name_ok = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") => is_dns_label(name),
        // RBAC names are path segments (`system:controller:x`).
        ("rbac.authorization.k8s.io", _) => {
            !name.is_empty() && !name.contains(['/', '%']) && name != "." && name != ".."
        }
        _ => is_dns_subdomain(name),
    };
    if !name_ok {
        causes.push((
            "metadata.name".into(),
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 {} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                if info.kind == "Namespace" { "label" } else { "subdomain" }
            ),
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push((
                    "metadata.labels".into(),
                    format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => causes.push((
                    "metadata.labels".into(),
                    format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"),
                )),
            }
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        for (i, r) in refs.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push((
                        format!("metadata.ownerReferences[{i}].{f}"),
                        "Required value".into(),
                    ));
                }
            }
        }
        let controllers = refs.iter().filter(|r| r["controller"] == true).count();
        if controllers > 1 {
            causes.push((
                "metadata.ownerReferences".into(),
                "Invalid value: only one reference can have Controller set to true".into(),
            ));
        }
    }
    for (i, f) in meta
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !f.as_str().is_some_and(is_qualified_name) {
            causes.push((
                format!("metadata.finalizers[{i}]"),
                format!("Invalid value: {f}: name part must consist of alphanumeric characters, '-', '_' or '.'"),
            ));
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 256 * 1024 {
            causes.push((
                "metadata.annotations".into(),
                "Too long: must have at most 262144 bytes".into(),
            ));
        }
        for (k, v) in annotations {
            if !v.is_string() {
                causes.push((
                    format!("metadata.annotations[{k}]"),
                    "Invalid value: must be a string".into(),
                ));
            }
        }
    }
    causes
}

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-'.
pub fn is_dns_label(s: &str) -> bool {
    is_dns_subdomain(s) && s.len() <= 63 && !s.contains('.')
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn built_in(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocations,
    causes: &mut Causes,
) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Secret") => secret(obj, old, causes),
        ("", "ConfigMap") => {
            for field in ["data", "binaryData"] {
                for k in obj
                    .get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(Map::keys)
                {
                    if !is_config_key(k) {
                        causes.push((
                            format!("{field}[{k}]"),
                            format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                        ));
                    }
                }
            }
        }
        ("", "Namespace") if old.is_none() => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => service(obj, old, alloc, causes),
        ("", "Pod") if old.is_none() && obj.pointer("/status/phase").is_none() => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("apps", "Deployment" | "StatefulSet") => {
            if obj.pointer("/spec/replicas").is_none_or(Value::is_null) {
                obj["spec"]["replicas"] = 1.into();
            }
            if obj.pointer("/spec/selector").is_none() {
                causes.push(("spec.selector".into(), "Required value".into()));
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj, causes),
        _ => {}
    }
}

fn secret(obj: &mut Value, old: Option<&Value>, causes: &mut Causes) {
    let b64 = base64::engine::general_purpose::STANDARD;
    // stringData is write-only: merged into data, never stored.
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = Value::Object(Map::new());
        }
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            obj["data"][&k] = b64.encode(s).into();
        }
    }
    if obj.get("type").is_none_or(Value::is_null) {
        obj["type"] = "Opaque".into();
    }
    for (k, v) in obj
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_config_key(k) {
            causes.push((
                format!("data[{k}]"),
                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
            ));
        }
        if v.as_str().is_none_or(|s| b64.decode(s).is_err()) {
            causes.push((format!("data[{k}]"), "Invalid value: not base64".into()));
        }
    }
    if let Some(old) = old {
        if old.get("type") != obj.get("type") {
            causes.push(("type".into(), "Invalid value: field is immutable".into()));
        }
        if old.get("immutable") == Some(&Value::Bool(true))
            && (old.get("data") != obj.get("data")
                || obj.get("immutable") != Some(&Value::Bool(true)))
        {
            causes.push((
                "data".into(),
                "Forbidden: field is immutable when `immutable` is set".into(),
            ));
        }
    }
}

fn service(obj: &mut Value, old: Option<&Value>, alloc: &mut Allocations, causes: &mut Causes) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = obj["spec"].as_object_mut().expect("made an object above");
    let ty = spec
        .entry("type")
        .or_insert_with(|| "ClusterIP".into())
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    spec.entry("sessionAffinity")
        .or_insert_with(|| "None".into());
    let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
    if spec.get("clusterIP").is_none_or(|v| v.as_str() == Some("")) {
        let ip = old_ip.unwrap_or_else(|| alloc.cluster_ip().into());
        spec.insert("clusterIP".into(), ip.clone());
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    let wants_node_ports = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
    let old_ports = old.map(node_ports).unwrap_or_default();
    let mut taken_here = BTreeSet::new();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(pm) = p.as_object_mut() else {
                continue;
            };
            pm.entry("protocol").or_insert_with(|| "TCP".into());
            if let Some(port) = pm.get("port").cloned() {
                pm.entry("targetPort").or_insert(port);
            } else {
                causes.push((format!("spec.ports[{i}].port"), "Required value".into()));
            }
            if !wants_node_ports {
                continue;
            }
            // An update that omits a port's nodePort keeps the one it had.
            if pm.get("nodePort").is_none()
                && let Some(prev) = old
                    .and_then(|o| o.pointer("/spec/ports"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|o| {
                        o.get("port") == pm.get("port") && o.get("protocol") == pm.get("protocol")
                    })
                    .and_then(|o| o.get("nodePort"))
            {
                pm.insert("nodePort".into(), prev.clone());
            }
            match pm.get("nodePort").and_then(Value::as_i64) {
                Some(np) if !(30000..=32767).contains(&np) => causes.push((
                    format!("spec.ports[{i}].nodePort"),
                    format!("Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                )),
                Some(np) if !old_ports.contains(&np) && (alloc.node_ports.contains(&np) || !taken_here.insert(np)) => {
                    causes.push((
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {np}: provided port is already allocated"),
                    ));
                }
                Some(_) => {}
                None => match alloc.node_port() {
                    Some(np) => {
                        pm.insert("nodePort".into(), np.into());
                    }
                    None => causes.push((
                        format!("spec.ports[{i}].nodePort"),
                        "Internal error: range is full".into(),
                    )),
                },
            }
        }
    }
    if causes.is_empty() {
        alloc.node_ports.extend(node_ports(obj));
    }
}

fn crd(obj: &mut Value, causes: &mut Causes) {
    let parsed = match parse_crd(obj) {
        Ok(c) => c,
        Err(e) => {
            causes.push(("spec".into(), format!("Invalid value: {}", e.message)));
            return;
        }
    };
    causes.extend(validate_crd(&parsed));
    if !causes.is_empty() {
        return;
    }
    let storage: Vec<&str> = parsed
        .spec
        .versions
        .iter()
        .filter(|v| v.storage)
        .map(|v| v.name.as_str())
        .collect();
    // The CRD goes only after its custom resources (see controllers).
    if let Some(meta) = obj["metadata"].as_object_mut() {
        let list = meta
            .entry("finalizers")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(l) = list.as_array_mut()
            && !l.iter().any(|f| f == CRD_CLEANUP_FINALIZER)
        {
            l.push(CRD_CLEANUP_FINALIZER.into());
        }
    }
    // The apiextensions controllers accept names and establish at once.
    obj["status"] = json!({
        "acceptedNames": obj["spec"]["names"].clone(),
        "storedVersions": storage,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": "1970-01-01T00:00:00Z"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": "1970-01-01T00:00:00Z"}
        ]
    });
}

#[cfg(test)]
mod tests {
    use super::super::resources::Registry;
    use super::*;

    fn info(g: &str, plural: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::new().get(g, "v1", plural).unwrap()
    }

    #[test]
    fn secrets_merge_string_data_and_keep_type() {
        let mut a = Allocations::default();
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"value": "hi"}, "data": {"format": "Y2xvdWQtY29uZmln"}});
        admit(&info("", "secrets"), &mut s, None, &mut a, false).unwrap();
        assert_eq!(s["data"]["value"], "aGk=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let mut changed = s.clone();
        changed["type"] = "cluster.x-k8s.io/secret".into();
        let e = admit(&info("", "secrets"), &mut changed, Some(&s), &mut a, false).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("type: Invalid value"), "{}", e.message);
    }

    #[test]
    fn services_get_ips_and_unique_node_ports() {
        let mut a = Allocations::default();
        let mut s1 = json!({"metadata": {"name": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 30443, "nodePort": 30443}, {"port": 8132}]}});
        admit(&info("", "services"), &mut s1, None, &mut a, false).unwrap();
        assert_eq!(s1["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(s1["spec"]["ports"][1]["nodePort"], 30000);
        assert_eq!(s1["spec"]["ports"][0]["targetPort"], 30443);
        let mut s2 = json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 30443}]}});
        let e = admit(&info("", "services"), &mut s2, None, &mut a, false).unwrap_err();
        assert!(
            e.message.contains("spec.ports[0].nodePort"),
            "{}",
            e.message
        );
        // An update keeps its own ports.
        let mut again = s1.clone();
        admit(&info("", "services"), &mut again, Some(&s1), &mut a, false).unwrap();
        // An update that leaves nodePort out keeps the allocated one.
        let mut omitted = s1.clone();
        omitted["spec"]["ports"][1]
            .as_object_mut()
            .unwrap()
            .remove("nodePort");
        admit(
            &info("", "services"),
            &mut omitted,
            Some(&s1),
            &mut a,
            false,
        )
        .unwrap();
        assert_eq!(omitted["spec"]["ports"][1]["nodePort"], 30000);
    }

    #[test]
    fn bad_names_and_labels_are_422_naming_the_field() {
        let mut a = Allocations::default();
        let mut cm = json!({"metadata": {"name": "Bad", "labels": {"ok": "x".repeat(64)}}});
        let e = admit(&info("", "configmaps"), &mut cm, None, &mut a, false).unwrap_err();
        let fields: Vec<&str> = e.details.as_ref().unwrap()["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels"]);
        let mut two = json!({"metadata": {"name": "x", "ownerReferences": [
            {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "", "controller": true}
        ]}});
        let e = admit(&info("", "configmaps"), &mut two, None, &mut a, false).unwrap_err();
        assert!(
            e.message
                .contains("metadata.ownerReferences[1].uid: Required value"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("only one reference can have Controller"),
            "{}",
            e.message
        );
        let mut role = json!({"metadata": {"name": "system:controller:x"}});
        admit(
            &info("rbac.authorization.k8s.io", "clusterroles"),
            &mut role,
            None,
            &mut a,
            false,
        )
        .unwrap();
    }
}
