//! Discovery documents: `/api`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`,
//! `/api/v1` and `/version`, built from the served resources. kubectl and
//! kube-rs's discovery read these; aggregated discovery (v2) is not served,
//! so clients fall back to these legacy documents, as with older servers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::error::ApiError;
use super::resources::{Registry, ResourceInfo};

/// The Kubernetes version the sim claims to be.
pub const KUBE_VERSION: (&str, &str) = ("1", "36");

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_VERSION.0,
        "minor": KUBE_VERSION.1,
        "gitVersion": format!("v{}.{}.0+kube-sim", KUBE_VERSION.0, KUBE_VERSION.1),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "kube-sim",
        "platform": "linux/amd64",
    })
}

/// `/`: the paths served.
pub fn root_paths(reg: &Registry) -> Value {
    let mut paths = vec![
        "/api".to_owned(),
        "/api/v1".into(),
        "/apis".into(),
        "/healthz".into(),
        "/livez".into(),
        "/readyz".into(),
        "/version".into(),
    ];
    for (g, versions) in groups(reg) {
        paths.push(format!("/apis/{g}"));
        for v in versions {
            paths.push(format!("/apis/{g}/{v}"));
        }
    }
    json!({"paths": paths})
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

/// Named groups and their versions, preferred (newest by Kubernetes version order) first.
fn groups(reg: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in reg.all().filter(|r| !r.group.is_empty()) {
        let vs = out.entry(r.group.clone()).or_default();
        if !vs.contains(&r.version) {
            vs.push(r.version.clone());
        }
    }
    for vs in out.values_mut() {
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (level, major, minor)
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = groups(reg).iter().map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{g}`.
pub fn group(reg: &Registry, g: &str) -> Result<Value, ApiError> {
    let all = groups(reg);
    let vs = all.get(g).ok_or_else(ApiError::not_found_path)?;
    let mut doc = group_doc(g, vs);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Ok(doc)
}

fn verbs(r: &ResourceInfo) -> Vec<&'static str> {
    vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    .into_iter()
    .filter(|v| r.kind != "Event" || *v != "deletecollection")
    .collect()
}

/// `/api/v1` or `/apis/{g}/{v}`: an APIResourceList with subresources.
pub fn resource_list(reg: &Registry, g: &str, v: &str) -> Result<Value, ApiError> {
    if !reg.serves_group_version(g, v) {
        return Err(ApiError::not_found_path());
    }
    let mut resources = Vec::new();
    for r in reg.all().filter(|r| r.group == g && r.version == v) {
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        resources.push(doc);
        if r.status_subresource {
            resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
        if r.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if g.is_empty() {
        v.to_owned()
    } else {
        format!("{g}/{v}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/openapi/v3`: one entry per group version. kubectl reads it to learn
/// that the server validates fields itself (`fieldValidation`).
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
    );
    for (g, versions) in groups(reg) {
        for v in versions {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/{g}/{v}`: the write paths of each resource, with their
/// group-version-kind and the `fieldValidation` parameter. Schemas are not
/// included (`kubectl explain` does not work).
pub fn openapi_v3_group_version(reg: &Registry, g: &str, v: &str) -> Result<Value, ApiError> {
    if !reg.serves_group_version(g, v) {
        return Err(ApiError::not_found_path());
    }
    let prefix = if g.is_empty() {
        format!("/api/{v}")
    } else {
        format!("/apis/{g}/{v}")
    };
    let param = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
    ]);
    let mut paths = serde_json::Map::new();
    for r in reg.all().filter(|r| r.group == g && r.version == v) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op =
            json!({"x-kubernetes-group-version-kind": gvk, "parameters": param, "responses": {}});
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let coll = item.trim_end_matches("/{name}").to_owned();
        paths.insert(
            item,
            json!({"get": op, "put": op, "patch": op, "delete": op}),
        );
        paths.insert(coll, json!({"get": op, "post": op}));
    }
    Ok(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "kube-sim"}, "paths": paths, "components": {"schemas": {}}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_does() {
        let mut vs = vec!["v1alpha1", "v1beta2", "v2", "v1", "v1beta1"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(vs, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn resource_lists_name_subresources() {
        let reg = Registry::new();
        let doc = resource_list(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"deployments/scale") && names.contains(&"statefulsets/status"),
            "{names:?}"
        );
        assert_eq!(resource_list(&reg, "nope.io", "v1").unwrap_err().code, 404);
    }
}
