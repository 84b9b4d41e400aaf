//! The CustomResourceDefinitions drover serves, generated from the types.
//!
//! `drover crds` writes them to `schemas/crds/` (drover's kinds) and
//! `schemas/capi/` (the CAPI core subset the simulated API server installs).
//! A test fails when the committed files differ from what this module renders.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use serde_json::json;

use crate::api::{bootstrap, capi, controlplane, infrastructure, k0smotron};
use crate::error::Error;

/// Which set of CRDs a definition belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdSet {
    /// drover's own (k0smotron-compatible) kinds: installed in production.
    Drover,
    /// The CAPI core subset: installed only into the simulated API server.
    Capi,
}

impl CrdSet {
    /// The folder under `schemas/` the set is written to.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Drover => "crds",
            Self::Capi => "capi",
        }
    }
}

/// Every k0smotron v1beta2 CRD, in a stable order.
pub fn drover_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        bootstrap::K0sWorkerConfig::crd(),
        bootstrap::K0sWorkerConfigTemplate::crd(),
        bootstrap::K0sControllerConfig::crd(),
        controlplane::K0sControlPlane::crd(),
        controlplane::K0sControlPlaneTemplate::crd(),
        controlplane::K0smotronControlPlane::crd(),
        controlplane::K0smotronControlPlaneTemplate::crd(),
        infrastructure::RemoteCluster::crd(),
        infrastructure::RemoteClusterTemplate::crd(),
        infrastructure::RemoteMachine::crd(),
        infrastructure::RemoteMachineTemplate::crd(),
        infrastructure::PooledRemoteMachine::crd(),
        k0smotron::Cluster::crd(),
        k0smotron::JoinTokenRequest::crd(),
    ];
    for crd in &mut crds {
        finish_common(crd);
        finish_drover_crd(crd);
    }
    crds
}

/// The CAPI core CRD subset (Cluster, Machine, MachineSet, MachineDeployment).
pub fn capi_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        capi::Cluster::crd(),
        capi::Machine::crd(),
        capi::MachineSet::crd(),
        capi::MachineDeployment::crd(),
    ];
    for crd in &mut crds {
        finish_common(crd);
        // Keep what drover does not model, as a real CAPI install would.
        if let Some(root) = root_schema_mut(crd) {
            for field in ["spec", "status"] {
                if let Some(props) = root.properties.as_mut().and_then(|p| p.get_mut(field)) {
                    props.x_kubernetes_preserve_unknown_fields = Some(true);
                }
            }
        }
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(crate::labels::PROVIDER.into(), "cluster-api".into());
    }
    crds
}

/// Where a kind is served: what a client needs to address it, without
/// generating its schema (which [`all_crds`] does, and which takes about a
/// second for the whole set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedKind {
    /// `group/version`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespaced (or cluster-scoped).
    pub namespaced: bool,
}

fn served<K>() -> ServedKind
where
    K: kube::Resource<DynamicType = ()>,
    K::Scope: 'static,
{
    ServedKind {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        group: K::group(&()).into_owned(),
        version: K::version(&()).into_owned(),
        plural: K::plural(&()).into_owned(),
        namespaced: std::any::TypeId::of::<K::Scope>()
            == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
    }
}

/// Every kind of [`all_crds`], cheaply (no schemas).
pub fn served_kinds() -> Vec<ServedKind> {
    vec![
        served::<bootstrap::K0sWorkerConfig>(),
        served::<bootstrap::K0sWorkerConfigTemplate>(),
        served::<bootstrap::K0sControllerConfig>(),
        served::<controlplane::K0sControlPlane>(),
        served::<controlplane::K0sControlPlaneTemplate>(),
        served::<controlplane::K0smotronControlPlane>(),
        served::<controlplane::K0smotronControlPlaneTemplate>(),
        served::<infrastructure::RemoteCluster>(),
        served::<infrastructure::RemoteClusterTemplate>(),
        served::<infrastructure::RemoteMachine>(),
        served::<infrastructure::RemoteMachineTemplate>(),
        served::<infrastructure::PooledRemoteMachine>(),
        served::<k0smotron::Cluster>(),
        served::<k0smotron::JoinTokenRequest>(),
        served::<capi::Cluster>(),
        served::<capi::Machine>(),
        served::<capi::MachineSet>(),
        served::<capi::MachineDeployment>(),
    ]
}

/// Both sets, tagged.
pub fn all_crds() -> Vec<(CrdSet, CustomResourceDefinition)> {
    drover_crds()
        .into_iter()
        .map(|c| (CrdSet::Drover, c))
        .chain(capi_crds().into_iter().map(|c| (CrdSet::Capi, c)))
        .collect()
}

/// The file name a CRD is written to: `<group>_<plural>.yaml`, as controller-gen names them.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Renders one CRD as YAML, with a header saying where it comes from.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, Error> {
    let body = serde_saphyr::to_string(crd).map_err(|e| Error::Yaml(e.to_string()))?;
    Ok(format!(
        "# Generated by `drover crds` from the Rust types in shared/src/api. Do not edit.\n---\n{body}"
    ))
}

/// A `kustomization.yaml` listing the CRD files of one set, so that
/// `deploy/crds` can use the folder as a base.
pub fn kustomization(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::from(
        "# Generated by `drover crds`. Do not edit.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for crd in crds {
        out.push_str(&format!("  - {}\n", file_name(crd)));
    }
    out
}

/// The files `drover crds` writes into `schemas/`: relative path and
/// content. The CRDs, and the JSON schema of queue jobs.
pub fn rendered_files() -> Result<Vec<(String, String)>, Error> {
    let mut files = vec![(
        "jobs/job.schema.json".to_owned(),
        crate::jobs::schema_json(),
    )];
    for (set, crds) in [(CrdSet::Drover, drover_crds()), (CrdSet::Capi, capi_crds())] {
        for crd in &crds {
            files.push((format!("{}/{}", set.dir(), file_name(crd)), to_yaml(crd)?));
        }
        files.push((
            format!("{}/kustomization.yaml", set.dir()),
            kustomization(&crds),
        ));
    }
    Ok(files)
}

/// The v1beta2 schema of a CRD.
pub fn root_schema(crd: &CustomResourceDefinition) -> Option<&JSONSchemaProps> {
    crd.spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()
}

fn root_schema_mut(crd: &mut CustomResourceDefinition) -> Option<&mut JSONSchemaProps> {
    crd.spec
        .versions
        .first_mut()?
        .schema
        .as_mut()?
        .open_api_v3_schema
        .as_mut()
}

fn node_mut<'a>(
    mut node: &'a mut JSONSchemaProps,
    path: &[&str],
) -> Option<&'a mut JSONSchemaProps> {
    for p in path {
        node = node.properties.as_mut()?.get_mut(*p)?;
    }
    Some(node)
}

/// Makes a derived CRD look like controller-gen's: `listKind` set, `apiVersion`
/// and `kind` declared, and `spec` optional at the root (k0smotron's are).
fn finish_common(crd: &mut CustomResourceDefinition) {
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    let Some(root) = root_schema_mut(crd) else {
        return;
    };
    if let Some(required) = root.required.as_mut() {
        required.retain(|r| r != "spec");
        if required.is_empty() {
            root.required = None;
        }
    }
    let props = root.properties.get_or_insert_with(Default::default);
    for (field, what) in [
        (
            "apiVersion",
            "APIVersion defines the versioned schema of this representation of an object.",
        ),
        (
            "kind",
            "Kind is a string value representing the REST resource this object represents.",
        ),
    ] {
        props.insert(
            field.to_owned(),
            JSONSchemaProps {
                type_: Some("string".into()),
                description: Some(what.into()),
                ..Default::default()
            },
        );
    }
}

/// Applies what the derive macro cannot express: defaults on the root
/// `spec`/`status` objects, exactly as k0smotron's CRDs declare them.
fn finish_drover_crd(crd: &mut CustomResourceDefinition) {
    let kind = crd.spec.names.kind.clone();
    let group = crd.spec.group.clone();
    let Some(root) = root_schema_mut(crd) else {
        return;
    };
    // serde defaults keep the Rust types lenient, which makes schemars mark
    // these optional; k0smotron's schema requires them (and defaults them).
    let cluster_spec: Option<&[&str]> = match kind.as_str() {
        "Cluster" | "K0smotronControlPlane" => Some(&["spec"]),
        "K0smotronControlPlaneTemplate" => Some(&["spec", "template", "spec"]),
        _ => None,
    };
    if let Some(base) = cluster_spec {
        for (sub, required) in [
            (
                &["monitoring"][..],
                &["enabled", "prometheusImage", "proxyImage"][..],
            ),
            (&["storage", "etcd"], &["image"]),
            (
                &["storage", "etcd", "defragJob"],
                &["enabled", "image", "rule", "schedule"],
            ),
        ] {
            let path: Vec<&str> = base.iter().chain(sub).copied().collect();
            if let Some(node) = node_mut(root, &path) {
                node.required = Some(required.iter().map(|s| (*s).to_owned()).collect());
            }
        }
    }
    let Some(props) = root.properties.as_mut() else {
        return;
    };
    match (group.as_str(), kind.as_str()) {
        (k0smotron::GROUP, "Cluster") => {
            if let Some(spec) = props.get_mut("spec") {
                spec.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        json!({"service": {"type": "NodePort"}}),
                    ),
                );
            }
        }
        (controlplane::GROUP, "K0sControlPlane") => {
            if let Some(status) = props.get_mut("status") {
                status.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        json!({"version": "", "initialization": {"controlPlaneInitialized": false}}),
                    ),
                );
            }
        }
        (controlplane::GROUP, "K0smotronControlPlane") => {
            if let Some(status) = props.get_mut("status") {
                status.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        json!({
                            "version": "",
                            "initialization": {"controlPlaneInitialized": false},
                            "conditions": [{
                                "type": "Available",
                                "status": "Unknown",
                                "reason": "ControlPlaneDoesNotExist",
                                "message": "Waiting for cluster topology to be reconciled",
                                "lastTransitionTime": "1970-01-01T00:00:00Z"
                            }]
                        }),
                    ),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_kinds_are_exactly_the_crds() {
        let mut from_crds: Vec<ServedKind> = all_crds()
            .into_iter()
            .flat_map(|(_, crd)| {
                let s = crd.spec;
                s.versions
                    .iter()
                    .map(|v| ServedKind {
                        api_version: format!("{}/{}", s.group, v.name),
                        kind: s.names.kind.clone(),
                        group: s.group.clone(),
                        version: v.name.clone(),
                        plural: s.names.plural.clone(),
                        namespaced: s.scope == "Namespaced",
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut cheap = served_kinds();
        from_crds.sort_by(|a, b| a.api_version.cmp(&b.api_version).then(a.kind.cmp(&b.kind)));
        cheap.sort_by(|a, b| a.api_version.cmp(&b.api_version).then(a.kind.cmp(&b.kind)));
        assert_eq!(cheap, from_crds);
    }
}
