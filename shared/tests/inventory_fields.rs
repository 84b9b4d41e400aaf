//! Every v1beta2 field that the k0smotron inventory (§1) lists exists in our
//! generated schema with the same JSON name and type. The lists below are
//! written from that inventory, kind by kind.

use drover_shared::crds;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// Walks `a.b[].c{}` style paths: `[]` enters array items, `{}` map values.
fn lookup<'a>(root: &'a JSONSchemaProps, path: &str) -> Option<&'a JSONSchemaProps> {
    let mut node = root;
    for seg in path.split('.') {
        let (name, suffix) = match seg.find(['[', '{']) {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        node = node.properties.as_ref()?.get(name)?;
        for s in suffix.as_bytes().chunks(2) {
            node = match s {
                b"[]" => match node.items.as_ref()? {
                    JSONSchemaPropsOrArray::Schema(s) => s,
                    JSONSchemaPropsOrArray::Schemas(_) => return None,
                },
                b"{}" => match node.additional_properties.as_ref()? {
                    JSONSchemaPropsOrBool::Schema(s) => s,
                    JSONSchemaPropsOrBool::Bool(_) => return None,
                },
                _ => return None,
            };
        }
    }
    Some(node)
}

const WORKER_SPEC: &[(&str, &str)] = &[
    ("spec.provisioner.type", "string"),
    ("spec.provisioner.platform", "string"),
    ("spec.provisioner.ignition.variant", "string"),
    ("spec.provisioner.ignition.version", "string"),
    ("spec.provisioner.ignition.additionalConfig", "string"),
    (
        "spec.provisioner.customUserDataRef.secretRef.name",
        "string",
    ),
    (
        "spec.provisioner.customUserDataRef.configMapRef.key",
        "string",
    ),
    ("spec.k0sInstallDir", "string"),
    ("spec.version", "string"),
    ("spec.useSystemHostname", "boolean"),
    ("spec.files[].path", "string"),
    ("spec.files[].content", "string"),
    ("spec.files[].permissions", "string"),
    ("spec.files[].contentFrom.secretRef.key", "string"),
    ("spec.files[].contentFrom.configMapRef.name", "string"),
    ("spec.args[]", "string"),
    ("spec.preK0sCommands[]", "string"),
    ("spec.postK0sCommands[]", "string"),
    ("spec.preInstalledK0s", "boolean"),
    ("spec.downloadURL", "string"),
    ("spec.secretMetadata.labels{}", "string"),
    ("spec.secretMetadata.annotations{}", "string"),
    ("spec.workingDir", "string"),
];

/// Status of both bootstrap config kinds.
const BOOTSTRAP_STATUS: &[(&str, &str)] = &[
    ("status.dataSecretName", "string"),
    ("status.initialization.dataSecretCreated", "boolean"),
    ("status.conditions[].type", "string"),
    ("status.conditions[].reason", "string"),
];

const K0S_CONFIG_SPEC: &[(&str, &str)] = &[
    ("provisioner.type", "string"),
    ("k0sInstallDir", "string"),
    ("k0s", "object"),
    ("files[].contentFrom.secretRef.name", "string"),
    ("useSystemHostname", "boolean"),
    ("args[]", "string"),
    ("preK0sCommands[]", "string"),
    ("postK0sCommands[]", "string"),
    ("preInstalledK0s", "boolean"),
    ("downloadURL", "string"),
    ("tunneling.enabled", "boolean"),
    ("tunneling.serverAddress", "string"),
    ("tunneling.serverNodePort", "integer"),
    ("tunneling.tunnelingNodePort", "integer"),
    ("tunneling.mode", "string"),
    ("secretMetadata.labels{}", "string"),
    ("workingDir", "string"),
];

const CONTROL_PLANE_STATUS: &[(&str, &str)] = &[
    ("status.initialization.controlPlaneInitialized", "boolean"),
    ("status.externalManagedControlPlane", "boolean"),
    ("status.replicas", "integer"),
    ("status.version", "string"),
    ("status.selector", "string"),
    ("status.readyReplicas", "integer"),
    ("status.availableReplicas", "integer"),
    ("status.upToDateReplicas", "integer"),
    ("status.conditions[].status", "string"),
];

const KCP: &[(&str, &str)] = &[
    ("spec.machineTemplate.metadata.labels{}", "string"),
    ("spec.machineTemplate.metadata.annotations{}", "string"),
    (
        "spec.machineTemplate.infrastructureRef.apiVersion",
        "string",
    ),
    ("spec.machineTemplate.infrastructureRef.kind", "string"),
    ("spec.machineTemplate.infrastructureRef.name", "string"),
    ("spec.replicas", "integer"),
    ("spec.updateStrategy", "string"),
    ("spec.version", "string"),
    ("spec.kubeconfigSecretMetadata.labels{}", "string"),
];

const KCP_TEMPLATE: &[(&str, &str)] = &[
    ("spec.template.metadata.labels{}", "string"),
    ("spec.template.spec.k0sConfigSpec.args[]", "string"),
    (
        "spec.template.spec.machineTemplate.metadata.labels{}",
        "string",
    ),
    (
        "spec.template.spec.machineTemplate.nodeDrainTimeout",
        "string",
    ),
    (
        "spec.template.spec.machineTemplate.nodeVolumeDetachTimeout",
        "string",
    ),
    (
        "spec.template.spec.machineTemplate.nodeDeletionTimeout",
        "string",
    ),
    ("spec.template.spec.version", "string"),
    ("spec.template.spec.updateStrategy", "string"),
];

/// `ClusterSpec`, shared by k0smotron.io Cluster and K0smotronControlPlane.
const CLUSTER_SPEC: &[(&str, &str)] = &[
    ("remoteHostCluster.kubeconfigRef.name", "string"),
    ("remoteHostCluster.kubeconfigRef.namespace", "string"),
    ("remoteHostCluster.kubeconfigRef.key", "string"),
    ("replicas", "integer"),
    ("image", "string"),
    ("serviceAccount", "string"),
    ("version", "string"),
    ("externalAddress", "string"),
    ("ingress.deploy", "boolean"),
    ("ingress.port", "integer"),
    ("ingress.apiHost", "string"),
    ("ingress.konnectivityHost", "string"),
    ("ingress.className", "string"),
    ("ingress.annotations{}", "string"),
    ("service.type", "string"),
    ("service.apiPort", "integer"),
    ("service.konnectivityPort", "integer"),
    ("persistence.type", "string"),
    ("persistence.persistentVolumeClaim.metadata.name", "string"),
    (
        "persistence.persistentVolumeClaim.spec.accessModes[]",
        "string",
    ),
    ("persistence.autoDeletePVCs", "boolean"),
    ("persistence.hostPath", "string"),
    ("storage.type", "string"),
    ("storage.kine.dataSourceURL", "string"),
    ("storage.kine.dataSourceSecretName", "string"),
    ("storage.etcd.image", "string"),
    ("storage.etcd.args[]", "string"),
    ("storage.etcd.persistence.storageClass", "string"),
    ("storage.etcd.persistence.size", ""),
    ("storage.etcd.autoDeletePVCs", "boolean"),
    ("storage.etcd.defragJob.enabled", "boolean"),
    ("storage.etcd.defragJob.schedule", "string"),
    ("storage.etcd.defragJob.rule", "string"),
    ("storage.etcd.defragJob.image", "string"),
    ("storage.etcd.resources.limits{}", ""),
    ("storage.nats.persistence.storageClass", "string"),
    ("k0sConfig", "object"),
    ("certificateRefs[].type", "string"),
    ("certificateRefs[].name", "string"),
    ("manifests[].name", "string"),
    ("manifests[].configMap.name", "string"),
    ("mounts[].path", "string"),
    ("mounts[].readOnly", "boolean"),
    ("mounts[].secret.secretName", "string"),
    ("controlPlaneFlags[]", "string"),
    ("monitoring.enabled", "boolean"),
    ("monitoring.prometheusImage", "string"),
    ("monitoring.proxyImage", "string"),
    ("topologySpreadConstraints[].topologyKey", "string"),
    ("resources.requests{}", ""),
    ("kubeconfigSecretMetadata.annotations{}", "string"),
    ("patches[].target.kind", "string"),
    ("patches[].target.component", "string"),
    ("patches[].patch.type", "string"),
    ("patches[].patch.content", "string"),
];

const KMC_STATUS: &[(&str, &str)] = &[
    ("status.replicas", "integer"),
    ("status.readyReplicas", "integer"),
    ("status.updatedReplicas", "integer"),
    ("status.selector", "string"),
    ("status.conditions[].message", "string"),
    ("status.deprecated.v1beta1.reconciliationStatus", "string"),
    ("status.deprecated.v1beta1.ready", "boolean"),
];

const JTR: &[(&str, &str)] = &[
    ("spec.clusterName", "string"),
    ("spec.expiry", "string"),
    ("spec.role", "string"),
    ("status.tokenID", "string"),
    ("status.conditions[].type", "string"),
    ("status.deprecated.v1beta1.reconciliationStatus", "string"),
    ("status.deprecated.v1beta1.clusterUID", "string"),
];

const REMOTE_CLUSTER: &[(&str, &str)] = &[
    ("spec.controlPlaneEndpoint.host", "string"),
    ("spec.controlPlaneEndpoint.port", "integer"),
    ("status.initialization.provisioned", "boolean"),
    ("status.conditions[].type", "string"),
];

const REMOTE_MACHINE: &[(&str, &str)] = &[
    ("spec.pool", "string"),
    ("spec.providerID", "string"),
    ("spec.address", "string"),
    ("spec.port", "integer"),
    ("spec.user", "string"),
    ("spec.useSudo", "boolean"),
    ("spec.commandsAsScript", "boolean"),
    ("spec.workingDir", "string"),
    ("spec.sshKeyRef.name", "string"),
    ("spec.cleanUpCommands[]", "string"),
    ("spec.provisionJob.sshCommand", "string"),
    ("spec.provisionJob.scpCommand", "string"),
    (
        "spec.provisionJob.jobSpecTemplate.spec.template.spec.containers[].image",
        "string",
    ),
    ("status.initialization.provisioned", "boolean"),
    ("status.addresses[].type", "string"),
    ("status.addresses[].address", "string"),
    ("status.conditions[].type", "string"),
    ("status.deprecated.v1beta1.failureReason", "string"),
    ("status.deprecated.v1beta1.failureMessage", "string"),
];

const POOLED: &[(&str, &str)] = &[
    ("spec.pool", "string"),
    ("spec.machine.address", "string"),
    ("spec.machine.port", "integer"),
    ("spec.machine.user", "string"),
    ("spec.machine.useSudo", "boolean"),
    ("spec.machine.commandsAsScript", "boolean"),
    ("spec.machine.workingDir", "string"),
    ("spec.machine.cleanUpCommands[]", "string"),
    ("spec.machine.sshKeyRef.name", "string"),
    ("status.reserved", "boolean"),
    ("status.machineRef.name", "string"),
    ("status.machineRef.namespace", "string"),
];

const REMOTE_MACHINE_TEMPLATE: &[(&str, &str)] = &[
    ("spec.template.metadata.labels{}", "string"),
    ("spec.template.spec.pool", "string"),
    ("spec.template.spec.provisionJob.sshCommand", "string"),
];

fn prefixed(prefix: &str, fields: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    fields
        .iter()
        .map(|(p, t)| (format!("{prefix}{p}"), *t))
        .collect()
}

fn expected() -> Vec<(&'static str, Vec<(String, &'static str)>)> {
    let plain = |f: &[(&str, &'static str)]| prefixed("", f);
    let mut worker_template = prefixed("spec.template.", WORKER_SPEC);
    worker_template.push(("spec.template.metadata.labels{}".into(), "string"));
    vec![
        (
            "K0sWorkerConfig",
            [plain(WORKER_SPEC), plain(BOOTSTRAP_STATUS)].concat(),
        ),
        ("K0sWorkerConfigTemplate", worker_template),
        (
            "K0sControllerConfig",
            [
                plain(&[("spec.version", "string")]),
                prefixed("spec.", K0S_CONFIG_SPEC),
                plain(BOOTSTRAP_STATUS),
            ]
            .concat(),
        ),
        (
            "K0sControlPlane",
            [
                plain(KCP),
                prefixed("spec.k0sConfigSpec.", K0S_CONFIG_SPEC),
                plain(CONTROL_PLANE_STATUS),
            ]
            .concat(),
        ),
        ("K0sControlPlaneTemplate", plain(KCP_TEMPLATE)),
        (
            "K0smotronControlPlane",
            [prefixed("spec.", CLUSTER_SPEC), plain(CONTROL_PLANE_STATUS)].concat(),
        ),
        (
            "K0smotronControlPlaneTemplate",
            [
                prefixed("spec.template.spec.", CLUSTER_SPEC),
                plain(&[("spec.template.metadata.labels{}", "string")]),
            ]
            .concat(),
        ),
        (
            "Cluster",
            [prefixed("spec.", CLUSTER_SPEC), plain(KMC_STATUS)].concat(),
        ),
        ("JoinTokenRequest", plain(JTR)),
        ("RemoteCluster", plain(REMOTE_CLUSTER)),
        (
            "RemoteClusterTemplate",
            prefixed("spec.template.", &REMOTE_CLUSTER[..2]),
        ),
        ("RemoteMachine", plain(REMOTE_MACHINE)),
        ("RemoteMachineTemplate", plain(REMOTE_MACHINE_TEMPLATE)),
        ("PooledRemoteMachine", plain(POOLED)),
    ]
}

#[test]
fn every_inventory_field_exists_with_its_type() {
    let crds = crds::drover_crds();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (kind, fields) in expected() {
        let crd = crds
            .iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"));
        let root = crds::root_schema(crd).unwrap();
        for (path, ty) in fields {
            checked += 1;
            match lookup(root, &path) {
                None => missing.push(format!("{kind}: {path} is missing")),
                Some(node) => {
                    let got = node.type_.as_deref().unwrap_or("");
                    // "" marks int-or-string quantities, which have no type.
                    let ok = if ty.is_empty() {
                        node.x_kubernetes_int_or_string == Some(true)
                    } else {
                        got == ty
                    };
                    if !ok {
                        missing.push(format!("{kind}: {path} has type {got:?}, want {ty:?}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {checked} fields wrong:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(checked > 250, "checked {checked}");
}
