//! What a simulated cluster serves: the built-in kinds, plus one entry per
//! served version of every installed CustomResourceDefinition, with the
//! compiled structural schema that writes are admitted against.

use std::collections::BTreeMap;
use std::sync::Arc;

use drover_shared::structural::StructuralSchema;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::error::ApiError;
use super::store::{Resource, ResourceRules};

/// Where the scale subresource reads and writes, as JSON paths (`.spec.replicas`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`.
    pub spec_replicas: String,
    /// `statusReplicasPath`.
    pub status_replicas: String,
    /// `labelSelectorPath`, if any.
    pub label_selector: Option<String>,
}

/// An `additionalPrinterColumns` entry (for `kubectl get` tables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub ty: String,
    /// Simple JSONPath (`.status.phase`, `.status.conditions[?(@.type=="Ready")].status`).
    pub json_path: String,
}

/// One served resource at one version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group (`""` for core).
    pub group: String,
    /// Version (`v1`, `v1beta2`).
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural (URL) name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names (`kmc`).
    pub short_names: Vec<String>,
    /// Categories (`cluster-api`).
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Has `/status`.
    pub status_subresource: bool,
    /// Has `/scale`, and where it maps.
    pub scale: Option<ScalePaths>,
    /// The CRD's structural schema (custom resources only).
    pub schema: Option<Arc<StructuralSchema>>,
    /// Custom (from a CRD) rather than built in.
    pub custom: bool,
    /// Extra printer columns (custom resources).
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceInfo {
    /// The store key (group and plural; versions share storage).
    pub fn resource(&self) -> Resource {
        // events.k8s.io Events are stored as the core Events they view.
        if super::events::is_view(&self.group, &self.plural) {
            return Resource::new("", "events");
        }
        Resource::new(&self.group, &self.plural)
    }

    /// How the store treats writes.
    pub fn rules(&self) -> ResourceRules {
        ResourceRules {
            namespaced: self.namespaced,
            status_subresource: self.status_subresource,
        }
    }

    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, the name errors use.
    pub fn qualified(&self) -> String {
        self.resource().qualified()
    }
}

/// Built-in kinds: (group, version, kind, plural, namespaced, status, scale, short names).
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
    &'static [&'static str],
);

const BUILT_IN: &[BuiltIn] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        true,
        false,
        &["ns"],
    ),
    ("", "v1", "Secret", "secrets", true, false, false, &[]),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        false,
        &["cm"],
    ),
    ("", "v1", "Service", "services", true, true, false, &["svc"]),
    (
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        false,
        false,
        &["ep"],
    ),
    ("", "v1", "Event", "events", true, false, false, &["ev"]),
    ("", "v1", "Node", "nodes", false, true, false, &["no"]),
    ("", "v1", "Pod", "pods", true, true, false, &["po"]),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        true,
        false,
        &["pvc"],
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        false,
        &["sa"],
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        true,
        &["sts"],
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        true,
        &["deploy"],
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        false,
        &["ev"],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        false,
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        false,
        &["crd", "crds"],
    ),
];

/// The CRD resource itself.
pub fn crd_resource() -> Resource {
    Resource::new("apiextensions.k8s.io", "customresourcedefinitions")
}

/// Every served resource of one cluster, by (group, version, plural).
#[derive(Clone, Debug)]
pub struct Registry {
    by_gvr: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// The built-in kinds only.
    pub fn new() -> Self {
        let mut by_gvr = BTreeMap::new();
        for &(group, version, kind, plural, namespaced, status, scale, short) in BUILT_IN {
            let info = ResourceInfo {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: kind.to_ascii_lowercase(),
                short_names: short.iter().map(|s| (*s).to_owned()).collect(),
                categories: Vec::new(),
                namespaced,
                status_subresource: status,
                scale: scale.then(|| ScalePaths {
                    spec_replicas: ".spec.replicas".into(),
                    status_replicas: ".status.replicas".into(),
                    label_selector: Some(".spec.selector".into()),
                }),
                schema: None,
                custom: false,
                printer_columns: Vec::new(),
            };
            by_gvr.insert(
                (group.into(), version.into(), plural.into()),
                Arc::new(info),
            );
        }
        Self { by_gvr }
    }

    /// The resource served at `group/version/plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.by_gvr
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// The resource of a kind at `apiVersion`, for objects that name themselves.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.by_gvr
            .values()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Every served resource, ordered by group, version, plural.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.by_gvr.values()
    }

    /// Whether `group/version` is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.by_gvr
            .keys()
            .any(|(g, v, _)| g == group && v == version)
    }

    /// Serves the custom resources a CRD (as stored JSON) defines, replacing
    /// whatever an older copy of the same CRD served.
    pub fn install_crd(&mut self, crd_json: &Value) -> Result<(), ApiError> {
        let crd = parse_crd(crd_json)?;
        self.remove_crd(&crd.spec.group, &crd.spec.names.plural);
        for info in crd_resources(&crd)? {
            self.by_gvr.insert(
                (
                    info.group.clone(),
                    info.version.clone(),
                    info.plural.clone(),
                ),
                Arc::new(info),
            );
        }
        Ok(())
    }

    /// Stops serving the custom resource `plural.group`.
    pub fn remove_crd(&mut self, group: &str, plural: &str) {
        self.by_gvr
            .retain(|(g, _, p), info| !(info.custom && g == group && p == plural));
    }
}

/// Decodes a CRD, with a 400 that says what is malformed.
pub fn parse_crd(crd_json: &Value) -> Result<CustomResourceDefinition, ApiError> {
    serde_json::from_value(crd_json.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "CustomResourceDefinition in version \"v1\" cannot be handled as a CustomResourceDefinition: {e}"
        ))
    })
}

/// Checks a CRD as the apiextensions apiserver does (the parts that matter
/// to drover), returning 422 causes naming the field.
pub fn validate_crd(crd: &CustomResourceDefinition) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let spec = &crd.spec;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let expected = format!("{}.{}", spec.names.plural, spec.group);
    if name != expected {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if spec.group.is_empty() || !spec.group.contains('.') {
        causes.push((
            "spec.group".into(),
            format!(
                "Invalid value: \"{}\": should be a domain with at least one dot",
                spec.group
            ),
        ));
    }
    if !matches!(spec.scope.as_str(), "Namespaced" | "Cluster") {
        causes.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: \"{}\": supported values: \"Cluster\", \"Namespaced\"",
                spec.scope
            ),
        ));
    }
    if spec.versions.is_empty() {
        causes.push(("spec.versions".into(), "Required value".into()));
    }
    let storage = spec.versions.iter().filter(|v| v.storage).count();
    if !spec.versions.is_empty() && storage != 1 {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    for (i, v) in spec.versions.iter().enumerate() {
        match v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            None => causes.push((
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            )),
            Some(s) => {
                if let Err(e) = StructuralSchema::compile(s) {
                    causes.push((
                        format!("spec.versions[{i}].schema.openAPIV3Schema{}", e.path),
                        format!("Invalid value: {}", e.message),
                    ));
                }
            }
        }
    }
    causes
}

fn crd_resources(crd: &CustomResourceDefinition) -> Result<Vec<ResourceInfo>, ApiError> {
    let spec = &crd.spec;
    let mut out = Vec::new();
    for v in spec.versions.iter().filter(|v| v.served) {
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(StructuralSchema::compile)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("schema: {}: {}", e.path, e.message)))?
            .map(Arc::new);
        let subs = v.subresources.as_ref();
        out.push(ResourceInfo {
            group: spec.group.clone(),
            version: v.name.clone(),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
            singular: spec
                .names
                .singular
                .clone()
                .unwrap_or_else(|| spec.names.kind.to_ascii_lowercase()),
            short_names: spec.names.short_names.clone().unwrap_or_default(),
            categories: spec.names.categories.clone().unwrap_or_default(),
            namespaced: spec.scope == "Namespaced",
            status_subresource: subs.is_some_and(|s| s.status.is_some()),
            scale: subs.and_then(|s| s.scale.as_ref()).map(|s| ScalePaths {
                spec_replicas: s.spec_replicas_path.clone(),
                status_replicas: s.status_replicas_path.clone(),
                label_selector: s.label_selector_path.clone(),
            }),
            schema,
            custom: true,
            printer_columns: v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c.name.clone(),
                    ty: c.type_.clone(),
                    json_path: c.json_path.clone(),
                })
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_our_crds_with_subresources() {
        let mut reg = Registry::new();
        for (_, crd) in drover_shared::crds::all_crds() {
            assert!(validate_crd(&crd).is_empty(), "{:?}", crd.metadata.name);
            reg.install_crd(&serde_json::to_value(&crd).unwrap())
                .unwrap();
        }
        let kcp = reg
            .get(
                "controlplane.cluster.x-k8s.io",
                "v1beta2",
                "k0scontrolplanes",
            )
            .unwrap();
        assert!(kcp.status_subresource && kcp.scale.is_some() && kcp.schema.is_some());
        let kmc = reg.by_kind("k0smotron.io/v1beta2", "Cluster").unwrap();
        assert_eq!(kmc.short_names, ["kmc"]);
        assert!(reg.get("", "v1", "secrets").is_some_and(|s| !s.custom));
        reg.remove_crd("k0smotron.io", "clusters");
        assert!(reg.by_kind("k0smotron.io/v1beta2", "Cluster").is_none());
    }

    #[test]
    fn a_crd_whose_name_is_not_plural_dot_group_is_invalid() {
        let mut crd = drover_shared::crds::drover_crds().remove(0);
        crd.metadata.name = Some("wrong".into());
        let causes = validate_crd(&crd);
        assert_eq!(causes[0].0, "metadata.name");
    }
}
