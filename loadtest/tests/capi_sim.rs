//! The simulated CAPI core (`drover_loadtest::capi`) against an in-process
//! kube-sim: MachineDeployment → MachineSet → Machines with cloned bootstrap
//! configs, scaling, data secret names, adoption of user-created configs and
//! Cluster initialization. Every wait polls with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_loadtest::capi::{
    CONTROL_PLANE_INITIALIZED_ANNOTATION, CapiSimConfig, SimulatedCapiCore,
};
use drover_loadtest::sim::{ClusterHandle, Sim, SimConfig};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{Value, json};

const NS: &str = "default";
const DEADLINE: Duration = Duration::from_secs(30);

struct Env {
    _sim: Sim,
    _h: Arc<ClusterHandle>,
    c: Client,
    core: Option<SimulatedCapiCore>,
}

impl Env {
    async fn start(config: CapiSimConfig) -> Self {
        let sim = Sim::new(SimConfig::default());
        let h = sim.add_cluster("mgmt").await.expect("cluster starts");
        let kc = Kubeconfig::from_yaml(&h.kubeconfig).expect("kubeconfig parses");
        let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig usable");
        let c = Client::try_from(cfg).expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
        for (_, crd) in drover_shared::crds::all_crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRDs install");
        }
        let core = SimulatedCapiCore::start(c.clone(), config);
        Self {
            _sim: sim,
            _h: h,
            c,
            core: Some(core),
        }
    }

    fn api(&self, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        Api::namespaced_with(self.c.clone(), NS, &ar)
    }
    fn capi(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        self.api("cluster.x-k8s.io", "v1beta2", kind, plural)
    }
    fn machines(&self) -> Api<DynamicObject> {
        self.capi("Machine", "machines")
    }
    fn configs(&self) -> Api<DynamicObject> {
        self.api(
            "bootstrap.cluster.x-k8s.io",
            "v1beta2",
            "K0sWorkerConfig",
            "k0sworkerconfigs",
        )
    }

    async fn create(&self, api: &Api<DynamicObject>, obj: Value) -> DynamicObject {
        let o: DynamicObject = serde_json::from_value(obj).expect("object");
        api.create(&PostParams::default(), &o)
            .await
            .expect("create")
    }

    async fn stop(mut self) {
        if let Some(core) = self.core.take() {
            tokio::time::timeout(Duration::from_secs(10), core.shutdown())
                .await
                .expect("the simulated core stops");
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after the deadline.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            eprintln!("{what}: {:?}", start.elapsed());
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn label<'a>(o: &'a DynamicObject, k: &str) -> Option<&'a str> {
    o.metadata.labels.as_ref()?.get(k).map(String::as_str)
}

fn controller_uid(o: &DynamicObject) -> Option<&str> {
    o.metadata
        .owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn at<'a>(o: &'a DynamicObject, ptr: &str) -> Option<&'a Value> {
    o.data.pointer(ptr)
}

async fn list(api: &Api<DynamicObject>) -> Vec<DynamicObject> {
    api.list(&ListParams::default()).await.expect("list").items
}

fn cluster(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {}
    })
}

#[tokio::test]
async fn machine_deployment_makes_a_set_machines_and_cloned_configs_and_scales_down() {
    let env = Env::start(CapiSimConfig::default()).await;
    env.create(&env.capi("Cluster", "clusters"), cluster("c1", json!({})))
        .await;
    let tmpl = env.api(
        "bootstrap.cluster.x-k8s.io",
        "v1beta2",
        "K0sWorkerConfigTemplate",
        "k0sworkerconfigtemplates",
    );
    env.create(
        &tmpl,
        json!({
            "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
            "kind": "K0sWorkerConfigTemplate",
            "metadata": {"name": "workers", "namespace": NS},
            "spec": {"template": {
                "metadata": {"labels": {"from-template": "yes"}},
                "spec": {"version": "v1.33.1+k0s.0", "args": ["--debug"]}
            }}
        }),
    )
    .await;
    let rmt = env.api(
        "infrastructure.cluster.x-k8s.io",
        "v1beta2",
        "RemoteMachineTemplate",
        "remotemachinetemplates",
    );
    env.create(
        &rmt,
        json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "RemoteMachineTemplate",
            "metadata": {"name": "hosts", "namespace": NS},
            "spec": {"template": {"spec": {"pool": "p1"}}}
        }),
    )
    .await;
    let mds = env.capi("MachineDeployment", "machinedeployments");
    let md = env
        .create(&mds, json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "MachineDeployment",
            "metadata": {"name": "md", "namespace": NS},
            "spec": {
                "clusterName": "c1",
                "replicas": 3,
                "template": {
                    "metadata": {"labels": {"pool": "a"}},
                    "spec": {
                        "clusterName": "c1",
                        "version": "v1.33.1",
                        "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfigTemplate", "name": "workers"}},
                        "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachineTemplate", "name": "hosts"}
                    }
                }
            }
        }))
        .await;
    let md_uid = md.metadata.uid.clone().unwrap();

    let sets = env.capi("MachineSet", "machinesets");
    let ms = eventually("one MachineSet", || async {
        let l = list(&sets).await;
        (l.len() == 1).then(|| l.into_iter().next().unwrap())
    })
    .await;
    let ms_name = ms.metadata.name.clone().unwrap();
    let ms_uid = ms.metadata.uid.clone().unwrap();
    assert!(ms_name.starts_with("md-"), "{ms_name}");
    assert_eq!(controller_uid(&ms), Some(md_uid.as_str()));
    assert_eq!(label(&ms, "cluster.x-k8s.io/cluster-name"), Some("c1"));
    assert_eq!(label(&ms, "cluster.x-k8s.io/deployment-name"), Some("md"));
    assert_eq!(at(&ms, "/spec/replicas"), Some(&json!(3)));

    // Three Machines whose configs have been cloned and adopted.
    let machines = eventually("3 Machines with adopted configs", || async {
        let ms = list(&env.machines()).await;
        let cs = list(&env.configs()).await;
        if ms.len() != 3 || cs.len() != 3 {
            return None;
        }
        let adopted = ms.iter().all(|m| {
            let name = m.metadata.name.as_deref().unwrap();
            cs.iter().any(|c| {
                c.metadata.name.as_deref() == Some(name)
                    && controller_uid(c) == m.metadata.uid.as_deref()
                    && c.metadata.owner_references.as_ref().unwrap().len() == 1
            })
        });
        adopted.then_some(ms)
    })
    .await;
    let configs = list(&env.configs()).await;
    for m in &machines {
        let name = m.metadata.name.as_deref().unwrap();
        assert!(name.starts_with(&format!("{ms_name}-")), "{name}");
        assert_eq!(controller_uid(m), Some(ms_uid.as_str()));
        assert_eq!(label(m, "cluster.x-k8s.io/cluster-name"), Some("c1"));
        assert_eq!(
            label(m, "cluster.x-k8s.io/set-name"),
            Some(ms_name.as_str())
        );
        assert_eq!(label(m, "cluster.x-k8s.io/deployment-name"), Some("md"));
        assert_eq!(label(m, "pool"), Some("a"), "template labels are kept");
        assert_eq!(at(m, "/spec/clusterName"), Some(&json!("c1")));
        assert_eq!(at(m, "/spec/version"), Some(&json!("v1.33.1")));
        assert_eq!(
            at(m, "/spec/bootstrap/configRef"),
            Some(
                &json!({"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfig", "name": name})
            )
        );
        assert_eq!(
            at(m, "/spec/infrastructureRef"),
            Some(
                &json!({"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteMachine", "name": name})
            ),
            "a RemoteMachineTemplate is cloned too"
        );
        let c = configs
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap();
        let r = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((r.kind.as_str(), r.name.as_str()), ("Machine", name));
        assert_eq!(label(c, "cluster.x-k8s.io/cluster-name"), Some("c1"));
        assert_eq!(label(c, "from-template"), Some("yes"));
        assert_eq!(at(c, "/spec/version"), Some(&json!("v1.33.1+k0s.0")));
        assert_eq!(at(c, "/spec/args"), Some(&json!(["--debug"])));
        assert_eq!(
            c.metadata
                .annotations
                .as_ref()
                .unwrap()
                .get("cluster.x-k8s.io/cloned-from-name")
                .map(String::as_str),
            Some("workers")
        );
    }
    let rms = env.api(
        "infrastructure.cluster.x-k8s.io",
        "v1beta2",
        "RemoteMachine",
        "remotemachines",
    );
    let rm = eventually("3 RemoteMachines owned by Machines", || async {
        let l = list(&rms).await;
        (l.len() == 3
            && l.iter()
                .all(|r| r.metadata.owner_references.as_ref().unwrap()[0].kind == "Machine"))
        .then_some(l)
    })
    .await;
    assert!(rm.iter().all(|r| at(r, "/spec/pool") == Some(&json!("p1"))));
    eventually("MachineDeployment status replicas 3", || async {
        let md = mds.get("md").await.unwrap();
        (at(&md, "/status/replicas") == Some(&json!(3))).then_some(())
    })
    .await;

    // Scale to 1: two Machines go, and their configs by garbage collection.
    mds.patch(
        "md",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let survivor = eventually("1 Machine and 1 config", || async {
        let ms = list(&env.machines()).await;
        let cs = list(&env.configs()).await;
        let rs = list(&rms).await;
        (ms.len() == 1 && cs.len() == 1 && rs.len() == 1).then_some((ms, cs))
    })
    .await;
    assert_eq!(survivor.0[0].metadata.name, survivor.1[0].metadata.name);
    let newest_kept = machines
        .iter()
        .map(|m| m.metadata.creation_timestamp.clone())
        .min()
        .unwrap();
    assert_eq!(
        survivor.0[0].metadata.creation_timestamp, newest_kept,
        "the oldest Machine stays"
    );
    assert_eq!(list(&sets).await.len(), 1, "still one MachineSet");
    eventually("MachineSet status replicas 1", || async {
        let ms = sets.get(&ms_name).await.unwrap();
        (at(&ms, "/status/replicas") == Some(&json!(1))).then_some(())
    })
    .await;
    env.stop().await;
}

fn machine(name: &str, config: &str) -> Value {
    json!({
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "clusterName": "c1",
            "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "K0sWorkerConfig", "name": config}},
            "infrastructureRef": {"apiGroup": "infrastructure.example.com", "kind": "FakeMachine", "name": name}
        }
    })
}

fn config(name: &str) -> Value {
    json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
        "kind": "K0sWorkerConfig",
        "metadata": {"name": name, "namespace": NS},
        "spec": {}
    })
}

#[tokio::test]
async fn user_created_config_is_owned_and_labelled() {
    let env = Env::start(CapiSimConfig::default()).await;
    env.create(&env.configs(), config("user-cfg")).await;
    let m = env
        .create(&env.machines(), machine("user-m", "user-cfg"))
        .await;
    let c = eventually("the config adopted", || async {
        let c = env.configs().get("user-cfg").await.unwrap();
        (controller_uid(&c) == m.metadata.uid.as_deref()).then_some(c)
    })
    .await;
    let r = &c.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.api_version.as_str()),
        ("Machine", "user-m", "cluster.x-k8s.io/v1beta2")
    );
    assert_eq!(r.block_owner_deletion, Some(true));
    assert_eq!(label(&c, "cluster.x-k8s.io/cluster-name"), Some("c1"));
    let m = env.machines().get("user-m").await.unwrap();
    assert_eq!(
        at(&m, "/spec/bootstrap/dataSecretName"),
        None,
        "no data secret yet"
    );
    assert_eq!(
        at(&m, "/spec/infrastructureRef/kind"),
        Some(&json!("FakeMachine")),
        "an unknown infrastructure kind is referenced as is"
    );
    env.stop().await;
}

#[tokio::test]
async fn data_secret_name_is_copied_once_created() {
    let env = Env::start(CapiSimConfig::default()).await;
    env.create(&env.configs(), config("cfg-v2")).await;
    env.create(&env.configs(), config("cfg-v1")).await;
    env.create(&env.machines(), machine("m-v2", "cfg-v2")).await;
    env.create(&env.machines(), machine("m-v1", "cfg-v1")).await;
    // Wait for the Machine to have been reconciled (its phase), then only
    // name a secret without saying it exists: nothing is copied.
    eventually("Machine phase Pending", || async {
        let m = env.machines().get("m-v2").await.unwrap();
        (at(&m, "/status/phase") == Some(&json!("Pending"))).then_some(())
    })
    .await;
    let configs = env.configs();
    let ps = PatchParams::default();
    configs
        .patch_status(
            "cfg-v2",
            &ps,
            &Patch::Merge(json!({"status": {"dataSecretName": "cfg-v2-secret"}})),
        )
        .await
        .unwrap();
    // Another Machine's progress shows the core has moved on since.
    configs
        .patch_status(
            "cfg-v1",
            &ps,
            &Patch::Merge(json!({"status": {"dataSecretName": "cfg-v1-secret", "ready": true}})),
        )
        .await
        .unwrap();
    let m1 = eventually("v1beta1 ready copies the secret name", || async {
        let m = env.machines().get("m-v1").await.unwrap();
        (at(&m, "/spec/bootstrap/dataSecretName") == Some(&json!("cfg-v1-secret"))
            && at(&m, "/status/initialization/bootstrapDataSecretCreated") == Some(&json!(true)))
        .then_some(m)
    })
    .await;
    assert_eq!(at(&m1, "/status/phase"), Some(&json!("Provisioning")));
    let m2 = env.machines().get("m-v2").await.unwrap();
    assert_eq!(
        at(&m2, "/spec/bootstrap/dataSecretName"),
        None,
        "not created yet, not copied"
    );

    configs
        .patch_status(
            "cfg-v2",
            &ps,
            &Patch::Merge(json!({"status": {"initialization": {"dataSecretCreated": true}}})),
        )
        .await
        .unwrap();
    let m2 = eventually(
        "v1beta2 dataSecretCreated copies the secret name",
        || async {
            let m = env.machines().get("m-v2").await.unwrap();
            (at(&m, "/spec/bootstrap/dataSecretName") == Some(&json!("cfg-v2-secret"))
                && at(&m, "/status/initialization/bootstrapDataSecretCreated")
                    == Some(&json!(true)))
            .then_some(m)
        },
    )
    .await;
    assert_eq!(at(&m2, "/status/phase"), Some(&json!("Provisioning")));
    env.stop().await;
}

fn condition<'a>(c: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    at(c, "/status/conditions")?
        .as_array()?
        .iter()
        .find(|x| x["type"] == type_)
}

#[tokio::test]
async fn cluster_control_plane_initialized_unless_held_back() {
    let env = Env::start(CapiSimConfig::default()).await;
    let clusters = env.capi("Cluster", "clusters");
    env.create(&clusters, cluster("free", json!({}))).await;
    env.create(
        &clusters,
        cluster(
            "held",
            json!({CONTROL_PLANE_INITIALIZED_ANNOTATION: "false"}),
        ),
    )
    .await;

    let free = eventually("free cluster initialized", || async {
        let c = clusters.get("free").await.unwrap();
        (at(&c, "/status/initialization/controlPlaneInitialized") == Some(&json!(true)))
            .then_some(c)
    })
    .await;
    assert_eq!(
        condition(&free, "ControlPlaneInitialized").unwrap()["status"],
        "True"
    );
    assert_eq!(
        at(&free, "/status/initialization/infrastructureProvisioned"),
        Some(&json!(true))
    );
    assert_eq!(
        condition(&free, "InfrastructureReady").unwrap()["status"],
        "True"
    );
    assert_eq!(
        at(&free, "/status/phase"),
        Some(&json!("Pending")),
        "no refs, no endpoint"
    );

    let held = eventually("held cluster reconciled", || async {
        let c = clusters.get("held").await.unwrap();
        condition(&c, "ControlPlaneInitialized")
            .is_some()
            .then_some(c)
    })
    .await;
    assert_eq!(
        condition(&held, "ControlPlaneInitialized").unwrap()["status"],
        "False"
    );
    assert_eq!(
        at(&held, "/status/initialization/controlPlaneInitialized"),
        Some(&json!(false))
    );

    clusters
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {CONTROL_PLANE_INITIALIZED_ANNOTATION: null}}}),
            ),
        )
        .await
        .unwrap();
    let held = eventually(
        "held cluster initialized after the annotation goes",
        || async {
            let c = clusters.get("held").await.unwrap();
            (at(&c, "/status/initialization/controlPlaneInitialized") == Some(&json!(true)))
                .then_some(c)
        },
    )
    .await;
    assert_eq!(
        condition(&held, "ControlPlaneInitialized").unwrap()["status"],
        "True"
    );
    env.stop().await;
}

#[tokio::test]
async fn endpoint_and_infrastructure_from_referenced_objects() {
    let env = Env::start(CapiSimConfig {
        mark_control_plane_initialized: false,
        control_plane_endpoint: Some(drover_shared::api::common::ApiEndpoint {
            host: "10.0.0.1".into(),
            port: 6443,
        }),
        ..CapiSimConfig::default()
    })
    .await;
    let clusters = env.capi("Cluster", "clusters");
    let rcs = env.api(
        "infrastructure.cluster.x-k8s.io",
        "v1beta2",
        "RemoteCluster",
        "remoteclusters",
    );
    env.create(&rcs, json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
        "kind": "RemoteCluster",
        "metadata": {"name": "infra", "namespace": NS, "labels": {"cluster.x-k8s.io/cluster-name": "c2"}},
        "spec": {}
    }))
    .await;
    let mut c2 = cluster("c2", json!({}));
    c2["spec"]["infrastructureRef"] = json!({"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "RemoteCluster", "name": "infra"});
    env.create(&clusters, c2).await;

    let c = eventually(
        "endpoint from the config, infrastructure not yet provisioned",
        || async {
            let c = clusters.get("c2").await.unwrap();
            (at(&c, "/spec/controlPlaneEndpoint")
                == Some(&json!({"host": "10.0.0.1", "port": 6443}))
                && condition(&c, "InfrastructureReady").is_some())
            .then_some(c)
        },
    )
    .await;
    assert_eq!(
        at(&c, "/status/initialization/infrastructureProvisioned"),
        Some(&json!(false))
    );
    assert_eq!(
        at(&c, "/status/initialization/controlPlaneInitialized"),
        Some(&json!(false))
    );
    assert_eq!(at(&c, "/status/phase"), Some(&json!("Provisioning")));

    rcs.patch_status(
        "infra",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"initialization": {"provisioned": true}}})),
    )
    .await
    .unwrap();
    let c = eventually("infrastructure provisioned", || async {
        let c = clusters.get("c2").await.unwrap();
        (at(&c, "/status/phase") == Some(&json!("Provisioned"))).then_some(c)
    })
    .await;
    assert_eq!(
        at(&c, "/status/initialization/infrastructureProvisioned"),
        Some(&json!(true))
    );
    assert_eq!(
        condition(&c, "InfrastructureReady").unwrap()["status"],
        "True"
    );
    assert_eq!(
        at(&c, "/status/initialization/controlPlaneInitialized"),
        Some(&json!(false)),
        "not marked when the config says no"
    );
    env.stop().await;
}

#[tokio::test]
async fn control_plane_reporting_initialized_counts_without_marking() {
    let env = Env::start(CapiSimConfig {
        mark_control_plane_initialized: false,
        ..CapiSimConfig::default()
    })
    .await;
    let clusters = env.capi("Cluster", "clusters");
    let cps = env.api(
        "controlplane.cluster.x-k8s.io",
        "v1beta2",
        "K0smotronControlPlane",
        "k0smotroncontrolplanes",
    );
    env.create(
        &cps,
        json!({
            "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
            "kind": "K0smotronControlPlane",
            "metadata": {"name": "cp", "namespace": NS, "labels": {"cluster.x-k8s.io/cluster-name": "c3"}},
            "spec": {}
        }),
    )
    .await;
    let mut c3 = cluster("c3", json!({}));
    c3["spec"]["controlPlaneRef"] = json!({
        "apiGroup": "controlplane.cluster.x-k8s.io", "kind": "K0smotronControlPlane", "name": "cp"
    });
    env.create(&clusters, c3).await;
    let c = eventually("cluster reconciled", || async {
        let c = clusters.get("c3").await.unwrap();
        condition(&c, "ControlPlaneInitialized")
            .is_some()
            .then_some(c)
    })
    .await;
    assert_eq!(
        condition(&c, "ControlPlaneInitialized").unwrap()["status"],
        "False"
    );
    assert_eq!(at(&c, "/status/phase"), Some(&json!("Provisioning")));

    cps.patch_status(
        "cp",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"initialization": {"controlPlaneInitialized": true}}})),
    )
    .await
    .unwrap();
    let c = eventually("initialized as the control plane reports", || async {
        let c = clusters.get("c3").await.unwrap();
        (at(&c, "/status/initialization/controlPlaneInitialized") == Some(&json!(true)))
            .then_some(c)
    })
    .await;
    assert_eq!(
        condition(&c, "ControlPlaneInitialized").unwrap()["status"],
        "True"
    );
    env.stop().await;
}
