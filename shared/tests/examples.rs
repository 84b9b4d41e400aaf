//! Every manifest in `examples/` passes the CRD schemas with defaults applied
//! (the same pruning, defaulting and validation an API server does), decodes
//! into drover's typed API, and a deliberately broken copy of each is rejected
//! with a message that names the bad field.

mod support;

use drover_shared::api::{bootstrap, capi, controlplane, infrastructure, k0smotron};
use drover_shared::manifests::{SchemaRegistry, parse_documents};
use serde_json::{Value, json};

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(support::repo_root().join("examples").join(name)).unwrap();
    parse_documents(&text).unwrap()
}

fn example_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(support::repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Decodes an admitted object into its typed Rust form, proving the types
/// and the schema agree on every field the example uses.
fn decode_typed(obj: &Value) {
    let kind = obj["kind"].as_str().unwrap();
    let group = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let v = obj.clone();
    let res: Result<(), serde_json::Error> = match (group, kind) {
        ("bootstrap.cluster.x-k8s.io", "K0sWorkerConfig") => {
            serde_json::from_value::<bootstrap::K0sWorkerConfig>(v).map(drop)
        }
        ("bootstrap.cluster.x-k8s.io", "K0sWorkerConfigTemplate") => {
            serde_json::from_value::<bootstrap::K0sWorkerConfigTemplate>(v).map(drop)
        }
        ("bootstrap.cluster.x-k8s.io", "K0sControllerConfig") => {
            serde_json::from_value::<bootstrap::K0sControllerConfig>(v).map(drop)
        }
        ("controlplane.cluster.x-k8s.io", "K0sControlPlane") => {
            serde_json::from_value::<controlplane::K0sControlPlane>(v).map(drop)
        }
        ("controlplane.cluster.x-k8s.io", "K0smotronControlPlane") => {
            serde_json::from_value::<controlplane::K0smotronControlPlane>(v).map(drop)
        }
        ("infrastructure.cluster.x-k8s.io", "RemoteCluster") => {
            serde_json::from_value::<infrastructure::RemoteCluster>(v).map(drop)
        }
        ("infrastructure.cluster.x-k8s.io", "RemoteMachine") => {
            serde_json::from_value::<infrastructure::RemoteMachine>(v).map(drop)
        }
        ("infrastructure.cluster.x-k8s.io", "RemoteMachineTemplate") => {
            serde_json::from_value::<infrastructure::RemoteMachineTemplate>(v).map(drop)
        }
        ("infrastructure.cluster.x-k8s.io", "PooledRemoteMachine") => {
            serde_json::from_value::<infrastructure::PooledRemoteMachine>(v).map(drop)
        }
        ("k0smotron.io", "Cluster") => serde_json::from_value::<k0smotron::Cluster>(v).map(drop),
        ("k0smotron.io", "JoinTokenRequest") => {
            serde_json::from_value::<k0smotron::JoinTokenRequest>(v).map(drop)
        }
        ("cluster.x-k8s.io", "Cluster") => serde_json::from_value::<capi::Cluster>(v).map(drop),
        ("cluster.x-k8s.io", "Machine") => serde_json::from_value::<capi::Machine>(v).map(drop),
        ("cluster.x-k8s.io", "MachineDeployment") => {
            serde_json::from_value::<capi::MachineDeployment>(v).map(drop)
        }
        (g, k) => panic!("example uses {k} in group {g:?}, which this test does not decode"),
    };
    res.unwrap_or_else(|e| panic!("{kind} does not decode into the typed API: {e}"));
}

#[test]
fn every_example_is_valid_and_decodes() {
    let registry = SchemaRegistry::new().unwrap();
    let files = example_files();
    assert!(files.len() >= 5, "one example per use case: {files:?}");
    let mut checked = 0;
    for file in &files {
        for mut obj in load(file) {
            if obj["apiVersion"] == "v1" {
                continue; // core kinds (Secrets) are not drover's to validate
            }
            let kind = obj["kind"].as_str().unwrap().to_owned();
            registry
                .admit(&mut obj)
                .unwrap_or_else(|e| panic!("{file}: {kind}: {e}"));
            decode_typed(&obj);
            checked += 1;
        }
    }
    assert!(checked >= 20, "checked {checked} objects");
}

#[test]
fn every_use_case_has_an_example() {
    let kinds: Vec<(String, String)> = example_files()
        .iter()
        .flat_map(|f| load(f))
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (api, kind) in [
        (
            "controlplane.cluster.x-k8s.io/v1beta2",
            "K0smotronControlPlane",
        ),
        ("controlplane.cluster.x-k8s.io/v1beta2", "K0sControlPlane"),
        ("infrastructure.cluster.x-k8s.io/v1beta2", "RemoteCluster"),
        ("infrastructure.cluster.x-k8s.io/v1beta2", "RemoteMachine"),
        (
            "infrastructure.cluster.x-k8s.io/v1beta2",
            "RemoteMachineTemplate",
        ),
        (
            "infrastructure.cluster.x-k8s.io/v1beta2",
            "PooledRemoteMachine",
        ),
        (
            "bootstrap.cluster.x-k8s.io/v1beta2",
            "K0sWorkerConfigTemplate",
        ),
        ("bootstrap.cluster.x-k8s.io/v1beta2", "K0sWorkerConfig"),
        ("cluster.x-k8s.io/v1beta2", "MachineDeployment"),
        ("k0smotron.io/v1beta2", "Cluster"),
        ("k0smotron.io/v1beta2", "JoinTokenRequest"),
    ] {
        assert!(
            kinds.contains(&(api.into(), kind.into())),
            "no example has {kind}"
        );
    }
}

#[test]
fn defaults_are_applied_as_k0smotron_declares_them() {
    let registry = SchemaRegistry::new().unwrap();
    let mut docs = load("standalone-cluster.yaml");
    registry.admit(&mut docs[0]).unwrap();
    let spec = &docs[0]["spec"];
    assert_eq!(spec["image"], "quay.io/k0sproject/k0s");
    assert_eq!(
        spec["storage"]["etcd"]["image"],
        "quay.io/k0sproject/etcd:v3.7.1"
    );
    assert_eq!(spec["persistence"]["autoDeletePVCs"], false);
    // An omitted spec gets k0smotron's CRD default: a NodePort service with default ports.
    let mut bare = json!({"apiVersion": "k0smotron.io/v1beta2", "kind": "Cluster", "metadata": {"name": "bare"}});
    registry.admit(&mut bare).unwrap();
    assert_eq!(
        bare["spec"]["service"],
        json!({"type": "NodePort", "apiPort": 30443, "konnectivityPort": 30132})
    );
    assert_eq!(bare["spec"]["replicas"], 1);

    let mut docs = load("control-plane-on-machines.yaml");
    let kcp = docs
        .iter_mut()
        .find(|d| d["kind"] == "K0sControlPlane")
        .unwrap();
    registry.admit(kcp).unwrap();
    assert_eq!(
        kcp["spec"]["k0sConfigSpec"]["k0sInstallDir"],
        "/usr/local/bin"
    );
    assert_eq!(kcp["spec"]["replicas"], 3);
    assert_eq!(
        kcp["status"]["initialization"]["controlPlaneInitialized"], false,
        "k0smotron's status default"
    );
    // The k0s ClusterConfig is free-form: nothing inside it is pruned.
    assert_eq!(
        kcp["spec"]["k0sConfigSpec"]["k0s"]["spec"]["api"]["extraArgs"]["anonymous-auth"],
        "true"
    );
}

/// One deliberate breakage per example file: (file, kind, JSON pointer, bad value, expected message start).
const BREAKAGES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "hosted-control-plane.yaml",
        "K0smotronControlPlane",
        "/spec/service/type",
        r#""Ingress""#,
        "spec.service.type: Unsupported value: \"Ingress\"",
    ),
    (
        "hosted-control-plane.yaml",
        "K0sWorkerConfigTemplate",
        "/spec/template/spec/files/0/permissions",
        "420",
        "spec.template.spec.files[0].permissions: Invalid value: 420: must be of type string",
    ),
    (
        "control-plane-on-machines.yaml",
        "K0sControlPlane",
        "/spec/updateStrategy",
        r#""Rolling""#,
        "spec.updateStrategy: Unsupported value: \"Rolling\"",
    ),
    (
        "control-plane-on-machines.yaml",
        "RemoteCluster",
        "/spec/controlPlaneEndpoint/port",
        "70000",
        "spec.controlPlaneEndpoint.port: Invalid value: 70000: should be less than or equal to 65535",
    ),
    (
        "remote-machines.yaml",
        "RemoteMachine",
        "/spec/port",
        r#""ssh""#,
        "spec.port: Invalid value: \"ssh\": must be of type integer",
    ),
    (
        "remote-machines.yaml",
        "K0sWorkerConfig",
        "/spec/provisioner",
        r#"{"type": "ignition", "ignition": {"variant": "ubuntu", "version": "1.5.0"}}"#,
        "spec.provisioner.ignition.variant: Unsupported value: \"ubuntu\"",
    ),
    (
        "standalone-cluster.yaml",
        "Cluster",
        "/spec/storage/type",
        r#""postgres""#,
        "spec.storage.type: Unsupported value: \"postgres\"",
    ),
    (
        "join-token-request.yaml",
        "JoinTokenRequest",
        "/spec/clusterName",
        r#""""#,
        "spec.clusterName: Invalid value: \"\": should be at least 1 chars long",
    ),
];

#[test]
fn a_broken_copy_of_each_example_is_rejected_naming_the_field() {
    let registry = SchemaRegistry::new().unwrap();
    for file in example_files() {
        assert!(
            BREAKAGES.iter().any(|b| b.0 == file),
            "{file} has no broken copy in BREAKAGES"
        );
    }
    for (file, kind, pointer, bad, expected) in BREAKAGES {
        let mut docs = load(file);
        let obj = docs
            .iter_mut()
            .find(|d| d["kind"] == *kind)
            .unwrap_or_else(|| panic!("{file} has no {kind}"));
        set_pointer(obj, pointer, serde_json::from_str(bad).unwrap());
        let err = registry
            .admit(obj)
            .expect_err(&format!("{file}: broken {kind} must be rejected"))
            .to_string();
        assert!(
            err.starts_with(expected),
            "{file} {kind}: got {err:?}, want it to start with {expected:?}"
        );
    }
}

#[test]
fn missing_required_fields_are_named() {
    let registry = SchemaRegistry::new().unwrap();
    let mut docs = load("control-plane-on-machines.yaml");
    let kcp = docs
        .iter_mut()
        .find(|d| d["kind"] == "K0sControlPlane")
        .unwrap();
    kcp["spec"]
        .as_object_mut()
        .unwrap()
        .remove("machineTemplate");
    assert_eq!(
        registry.admit(kcp).unwrap_err().to_string(),
        "spec.machineTemplate: Required value: "
    );
    let mut docs = load("hosted-control-plane.yaml");
    let pool = docs
        .iter_mut()
        .find(|d| d["kind"] == "PooledRemoteMachine")
        .unwrap();
    pool["spec"]["machine"]
        .as_object_mut()
        .unwrap()
        .remove("sshKeyRef");
    assert_eq!(
        registry.admit(pool).unwrap_err().to_string(),
        "spec.machine.sshKeyRef: Required value: "
    );
}

fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let target = obj
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match target {
        Value::Array(a) => a[last.parse::<usize>().unwrap()] = value,
        Value::Object(m) => {
            m.insert(last.to_owned(), value);
        }
        _ => panic!("{parent} is not a container"),
    }
}
