//! The hook that brings a child cluster up once its hosted control plane is
//! "running" in the management cluster, for the hosted-control-plane
//! provider and its tests.
//!
//! Contract (what the provider can rely on):
//!
//! - Trigger: a StatefulSet in the management cluster labelled as k0smotron
//!   labels a hosted control plane (`app=k0smotron`,
//!   `app.kubernetes.io/component=control-plane`, `cluster=<name>`) reports
//!   `status.readyReplicas >= 1` (the simulated StatefulSet controller sets it).
//! - Child: a sim cluster named `<name>.<namespace>` starts on a loopback
//!   port. Its CA is the one in Secret `<name>-ca` (`tls.crt`, `tls.key`) of
//!   that namespace when the Secret exists, so kubeconfigs and certificates
//!   the provider mints from that CA are trusted; otherwise a new CA.
//! - Address: the StatefulSet and the Service `kmc-<name>` get the annotation
//!   [`ADDRESS_ANNOTATION`] = `127.0.0.1:<port>`: where the control plane's
//!   API answers, since a simulated NodePort or LoadBalancer address cannot
//!   be dialled.
//! - Teardown: deleting the StatefulSet stops the child cluster.

use std::sync::{Arc, Weak};

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::watch;

use super::cluster::{Cluster, ControllerEvent, Target, next_event};
use super::server::SimInner;
use super::store::{EventType, Resource};
use super::tls::ClusterCa;

/// Where a simulated hosted control plane's API server listens.
pub const ADDRESS_ANNOTATION: &str = "kube-sim.drover.dev/address";
/// The name of the child sim cluster serving a hosted control plane.
pub const CHILD_ANNOTATION: &str = "kube-sim.drover.dev/child-cluster";

/// The child cluster name for control plane `name` in `namespace`.
pub fn child_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

/// The hosted control plane a StatefulSet stands for: (namespace, cluster name).
fn control_plane_of(sts: &Value) -> Option<(String, String)> {
    let labels = sts.pointer("/metadata/labels")?;
    if labels["app"] != "k0smotron" || labels["app.kubernetes.io/component"] != "control-plane" {
        return None;
    }
    let name = labels["cluster"].as_str()?;
    let ns = sts.pointer("/metadata/namespace")?.as_str()?;
    Some((ns.to_owned(), name.to_owned()))
}

/// Watches the management cluster and starts or stops child clusters.
pub(crate) async fn run(mgmt: Arc<Cluster>, sim: Weak<SimInner>, mut stop: watch::Receiver<bool>) {
    let mut events = mgmt.subscribe();
    let sts = Resource::new("apps", "statefulsets");
    loop {
        let changes = match next_event(&mut events, &mut stop).await {
            ControllerEvent::Change(ev) if ev.resource == sts => vec![(ev.kind, ev.object.clone())],
            ControllerEvent::Change(_) => continue,
            // Missed events: look at every StatefulSet again.
            ControllerEvent::Resync => mgmt
                .snapshot(&sts)
                .into_iter()
                .map(|(_, o)| (EventType::Modified, o))
                .collect(),
            ControllerEvent::Stop => return,
        };
        for (kind, object) in changes {
            on_statefulset(&mgmt, &sim, kind, &object);
        }
    }
}

/// Starts or stops the child cluster a StatefulSet change calls for.
fn on_statefulset(mgmt: &Cluster, sim: &Weak<SimInner>, kind: EventType, object: &Value) {
    let Some((ns, name)) = control_plane_of(object) else {
        return;
    };
    let Some(sim) = sim.upgrade() else { return };
    let child = child_name(&ns, &name);
    if kind == EventType::Deleted {
        let _ = sim.remove_cluster(&child);
        return;
    }
    let ready = object
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        >= 1;
    if !ready || sim.cluster(&child).is_some() {
        return;
    }
    let ca = cluster_ca(mgmt, &ns, &name);
    match sim.add_cluster(&child, ca) {
        Ok(h) => {
            let address = h.addr.to_string();
            tracing::info!(child = %child, %address, "hosted control plane is up");
            annotate(
                mgmt,
                "apps",
                "statefulsets",
                &ns,
                &format!("kmc-{name}"),
                &address,
                &child,
            );
            annotate(
                mgmt,
                "",
                "services",
                &ns,
                &format!("kmc-{name}"),
                &address,
                &child,
            );
        }
        Err(e) => {
            tracing::warn!(child = %child, error = %e, "starting the child cluster failed")
        }
    }
}

/// The CA from Secret `<name>-ca`, if it exists and parses.
fn cluster_ca(mgmt: &Cluster, ns: &str, name: &str) -> Option<ClusterCa> {
    let info = mgmt.registry().get("", "v1", "secrets")?;
    let t = Target {
        info,
        namespace: Some(ns.to_owned()),
        name: Some(format!("{name}-ca")),
        subresource: None,
    };
    let secret = mgmt.get(&t).ok()?;
    let field = |k: &str| {
        let b = secret
            .pointer(&format!("/data/{}", k.replace('/', "~1")))?
            .as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
    };
    match ClusterCa::from_pem(&field("tls.crt")?, &field("tls.key")?) {
        Ok(ca) => Some(ca),
        Err(e) => {
            tracing::warn!(error = %e, secret = %format!("{ns}/{name}-ca"), "unusable CA secret; the child gets its own CA");
            None
        }
    }
}

fn annotate(
    mgmt: &Cluster,
    group: &str,
    plural: &str,
    ns: &str,
    name: &str,
    address: &str,
    child: &str,
) {
    let r = (
        Resource::new(group, plural),
        Some(ns.to_owned()),
        name.to_owned(),
    );
    let _ = mgmt.controller_update(&r, false, "kube-sim", |o| {
        let meta = &mut o["metadata"];
        if !meta.get("annotations").is_some_and(Value::is_object) {
            meta["annotations"] = Value::Object(serde_json::Map::new());
        }
        meta["annotations"][ADDRESS_ANNOTATION] = address.into();
        meta["annotations"][CHILD_ANNOTATION] = child.into();
    });
}
