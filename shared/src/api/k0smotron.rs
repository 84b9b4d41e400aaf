//! `k0smotron.io/v1beta2`: the standalone API. `Cluster` (a hosted k0s control
//! plane running as pods) and `JoinTokenRequest`. [`ClusterSpec`] is also the
//! spec of `K0smotronControlPlane`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, ResourceRequirements,
    TopologySpreadConstraint, Volume,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, SecretMetadata, is_default, is_false, is_zero_i32, is_zero_i64};

/// The group of the standalone kinds.
pub const GROUP: &str = "k0smotron.io";
/// Default k0s image repository of a hosted control plane.
pub const DEFAULT_IMAGE: &str = "quay.io/k0sproject/k0s";
/// Default etcd image.
pub const DEFAULT_ETCD_IMAGE: &str = "quay.io/k0sproject/etcd:v3.7.1";
/// Default k0s version of a hosted control plane (webhook default in k0smotron).
pub const DEFAULT_VERSION: &str = "v1.27.9-k0s.0";

/// A hosted k0s control plane: what k0smotron deploys into the (hosting) cluster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "k0smotron.io",
    version = "v1beta2",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "kmc",
    doc = "Cluster is a k0s control plane hosted in pods.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Available')].status"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Deploy the control-plane pods into another ("hosting") cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host_cluster: Option<RemoteHostClusterSpec>,
    /// Number of k0s controller pods (more than one needs kine or etcd).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 1))]
    pub replicas: i32,
    /// k0s image repository, without tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "quay.io/k0sproject/k0s"))]
    pub image: String,
    /// ServiceAccount of the k0s and etcd pods.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    /// k0s version (the image tag).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The control plane's external address; detected for NodePort and LoadBalancer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_address: String,
    /// Expose API and konnectivity through an Ingress (TLS passthrough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// The Service exposing the control plane.
    #[serde(default)]
    #[schemars(extend("default" = {"type": "ClusterIP", "apiPort": 30443, "konnectivityPort": 30132}))]
    pub service: ServiceSpec,
    /// The `/var/lib/k0s` volume.
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistence: PersistenceSpec,
    /// The control plane's datastore.
    #[serde(default, skip_serializing_if = "is_default")]
    pub storage: StorageSpec,
    /// Bring-your-own certificates; filled in by the controller when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<CertificateRef>,
    /// The k0s `ClusterConfig`, free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema_helpers::preserve_unknown_object")]
    pub k0s_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Volumes mounted at `/var/lib/k0s/manifests/<name>` (k0s manifest deployer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Volume>,
    /// Extra volumes mounted into the controller pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Extra `k0s controller` flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane_flags: Vec<String>,
    /// Prometheus sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
    /// Applied to the k0s and etcd pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Resources of the k0s container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Metadata propagated to generated objects and the kubeconfig Secret.
    #[serde(default, skip_serializing_if = "SecretMetadata::is_empty")]
    pub kubeconfig_secret_metadata: SecretMetadata,
    /// Patches applied to generated objects before they are applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<ComponentPatch>,
}

/// `spec.remoteHostCluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteHostClusterSpec {
    /// The Secret holding the hosting cluster's kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_ref: Option<KubeconfigRef>,
}

/// A key of a Secret that holds a kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KubeconfigRef {
    /// Secret name.
    pub name: String,
    /// Secret namespace.
    pub namespace: String,
    /// Key in the Secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "value"))]
    pub key: String,
}

/// `spec.ingress`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Create the Ingress object (defaults to true in the webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<bool>,
    /// Ingress port.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    #[schemars(extend("default" = 443))]
    pub port: i64,
    /// Host name of the API server.
    #[serde(rename = "apiHost")]
    pub api_host: String,
    /// Host name of konnectivity.
    pub konnectivity_host: String,
    /// IngressClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Ingress annotations (TLS passthrough needs some).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Service types a hosted control plane can be exposed with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// In-cluster only.
    #[default]
    ClusterIP,
    /// Node ports.
    NodePort,
    /// A load balancer.
    LoadBalancer,
}

/// `spec.service`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[schemars(extend("default" = "ClusterIP"))]
    pub r#type: ServiceType,
    /// API server port (also the node port for NodePort).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 30443))]
    pub api_port: i32,
    /// konnectivity port (also the node port for NodePort).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    #[schemars(extend("default" = 30132))]
    pub konnectivity_port: i32,
}

/// `spec.persistence`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// `emptyDir`, `hostPath` or `pvc`.
    #[schemars(extend("default" = "emptyDir"))]
    pub r#type: String,
    /// The claim template, for `pvc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimTemplate>,
    /// Delete the PVCs with the StatefulSet.
    #[serde(rename = "autoDeletePVCs", default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub auto_delete_pvcs: bool,
    /// Host path, for `hostPath`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_path: String,
}

/// A PersistentVolumeClaim as k0smotron embeds it: a metadata subset, spec and status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimTemplate {
    /// API version (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, labels, annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<super::common::TemplateObjectMeta>,
    /// The claim spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PersistentVolumeClaimSpec>,
    /// Ignored; present because k0smotron's schema has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PersistentVolumeClaimStatus>,
}

/// Datastore kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// A managed etcd StatefulSet.
    #[default]
    Etcd,
    /// kine with an external SQL datastore.
    Kine,
    /// kine with embedded NATS (experimental).
    Nats,
}

/// `spec.storage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Datastore type.
    #[serde(default)]
    #[schemars(extend("default" = "etcd"))]
    pub r#type: StorageType,
    /// kine settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kine: Option<KineSpec>,
    /// etcd settings.
    #[serde(default)]
    #[schemars(extend("default" = {"image": "quay.io/k0sproject/etcd:v3.7.1", "persistence": {}}))]
    pub etcd: EtcdSpec,
    /// NATS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSpec>,
}

/// `spec.storage.kine`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KineSpec {
    /// The kine data source URL.
    #[serde(
        rename = "dataSourceURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub data_source_url: String,
    /// A Secret with key `K0SMOTRON_KINE_DATASOURCE_URL` holding the URL.
    #[serde(
        rename = "dataSourceSecretName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub data_source_secret_name: String,
}

/// `spec.storage.etcd`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// etcd image.
    #[schemars(required, extend("default" = "quay.io/k0sproject/etcd:v3.7.1"))]
    #[serde(default)]
    pub image: String,
    /// Extra etcd arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// etcd volume size and class.
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistence: StoragePersistenceSpec,
    /// Delete etcd PVCs with the StatefulSet.
    #[serde(rename = "autoDeletePVCs", default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub auto_delete_pvcs: bool,
    /// Periodic defragmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defrag_job: Option<DefragJob>,
    /// etcd container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// `spec.storage.etcd.defragJob`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DefragJob {
    /// Create the CronJob.
    #[serde(default)]
    #[schemars(required, extend("default" = false))]
    pub enabled: bool,
    /// Cron schedule.
    #[serde(default)]
    #[schemars(required, extend("default" = "0 12 * * *"))]
    pub schedule: String,
    /// etcd-defrag rule.
    #[serde(default)]
    #[schemars(required, extend("default" = "dbQuotaUsage > 0.8 || dbSize - dbSizeInUse > 200*1024*1024"))]
    pub rule: String,
    /// etcd-defrag image.
    #[serde(default)]
    #[schemars(required, extend("default" = "ghcr.io/ahrtr/etcd-defrag:v0.16.0"))]
    pub image: String,
}

/// Size and class of a datastore volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoragePersistenceSpec {
    /// StorageClass name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_class: String,
    /// Volume size (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema_helpers::quantity", extend("default" = "1Gi"))]
    pub size: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

/// `spec.storage.nats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NatsSpec {
    /// NATS volume size and class.
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistence: StoragePersistenceSpec,
}

/// Purposes of bring-your-own certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateType {
    /// Cluster CA.
    Ca,
    /// Service-account key pair.
    Sa,
    /// Front-proxy CA.
    Proxy,
    /// etcd CA.
    Etcd,
    /// API server's etcd client certificate.
    ApiserverEtcdClient,
    /// etcd peer certificate.
    EtcdPeer,
    /// etcd server certificate.
    EtcdServer,
}

/// `spec.certificateRefs[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateRef {
    /// Purpose.
    pub r#type: CertificateType,
    /// Secret name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `spec.mounts[]`: a path plus any inline volume source (the fields of a
/// `corev1.Volume` other than `name`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Mount path in the controller container.
    pub path: String,
    /// Mount read-only (forced for ConfigMaps and Secrets).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// The volume source, inline: for example `{"secret": {"secretName": "x"}}`.
    #[serde(flatten)]
    pub volume_source: serde_json::Map<String, serde_json::Value>,
}

impl Mount {
    /// The mount as a pod `Volume` named `name`.
    pub fn to_volume(&self, name: &str) -> Result<Volume, serde_json::Error> {
        let mut v = self.volume_source.clone();
        v.insert("name".into(), serde_json::Value::String(name.to_owned()));
        serde_json::from_value(serde_json::Value::Object(v))
    }
}

impl JsonSchema for Mount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mount".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Volume's schema minus `name`, plus `path` and `readOnly`.
        let mut schema = generator.root_schema_for::<Volume>();
        let obj = schema.ensure_object();
        obj.remove("$schema");
        obj.remove("title");
        if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
            props.remove("name");
            props.insert("path".into(), serde_json::json!({"type": "string", "description": "Mount path in the controller container."}));
            props.insert(
                "readOnly".into(),
                serde_json::json!({"type": "boolean", "description": "Mount read-only."}),
            );
        }
        obj.insert("required".into(), serde_json::json!(["path"]));
        schema
    }
}

/// `spec.monitoring`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Deploy the sidecars.
    pub enabled: bool,
    /// Prometheus image.
    #[serde(default)]
    #[schemars(required, extend("default" = "quay.io/k0sproject/prometheus:v2.44.0"))]
    pub prometheus_image: String,
    /// nginx proxy image.
    #[serde(default)]
    #[schemars(required, extend("default" = "nginx:1.19.10"))]
    pub proxy_image: String,
}

/// `spec.patches[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentPatch {
    /// Which generated objects.
    pub target: PatchTarget,
    /// The patch.
    pub patch: PatchSpec,
}

/// Generated objects a patch applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PatchTarget {
    /// Kind, for example `StatefulSet`.
    pub kind: String,
    /// Value of `app.kubernetes.io/component`.
    pub component: String,
}

/// Patch types for `spec.patches`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    /// RFC 6902 JSON patch.
    Json,
    /// Strategic merge patch.
    Strategic,
    /// RFC 7386 merge patch.
    Merge,
}

/// A patch body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PatchSpec {
    /// Patch type.
    pub r#type: PatchType,
    /// Patch document.
    pub content: String,
}

/// Observed state of a hosted control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// StatefulSet replicas.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub replicas: i32,
    /// Ready replicas.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub ready_replicas: i32,
    /// Updated replicas.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub updated_replicas: i32,
    /// Label selector of the controller pods (scale subresource).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Conditions: `Available` and its parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// v1beta1 fields kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<ClusterStatusDeprecated>,
}

/// `status.deprecated` of a hosted control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterStatusDeprecated {
    /// v1beta1 fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta1: Option<ClusterStatusV1beta1>,
}

/// v1beta1 status fields of a hosted control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatusV1beta1 {
    /// Last reconcile outcome, as text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reconciliation_status: String,
    /// readyReplicas == spec.replicas.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ready: bool,
}

/// Role of a join token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JoinTokenRole {
    /// A worker token.
    #[default]
    Worker,
    /// A controller token.
    Controller,
}

/// Asks for a k0s join token of a hosted control plane.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "k0smotron.io",
    version = "v1beta2",
    kind = "JoinTokenRequest",
    namespaced,
    status = "JoinTokenRequestStatus",
    shortname = "jtr",
    doc = "JoinTokenRequest asks for a k0s join token of a hosted control plane.",
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterName"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Token ID", type_ = "string", json_path = ".status.tokenID"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRequestSpec {
    /// The k0smotron.io Cluster, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub cluster_name: String,
    /// Token lifetime as a Go duration; `0s` means no expiry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = "0s"))]
    pub expiry: String,
    /// Worker or controller.
    #[serde(default)]
    #[schemars(extend("default" = "worker"))]
    pub role: JoinTokenRole,
}

/// Observed state of a JoinTokenRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRequestStatus {
    /// Id of the minted token.
    #[serde(rename = "tokenID", default, skip_serializing_if = "String::is_empty")]
    pub token_id: String,
    /// Conditions: `JoinTokenSecretCreated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// v1beta1 fields kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<JoinTokenRequestStatusDeprecated>,
}

/// `status.deprecated` of a JoinTokenRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinTokenRequestStatusDeprecated {
    /// v1beta1 fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta1: Option<JoinTokenRequestStatusV1beta1>,
}

/// v1beta1 status fields of a JoinTokenRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRequestStatusV1beta1 {
    /// Last reconcile outcome, as text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reconciliation_status: String,
    /// UID of the Cluster.
    #[serde(
        rename = "clusterUID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_uid: String,
}
