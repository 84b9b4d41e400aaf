//! `bootstrap.cluster.x-k8s.io/v1beta2`: K0sWorkerConfig, K0sWorkerConfigTemplate
//! and K0sControllerConfig, the CAPI bootstrap-provider kinds.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, SecretMetadata, TemplateObjectMeta, is_default, is_false, is_zero_i32,
};

/// The group of the bootstrap kinds.
pub const GROUP: &str = "bootstrap.cluster.x-k8s.io";

/// Output format of the bootstrap data (`spec.provisioner.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProvisionerType {
    /// cloud-init `#cloud-config`.
    #[default]
    #[serde(rename = "cloud-config")]
    CloudConfig,
    /// Ignition JSON, built from a Butane document.
    #[serde(rename = "ignition")]
    Ignition,
    /// A PowerShell script (Windows).
    #[serde(rename = "powershell")]
    Powershell,
    /// A PowerShell script wrapped in `<powershell>` tags (EC2 user data).
    #[serde(rename = "powershell-xml")]
    PowershellXml,
}

impl ProvisionerType {
    /// The value written to the bootstrap Secret's `format` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudConfig => "cloud-config",
            Self::Ignition => "ignition",
            Self::Powershell => "powershell",
            Self::PowershellXml => "powershell-xml",
        }
    }
}

/// Target operating system (`spec.provisioner.platform`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Linux.
    #[default]
    Linux,
    /// Windows (workers only, k0s >= v1.34.2).
    Windows,
}

/// Butane variant for the ignition provisioner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IgnitionVariant {
    /// Fedora CoreOS.
    Fcos,
    /// Flatcar.
    Flatcar,
    /// OpenShift.
    Openshift,
    /// RHEL for Edge.
    R4e,
    /// Fedora IoT.
    Fiot,
}

/// Ignition parameters (`spec.provisioner.ignition`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnitionSpec {
    /// Distribution variant of the generated Butane config.
    pub variant: IgnitionVariant,
    /// Butane spec version, for example `1.5.0`.
    pub version: String,
    /// Extra Butane YAML merged into the generated config.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub additional_config: String,
}

/// A key of a Secret or ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContentSourceRef {
    /// Name of the Secret or ConfigMap.
    pub name: String,
    /// Key inside it.
    pub key: String,
}

/// Where file content or custom user data comes from: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentSource {
    /// A Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ContentSourceRef>,
    /// A ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ContentSourceRef>,
}

/// Output format and its options (`spec.provisioner`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerSpec {
    /// Output format.
    #[serde(default)]
    #[schemars(extend("default" = "cloud-config"))]
    pub r#type: ProvisionerType,
    /// Target platform.
    #[serde(default)]
    #[schemars(extend("default" = "linux"))]
    pub platform: Platform,
    /// Butane parameters, for `type: ignition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignition: Option<IgnitionSpec>,
    /// User data appended to the generated data (cloud-config and powershell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_user_data_ref: Option<ContentSource>,
}

/// An extra file written on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    /// Absolute path on the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Inline content; exclusive with `contentFrom`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Octal permissions as a string, for example `0644`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permissions: String,
    /// Content read from a Secret or ConfigMap in the cluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_from: Option<ContentSource>,
}

/// The k0s worker bootstrap configuration (`K0sWorkerConfig.spec`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bootstrap.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0sWorkerConfig",
    namespaced,
    status = "K0sWorkerConfigStatus",
    category = "cluster-api",
    doc = "K0sWorkerConfig is the bootstrap configuration of a k0s worker Machine.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "bootstrap-k0smotron"),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.dataSecretName"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct K0sWorkerConfigSpec {
    /// Output format; cloud-config by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub provisioner: ProvisionerSpec,
    /// Directory of the k0s binary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "/usr/local/bin"))]
    pub k0s_install_dir: String,
    /// k0s version; falls back to the owner Machine's version, then to latest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Use the system hostname instead of the Machine name as node name.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub use_system_hostname: bool,
    /// Extra files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Extra `k0s install worker` arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Commands run before the k0s download.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_k0s_commands: Vec<String>,
    /// Commands run after k0s started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_k0s_commands: Vec<String>,
    /// Skip the k0s download.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pre_installed_k0s: bool,
    /// Custom k0s download URL: http, https or oci.
    #[serde(
        rename = "downloadURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub download_url: String,
    /// Metadata copied onto the bootstrap data Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_metadata: Option<SecretMetadata>,
    /// Where `k0s.yaml` and `k0s.token` are written (default `/etc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
}

/// `status.initialization` of a bootstrap config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInitialization {
    /// True once the bootstrap data Secret exists (v1beta2 contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_secret_created: Option<bool>,
}

/// Observed state of a bootstrap config (both kinds share it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapConfigStatus {
    /// Name of the bootstrap data Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_secret_name: Option<String>,
    /// Initialization progress.
    #[serde(default, skip_serializing_if = "is_default_init")]
    pub initialization: BootstrapInitialization,
    /// v1beta1 contract field for older CAPI cores; drover keeps it equal to
    /// `initialization.dataSecretCreated`. k0smotron's v1beta2 schema lacks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Conditions: `Ready`, `DataSecretAvailable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn is_default_init(i: &BootstrapInitialization) -> bool {
    i.data_secret_created.is_none()
}

/// Observed state of a K0sWorkerConfig.
pub type K0sWorkerConfigStatus = BootstrapConfigStatus;
/// Observed state of a K0sControllerConfig.
pub type K0sControllerConfigStatus = BootstrapConfigStatus;

/// `spec.template` of a K0sWorkerConfigTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct K0sWorkerConfigTemplateResource {
    /// Metadata given to configs cloned from the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateObjectMeta>,
    /// The config spec to clone.
    #[serde(default, skip_serializing_if = "is_default")]
    pub spec: K0sWorkerConfigSpec,
}

/// A template MachineDeployments and ClusterClasses clone K0sWorkerConfigs from.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bootstrap.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0sWorkerConfigTemplate",
    namespaced,
    category = "cluster-api",
    doc = "K0sWorkerConfigTemplate is the template MachineDeployments clone K0sWorkerConfigs from.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "bootstrap-k0smotron"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct K0sWorkerConfigTemplateSpec {
    /// The template.
    #[serde(default, skip_serializing_if = "is_default")]
    pub template: K0sWorkerConfigTemplateResource,
}

/// Tunneling mode for control planes the management cluster cannot reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TunnelingMode {
    /// A tunneled kubeconfig (`server: https://<serverAddress>:<tunnelingNodePort>`).
    #[default]
    Tunnel,
    /// A proxied kubeconfig (`proxy-url`).
    Proxy,
}

/// FRP tunneling for control planes behind NAT (`k0sConfigSpec.tunneling`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelingSpec {
    /// Deploy the tunnel.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub enabled: bool,
    /// Address of the tunneling server; detected when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_address: String,
    /// NodePort of the FRP server.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 31700))]
    pub server_node_port: i32,
    /// NodePort of the tunnel.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 31443))]
    pub tunneling_node_port: i32,
    /// Tunnel or proxy.
    #[serde(default)]
    #[schemars(extend("default" = "tunnel"))]
    pub mode: TunnelingMode,
}

/// The controller bootstrap configuration shared by K0sControllerConfig and
/// K0sControlPlane (`K0sConfigSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct K0sConfigSpec {
    /// Output format; cloud-config by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub provisioner: ProvisionerSpec,
    /// Directory of the k0s binary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "/usr/local/bin"))]
    pub k0s_install_dir: String,
    /// The k0s `ClusterConfig`, free-form; some fields are set by drover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema_helpers::preserve_unknown_object")]
    pub k0s: Option<serde_json::Map<String, serde_json::Value>>,
    /// Extra files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Use the system hostname instead of the Machine name as node name.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub use_system_hostname: bool,
    /// Extra `k0s install controller` arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Commands run before the k0s download.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_k0s_commands: Vec<String>,
    /// Commands run after k0s started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_k0s_commands: Vec<String>,
    /// Skip the k0s download.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pre_installed_k0s: bool,
    /// Custom k0s download URL: http, https or oci.
    #[serde(
        rename = "downloadURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub download_url: String,
    /// FRP tunneling.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tunneling: TunnelingSpec,
    /// Metadata for the bootstrap Secret (accepted; k0smotron ignores it for controllers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_metadata: Option<SecretMetadata>,
    /// Where `k0s.yaml` and `k0s.token` are written (default `/etc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
}

impl K0sConfigSpec {
    /// Whether the controller also runs a kubelet. Matches the bootstrap
    /// controller's rule: `--enable-worker`, `--enable-worker=true` or `--single`.
    pub fn worker_enabled(&self) -> bool {
        self.args
            .iter()
            .any(|a| a == "--enable-worker" || a == "--enable-worker=true" || a == "--single")
    }
}

/// The k0s controller bootstrap configuration (`K0sControllerConfig.spec`):
/// a version plus the inlined [`K0sConfigSpec`].
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bootstrap.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "K0sControllerConfig",
    namespaced,
    status = "K0sControllerConfigStatus",
    category = "cluster-api",
    doc = "K0sControllerConfig is the bootstrap configuration of a k0s control-plane Machine.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    label("cluster.x-k8s.io/provider", "bootstrap-k0smotron"),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.dataSecretName"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct K0sControllerConfigSpec {
    /// k0s version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The controller configuration, inlined.
    #[serde(flatten)]
    pub k0s_config_spec: K0sConfigSpec,
}
