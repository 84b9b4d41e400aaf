//! `controlplane.cluster.x-k8s.io/v1beta2`: K0sControlPlane (control plane on
//! CAPI Machines), K0smotronControlPlane (hosted control plane in pods) and
//! their templates.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bootstrap::K0sConfigSpec;
use super::common::{Condition, MachineTemplateMeta, SecretMetadata, TemplateObjectMeta};
use super::k0smotron::ClusterSpec;

/// The group of the control-plane kinds.
pub const GROUP: &str = "controlplane.cluster.x-k8s.io";
/// Default k0s version of a K0sControlPlane.
pub const DEFAULT_K0S_CONTROL_PLANE_VERSION: &str = "v1.27.9+k0s.0";

/// How a K0sControlPlane rolls out a new version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategy {
    /// Upgrade k0s on the existing machines through an autopilot Plan.
    #[default]
    InPlace,
    /// Add a new machine, then remove an old one.
    Recreate,
    /// Remove an old machine first (replicas >= 3), then add a new one.
    RecreateDeleteFirst,
}

/// `spec.machineTemplate` of a K0sControlPlane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct K0sControlPlaneMachineTemplate {
    /// Labels and annotations for the Machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MachineTemplateMeta>,
    /// The infrastructure machine template to clone.
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub infrastructure_ref: ObjectReference,
}

/// A k0s control plane on CAPI Machines.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "controlplane.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0sControlPlane",
    namespaced,
    status = "ControlPlaneStatus",
    category = "cluster-api",
    doc = "K0sControlPlane is a k0s control plane running on CAPI Machines.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "control-plane-k0smotron"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "UpToDate",
        type_ = "integer",
        json_path = ".status.upToDateReplicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version")
)]
#[serde(rename_all = "camelCase")]
pub struct K0sControlPlaneSpec {
    /// Bootstrap configuration of every controller.
    pub k0s_config_spec: K0sConfigSpec,
    /// Template of the controller Machines.
    pub machine_template: K0sControlPlaneMachineTemplate,
    /// Number of controllers.
    #[serde(default = "one")]
    #[schemars(extend("default" = 1))]
    pub replicas: i32,
    /// Rollout strategy.
    #[serde(default)]
    #[schemars(extend("default" = "InPlace"))]
    pub update_strategy: UpdateStrategy,
    /// k0s version (`+k0s.0` is appended when missing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Metadata for the kubeconfig Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_metadata: Option<SecretMetadata>,
}

fn one() -> i32 {
    1
}

/// `status.initialization` of a control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1))]
pub struct ControlPlaneInitialization {
    /// The API server accepts requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_initialized: Option<bool>,
}

/// Observed state of both control-plane kinds (CAPI v1beta2 contract).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneStatus {
    /// Initialization progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<ControlPlaneInitialization>,
    /// True when the control plane has no Nodes in the workload cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_managed_control_plane: Option<bool>,
    /// Lowest version among the controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Controllers that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Available controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Controllers at the desired spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to_date_replicas: Option<i32>,
    /// Label selector of the controllers (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Conditions: `Available`, `ScalingUp`, `ScalingDown`, `Paused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `spec.template.spec.machineTemplate` of a K0sControlPlaneTemplate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct K0sControlPlaneTemplateMachineTemplate {
    /// Labels and annotations for the Machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MachineTemplateMeta>,
    /// Node drain timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_drain_timeout: Option<String>,
    /// Volume detach timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_volume_detach_timeout: Option<String>,
    /// Node deletion timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deletion_timeout: Option<String>,
}

/// `spec.template.spec` of a K0sControlPlaneTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct K0sControlPlaneTemplateResourceSpec {
    /// Bootstrap configuration of every controller.
    pub k0s_config_spec: K0sConfigSpec,
    /// Machine settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_template: Option<K0sControlPlaneTemplateMachineTemplate>,
    /// k0s version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Rollout strategy.
    #[serde(default)]
    #[schemars(extend("default" = "InPlace"))]
    pub update_strategy: UpdateStrategy,
}

/// `spec.template` of a K0sControlPlaneTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct K0sControlPlaneTemplateResource {
    /// Metadata of the cloned object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateObjectMeta>,
    /// The spec to clone.
    #[serde(default, skip_serializing_if = "super::common::is_default")]
    pub spec: K0sControlPlaneTemplateResourceSpec,
}

/// A ClusterClass template for K0sControlPlanes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "controlplane.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0sControlPlaneTemplate",
    namespaced,
    category = "cluster-api",
    doc = "K0sControlPlaneTemplate is the ClusterClass template of a K0sControlPlane.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "control-plane-k0smotron"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct K0sControlPlaneTemplateSpec {
    /// The template.
    #[serde(default, skip_serializing_if = "super::common::is_default")]
    pub template: K0sControlPlaneTemplateResource,
}

/// A hosted control plane: drover creates a k0smotron.io Cluster of the same
/// name as the CAPI Cluster, with this spec.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "controlplane.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0smotronControlPlane",
    namespaced,
    status = "ControlPlaneStatus",
    category = "cluster-api",
    doc = "K0smotronControlPlane is a k0s control plane hosted in pods of the management cluster.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "control-plane-k0smotron"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "UpToDate",
        type_ = "integer",
        json_path = ".status.upToDateReplicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version")
)]
pub struct K0smotronControlPlaneSpec {
    /// The hosted control plane's spec, exactly the k0smotron.io `ClusterSpec`.
    #[serde(flatten)]
    pub cluster: ClusterSpec,
}

/// `spec.template` of a K0smotronControlPlaneTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct K0smotronControlPlaneTemplateResource {
    /// Metadata of the cloned object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateObjectMeta>,
    /// The spec to clone.
    #[serde(default, skip_serializing_if = "super::common::is_default")]
    pub spec: ClusterSpec,
}

/// A ClusterClass template for K0smotronControlPlanes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "controlplane.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0smotronControlPlaneTemplate",
    namespaced,
    category = "cluster-api",
    doc = "K0smotronControlPlaneTemplate is the ClusterClass template of a K0smotronControlPlane.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "control-plane-k0smotron"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct K0smotronControlPlaneTemplateSpec {
    /// The template.
    #[serde(default, skip_serializing_if = "super::common::is_default")]
    pub template: K0smotronControlPlaneTemplateResource,
}
