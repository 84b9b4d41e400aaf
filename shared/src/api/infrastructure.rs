//! `infrastructure.cluster.x-k8s.io/v1beta2`: RemoteCluster, RemoteMachine,
//! PooledRemoteMachine and their templates: machines reached over SSH.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ApiEndpoint, Condition, MachineAddress, MachineTemplateMeta, NamespacedName,
    TemplateObjectMeta, is_false, is_zero_i32,
};

/// The group of the infrastructure kinds.
pub const GROUP: &str = "infrastructure.cluster.x-k8s.io";

/// A placeholder InfraCluster: the endpoint is given by the user or written by
/// the hosted control plane.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "RemoteCluster",
    namespaced,
    status = "RemoteClusterStatus",
    category = "cluster-api",
    doc = "RemoteCluster is the infrastructure of a cluster whose machines are reached over SSH.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "infrastructure-k0smotron"),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(
        name = "Provisioned",
        type_ = "boolean",
        json_path = ".status.initialization.provisioned"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.controlPlaneEndpoint.host"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterSpec {
    /// The control plane's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<ApiEndpoint>,
}

/// `status.initialization` of an infrastructure object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("minProperties" = 1))]
pub struct InfraInitialization {
    /// Provisioned (v1beta2 contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<bool>,
}

/// Observed state of a RemoteCluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteClusterStatus {
    /// Initialization progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<InfraInitialization>,
    /// Conditions: `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `spec.template` of a RemoteClusterTemplate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteClusterTemplateResource {
    /// Labels and annotations of the cloned object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MachineTemplateMeta>,
    /// The spec to clone.
    pub spec: RemoteClusterSpec,
}

/// A ClusterClass template for RemoteClusters.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "RemoteClusterTemplate",
    namespaced,
    category = "cluster-api",
    doc = "RemoteClusterTemplate is the ClusterClass template of a RemoteCluster.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "infrastructure-k0smotron"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct RemoteClusterTemplateSpec {
    /// The template.
    pub template: RemoteClusterTemplateResource,
}

/// A Secret reference by name (key `value` holds the private key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
}

/// Provisioning through a Kubernetes Job instead of drover's own SSH client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionJob {
    /// ssh command in the Job's image (for example `tsh ssh`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "ssh"))]
    pub ssh_command: String,
    /// scp command in the Job's image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "scp"))]
    pub scp_command: String,
    /// The Job to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_spec_template: Option<JobTemplateSpec>,
}

/// An existing host that drover provisions over SSH.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "RemoteMachine",
    namespaced,
    status = "RemoteMachineStatus",
    category = "cluster-api",
    doc = "RemoteMachine is an existing host, reached over SSH, that becomes a CAPI Machine.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "infrastructure-k0smotron"),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(
        name = "Provisioned",
        type_ = "boolean",
        json_path = ".status.initialization.provisioned"
    ),
    printcolumn(name = "ProviderID", type_ = "string", json_path = ".spec.providerID"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteMachineSpec {
    /// Claim the host from this PooledRemoteMachine pool.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// `remote-machine://<address>:<port>`, set once provisioned.
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub provider_id: String,
    /// Host address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// SSH port.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 22))]
    pub port: i32,
    /// SSH user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "root"))]
    pub user: String,
    /// Run commands and write files through sudo.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_sudo: bool,
    /// Run all commands as one uploaded script.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub commands_as_script: bool,
    /// Where the script is uploaded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "/etc/k0smotron"))]
    pub working_dir: String,
    /// Secret holding the SSH private key (key `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_ref: Option<SecretRef>,
    /// Commands run on deletion instead of the default k0s cleanup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clean_up_commands: Vec<String>,
    /// Provision through a Kubernetes Job instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_job: Option<ProvisionJob>,
}

/// Observed state of a RemoteMachine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteMachineStatus {
    /// Initialization progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<RemoteMachineInitialization>,
    /// One `ExternalIP` address: `spec.address`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<MachineAddress>,
    /// Conditions: `BootstrapExecSucceeded`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// v1beta1 failure fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<RemoteMachineStatusDeprecated>,
}

/// `status.initialization` of a RemoteMachine (k0smotron gives it no minProperties).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteMachineInitialization {
    /// Provisioned (v1beta2 contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<bool>,
}

/// `status.deprecated` of a RemoteMachine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteMachineStatusDeprecated {
    /// v1beta1 fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta1: Option<RemoteMachineStatusV1beta1>,
}

/// v1beta1 failure fields of a RemoteMachine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteMachineStatusV1beta1 {
    /// Failure reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_reason: String,
    /// Failure message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_message: String,
}

/// `spec.template.spec` of a RemoteMachineTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteMachineTemplateResourceSpec {
    /// The pool machines are claimed from.
    pub pool: String,
    /// Provision through a Kubernetes Job instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_job: Option<ProvisionJob>,
}

/// `spec.template` of a RemoteMachineTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoteMachineTemplateResource {
    /// Metadata of the cloned object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateObjectMeta>,
    /// The spec to clone.
    #[serde(default, skip_serializing_if = "super::common::is_default")]
    pub spec: RemoteMachineTemplateResourceSpec,
}

/// A template MachineDeployments and K0sControlPlanes clone RemoteMachines from.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "RemoteMachineTemplate",
    namespaced,
    category = "cluster-api",
    doc = "RemoteMachineTemplate is the template RemoteMachines are cloned from; they claim hosts from a pool.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "infrastructure-k0smotron"),
    printcolumn(
        name = "Pool",
        type_ = "string",
        json_path = ".spec.template.spec.pool"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct RemoteMachineTemplateSpec {
    /// The template.
    pub template: RemoteMachineTemplateResource,
}

/// The connection details of a pooled host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PooledMachineSpec {
    /// Host address.
    pub address: String,
    /// SSH port.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 22))]
    pub port: i32,
    /// SSH user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "root"))]
    pub user: String,
    /// Run commands and write files through sudo.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_sudo: bool,
    /// Run all commands as one uploaded script.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub commands_as_script: bool,
    /// Where the script is uploaded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "/etc/k0smotron"))]
    pub working_dir: String,
    /// Commands run on deletion instead of the default k0s cleanup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clean_up_commands: Vec<String>,
    /// Secret holding the SSH private key.
    pub ssh_key_ref: SecretRef,
}

/// An entry of a pool of hosts that RemoteMachines claim.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "PooledRemoteMachine",
    namespaced,
    status = "PooledRemoteMachineStatus",
    category = "cluster-api",
    doc = "PooledRemoteMachine is a host in a pool that RemoteMachines claim.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "infrastructure-k0smotron"),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".spec.machine.address",
        description = "IP address or DNS name of the remote machine"
    ),
    printcolumn(
        name = "Reserved",
        type_ = "string",
        json_path = ".status.reserved",
        description = "Indicates if the machine is reserved"
    ),
    printcolumn(
        name = "Remote Machine",
        type_ = "string",
        json_path = ".status.machineRef.name",
        description = "Reference to the RemoteMachine"
    )
)]
pub struct PooledRemoteMachineSpec {
    /// Pool name.
    pub pool: String,
    /// Connection details.
    pub machine: PooledMachineSpec,
}

/// Observed state of a pool entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PooledRemoteMachineStatus {
    /// Claimed by a RemoteMachine.
    pub reserved: bool,
    /// The RemoteMachine that claimed it.
    pub machine_ref: NamespacedName,
}
