//! Simulated workload controllers, each switchable, each acting after a
//! configurable delay, as kube-controller-manager, the scheduler, kubelets,
//! a storage provisioner and a load-balancer controller would:
//!
//! - StatefulSets get their Pods (`<name>-<ordinal>`, owned, Running and
//!   Ready after the delay), PVCs from `volumeClaimTemplates`, and status
//!   replicas; Deployments get status replicas;
//! - PersistentVolumeClaims become Bound;
//! - LoadBalancer Services get an ingress address.
//!
//! Level-triggered: a change schedules a reconcile of that object after the
//! delay; the reconcile reads the object as it is then.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::{Cluster, ControllerEvent, ListQuery, Target, WriteOptions, next_event, now};
use super::store::{EventType, Resource, WatchEvent};

/// Which controllers run, and after how long they act. `None` turns one off.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// StatefulSet and Deployment readiness (and StatefulSet Pods and PVCs).
    pub workloads: Option<Duration>,
    /// PVCs become Bound.
    pub volumes: Option<Duration>,
    /// LoadBalancer Services get `status.loadBalancer.ingress`.
    pub load_balancers: Option<Duration>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            workloads: Some(Duration::from_millis(50)),
            volumes: Some(Duration::from_millis(20)),
            load_balancers: Some(Duration::from_millis(20)),
        }
    }
}

/// The manager name the sim's controllers write with.
const MANAGER: &str = "kube-sim-controller";

/// Runs the workload controllers of one cluster until it stops.
pub async fn run(
    cluster: Arc<Cluster>,
    config: WorkloadConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = cluster.subscribe();
    loop {
        let changes: Vec<Arc<WatchEvent>> = match next_event(&mut events, &mut stop).await {
            ControllerEvent::Change(ev) => vec![ev],
            // Missed events: reconcile every object these controllers own.
            ControllerEvent::Resync => resync_events(&cluster),
            ControllerEvent::Stop => return,
        };
        for ev in changes {
            if let Some((delay, work)) = route(&ev, &config) {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    work(&cluster);
                });
            }
        }
    }
}

/// Every StatefulSet, Deployment, PVC and Service, as if each had just changed.
fn resync_events(cluster: &Cluster) -> Vec<Arc<WatchEvent>> {
    let mut out = Vec::new();
    for res in [
        Resource::new("apps", "statefulsets"),
        Resource::new("apps", "deployments"),
        Resource::new("", "persistentvolumeclaims"),
        Resource::new("", "services"),
    ] {
        for (namespace, object) in cluster.snapshot(&res) {
            out.push(Arc::new(WatchEvent {
                rv: 0,
                resource: res.clone(),
                namespace,
                kind: EventType::Modified,
                object,
                prev: None,
                object_json: Arc::default(),
            }));
        }
    }
    out
}

type Work = Box<dyn FnOnce(&Cluster) + Send>;

fn route(ev: &WatchEvent, config: &WorkloadConfig) -> Option<(Duration, Work)> {
    if ev.kind == EventType::Deleted || ev.object["metadata"].get("deletionTimestamp").is_some() {
        return None;
    }
    let ns = ev.namespace.clone().unwrap_or_default();
    let name = ev.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = (ev.resource.group.as_str(), ev.resource.plural.as_str());
    match r {
        ("apps", "statefulsets") => {
            let d = config.workloads?;
            Some((d, Box::new(move |c| reconcile_statefulset(c, &ns, &name))))
        }
        ("apps", "deployments") => {
            let d = config.workloads?;
            Some((d, Box::new(move |c| reconcile_deployment(c, &ns, &name))))
        }
        ("", "persistentvolumeclaims") => {
            let d = config.volumes?;
            Some((d, Box::new(move |c| bind_claim(c, &ns, &name))))
        }
        ("", "services") => {
            let d = config.load_balancers?;
            (ev.object.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")).then(
                || {
                    (
                        d,
                        Box::new(move |c: &Cluster| assign_ingress(c, &ns, &name)) as Work,
                    )
                },
            )
        }
        _ => None,
    }
}

fn target(c: &Cluster, group: &str, plural: &str, ns: &str, name: Option<&str>) -> Option<Target> {
    let info = c.registry().get(group, "v1", plural)?;
    Some(Target {
        info,
        namespace: Some(ns.to_owned()),
        name: name.map(str::to_owned),
        subresource: None,
    })
}

fn write_status(c: &Cluster, group: &str, plural: &str, ns: &str, name: &str, status: Value) {
    let r = (
        Resource::new(group, plural),
        Some(ns.to_owned()),
        name.to_owned(),
    );
    let _ = c.controller_update(&r, true, MANAGER, |o| o["status"] = status);
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn reconcile_statefulset(c: &Cluster, ns: &str, name: &str) {
    let Some(t) = target(c, "apps", "statefulsets", ns, Some(name)) else {
        return;
    };
    let Ok(sts) = c.get(&t) else { return };
    let want = replicas(&sts);
    let uid = sts["metadata"]["uid"].clone();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let labels = sts
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let pods = target(c, "", "pods", ns, None);
    let pvcs = target(c, "", "persistentvolumeclaims", ns, None);
    let opts = WriteOptions {
        field_manager: Some(MANAGER.into()),
        ..WriteOptions::default()
    };
    for i in 0..want {
        let pod_name = format!("{name}-{i}");
        // Claims from the templates first, as the StatefulSet controller does.
        for vct in sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let claim = format!(
                "{}-{pod_name}",
                vct["metadata"]["name"].as_str().unwrap_or("data")
            );
            if let Some(pt) = &pvcs {
                let body = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns, "labels": labels},
                    "spec": vct["spec"],
                });
                let _ = c.create(pt, body, &opts);
            }
        }
        if let Some(pt) = &pods {
            let mut pod_labels = labels.clone();
            pod_labels["statefulset.kubernetes.io/pod-name"] = pod_name.clone().into();
            let body = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns, "labels": pod_labels, "ownerReferences": owner},
                "spec": sts.pointer("/spec/template/spec").cloned().unwrap_or(json!({})),
            });
            let _ = c.create(pt, body, &opts); // AlreadyExists is fine
            let running = target(c, "", "pods", ns, Some(&pod_name))
                .and_then(|t| c.get(&t).ok())
                .is_some_and(|p| {
                    p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
                });
            if !running {
                let ts = now();
                write_status(
                    c,
                    "",
                    "pods",
                    ns,
                    &pod_name,
                    json!({
                        "phase": "Running",
                        "podIP": format!("10.244.0.{}", i + 2),
                        "startTime": ts,
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": ts},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": ts},
                        ],
                    }),
                );
            }
        }
    }
    // Scale down: remove pods above the replica count.
    if let Some(pt) = &pods {
        let q = ListQuery::default();
        if let Ok(list) = c.list(pt, &q) {
            for p in &list.items {
                let owned = p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid));
                let ordinal = p["metadata"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix(&format!("{name}-")))
                    .and_then(|o| o.parse::<i64>().ok());
                if owned && ordinal.is_some_and(|o| o >= want) {
                    let r = (
                        Resource::new("", "pods"),
                        Some(ns.to_owned()),
                        p["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    let _ = c.controller_delete(&r, super::cluster::Propagation::Background);
                }
            }
        }
    }
    let revision = format!(
        "{name}-{}",
        sts["metadata"]["generation"].as_i64().unwrap_or(1)
    );
    write_status(
        c,
        "apps",
        "statefulsets",
        ns,
        name,
        json!({
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
            "currentReplicas": want,
            "updatedReplicas": want,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }),
    );
}

fn reconcile_deployment(c: &Cluster, ns: &str, name: &str) {
    let Some(t) = target(c, "apps", "deployments", ns, Some(name)) else {
        return;
    };
    let Ok(d) = c.get(&t) else { return };
    let want = replicas(&d);
    // Only on change: the status write is itself an event on this object.
    let done = d.pointer("/status/observedGeneration") == d.pointer("/metadata/generation")
        && d.pointer("/status/readyReplicas").and_then(Value::as_i64) == Some(want);
    if done {
        return;
    }
    let ts = now();
    write_status(
        c,
        "apps",
        "deployments",
        ns,
        name,
        json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
            "updatedReplicas": want,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastTransitionTime": ts, "lastUpdateTime": ts},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastTransitionTime": ts, "lastUpdateTime": ts},
            ],
        }),
    );
}

fn bind_claim(c: &Cluster, ns: &str, name: &str) {
    let Some(t) = target(c, "", "persistentvolumeclaims", ns, Some(name)) else {
        return;
    };
    let Ok(pvc) = c.get(&t) else { return };
    if pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") {
        return;
    }
    let capacity = pvc
        .pointer("/spec/resources/requests")
        .cloned()
        .unwrap_or(json!({}));
    let modes = pvc
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or(json!(["ReadWriteOnce"]));
    write_status(
        c,
        "",
        "persistentvolumeclaims",
        ns,
        name,
        json!({"phase": "Bound", "capacity": capacity, "accessModes": modes}),
    );
}

fn assign_ingress(c: &Cluster, ns: &str, name: &str) {
    let Some(t) = target(c, "", "services", ns, Some(name)) else {
        return;
    };
    let Ok(svc) = c.get(&t) else { return };
    if svc.pointer("/status/loadBalancer/ingress").is_some() {
        return;
    }
    // Documentation addresses (TEST-NET-2): never routable, clearly simulated.
    let n = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.rsplit('.').next())
        .and_then(|o| o.parse::<u8>().ok())
        .unwrap_or(1);
    write_status(
        c,
        "",
        "services",
        ns,
        name,
        json!({"loadBalancer": {"ingress": [{"ip": format!("198.51.100.{n}")}]}}),
    );
}
