//! Label, annotation and finalizer names that drover shares with CAPI and
//! k0smotron. One place, so every provider spells them the same way.

/// Label on every object that belongs to a CAPI cluster.
pub const CLUSTER_NAME: &str = "cluster.x-k8s.io/cluster-name";
/// Label on control-plane Machines and hosted control-plane pods.
pub const CONTROL_PLANE: &str = "cluster.x-k8s.io/control-plane";
/// Label naming the control-plane object that owns a Machine.
pub const CONTROL_PLANE_NAME: &str = "cluster.x-k8s.io/control-plane-name";
/// Label set by CAPI on Machines of a MachineSet.
pub const MACHINE_SET_NAME: &str = "cluster.x-k8s.io/set-name";
/// Label set by CAPI on Machines of a MachineDeployment.
pub const MACHINE_DEPLOYMENT_NAME: &str = "cluster.x-k8s.io/deployment-name";
/// Label selecting which objects one provider instance watches (`--watch-filter`).
pub const WATCH_FILTER: &str = "cluster.x-k8s.io/watch-filter";
/// Label on CAPI provider CRDs and components naming the provider.
pub const PROVIDER: &str = "cluster.x-k8s.io/provider";
/// CRD label announcing the v1beta2 contract.
pub const CONTRACT_V1BETA2: &str = "cluster.x-k8s.io/v1beta2";
/// Annotation that pauses reconciliation of one object (any value).
pub const PAUSED: &str = "cluster.x-k8s.io/paused";
/// Annotation marking an infrastructure object as managed by someone else.
pub const MANAGED_BY: &str = "cluster.x-k8s.io/managed-by";
/// Annotation CAPI puts on objects cloned from a template: the template's name.
pub const CLONED_FROM_NAME: &str = "cluster.x-k8s.io/cloned-from-name";
/// Annotation CAPI puts on objects cloned from a template: its group and kind.
pub const CLONED_FROM_GROUPKIND: &str = "cluster.x-k8s.io/cloned-from-groupkind";
/// Label k0s puts on nodes, naming their Machine.
pub const K0SMOTRON_MACHINE_NAME: &str = "k0smotron.io/machine-name";
/// Label on control-plane Machines whose controller also runs a worker.
pub const K0SMOTRON_CONTROL_PLANE_WORKER_ENABLED: &str =
    "k0smotron.io/control-plane-worker-enabled";
/// `app.kubernetes.io/component`, used on every generated object.
pub const COMPONENT: &str = "app.kubernetes.io/component";

/// Secret type CAPI uses for generated secrets.
pub const CAPI_SECRET_TYPE: &str = "cluster.x-k8s.io/secret";

/// Finalizer of K0sControlPlane.
pub const FINALIZER_K0S_CONTROL_PLANE: &str = "k0s.controlplane.cluster.x-k8s.io";
/// Finalizer of K0smotronControlPlane.
pub const FINALIZER_K0SMOTRON_CONTROL_PLANE: &str = "k0smotron.controlplane.cluster.x-k8s.io";
/// Finalizer of the k0smotron.io Cluster.
pub const FINALIZER_K0SMOTRON_CLUSTER: &str = "k0smotron.io/finalizer";
/// Finalizer of JoinTokenRequest.
pub const FINALIZER_JOIN_TOKEN_REQUEST: &str = "jointokenrequests.k0smotron.io/finalizer";
/// Finalizer of RemoteMachine.
pub const FINALIZER_REMOTE_MACHINE: &str = "remotemachine.k0smotron.io/finalizer";
