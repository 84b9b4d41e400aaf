//! The parts of kube-controller-manager the sim needs: the garbage
//! collector (ownerReferences, Background/Foreground/Orphan) and the
//! namespace controller (a terminating namespace is emptied, then removed).
//!
//! They run as one task per cluster fed by [`Housekeeping`] work that the
//! cluster queues as it writes; like the real controllers they act shortly
//! after the write that caused them, not inside it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::cluster::{Cluster, Housekeeping, Propagation};
use super::store::Resource;

type ObjectRef = (Resource, Option<String>, String);

/// Runs housekeeping until the cluster stops.
pub async fn run(
    cluster: Arc<Cluster>,
    mut rx: mpsc::UnboundedReceiver<Housekeeping>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let work = tokio::select! {
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
            _ = stop.changed() => return,
        };
        let again = match &work {
            Housekeeping::OwnerChanged(uid) => owner_changed(&cluster, uid),
            Housekeeping::CheckOwners(uid) => check_owners(&cluster, uid),
            Housekeeping::NamespaceTerminating(ns) => namespace(&cluster, ns),
            Housekeeping::CrdTerminating(name) => crd(&cluster, name),
        };
        if again {
            cluster.requeue(work, Duration::from_millis(100));
        }
    }
}

fn lookup(cluster: &Cluster, uid: &str) -> Option<(ObjectRef, Arc<Value>)> {
    cluster.with_state(|st| {
        let r = st.by_uid.get(uid)?.clone();
        let obj = st.store.get(&r.0, r.1.as_deref(), &r.2).ok()?;
        Some((r, obj))
    })
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

/// Whether an owner reference names an object that exists: same uid, kind
/// and name, in the dependent's namespace (or cluster-scoped), as the real
/// garbage collector checks. A reference with a right uid but a wrong
/// namespace, kind or name is dangling.
fn owner_exists(cluster: &Cluster, dep: &ObjectRef, oref: &Value) -> bool {
    let Some(uid) = oref["uid"].as_str() else {
        return false;
    };
    let Some((res, ns, name)) = cluster.with_state(|st| st.by_uid.get(uid).cloned()) else {
        return false;
    };
    let kind_ok = cluster
        .registry()
        .all()
        .any(|i| i.resource() == res && oref["kind"].as_str() == Some(i.kind.as_str()));
    let ns_ok = ns.is_none() || ns == dep.1;
    kind_ok && ns_ok && oref["name"].as_str() == Some(name.as_str())
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Drops owner references to `gone` from `dependent`, or deletes it when it
/// has no live owner left. Returns whether the dependent was deleted.
fn collect_dependent(cluster: &Cluster, dep: &ObjectRef, dep_obj: &Value, gone: &str) -> bool {
    let live = owner_refs(dep_obj)
        .iter()
        .any(|o| o["uid"] != gone && owner_exists(cluster, dep, o));
    if live {
        let _ = cluster.controller_update(dep, false, "generic-garbage-collector", |o| {
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != gone);
            }
        });
        false
    } else {
        let _ = cluster.controller_delete(dep, Propagation::Background);
        true
    }
}

fn dependents_of(cluster: &Cluster, uid: &str) -> Vec<(ObjectRef, Arc<Value>)> {
    let uids: Vec<String> = cluster.with_state(|st| {
        st.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    });
    uids.iter().filter_map(|u| lookup(cluster, u)).collect()
}

/// An owner went away or is being deleted. Returns whether to look again later.
fn owner_changed(cluster: &Cluster, uid: &str) -> bool {
    let deps = dependents_of(cluster, uid);
    let Some((owner_ref, owner)) = lookup(cluster, uid) else {
        // Gone: Background collection of its dependents.
        for (r, obj) in deps {
            collect_dependent(cluster, &r, &obj, uid);
        }
        return false;
    };
    if owner["metadata"].get("deletionTimestamp").is_none() {
        return false;
    }
    if has_finalizer(&owner, "orphan") {
        for (r, _) in &deps {
            let _ = cluster.controller_update(r, false, "generic-garbage-collector", |o| {
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|x| x["uid"] != uid);
                }
            });
        }
        let _ = cluster.remove_finalizer(&owner_ref, "orphan");
        return false;
    }
    if has_finalizer(&owner, "foregroundDeletion") {
        // Dependents go first (foreground all the way down); the owner
        // waits for those that block its deletion.
        let mut blocking = false;
        for (r, obj) in &deps {
            let blocks = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["uid"] == uid && o["blockOwnerDeletion"] == true);
            if obj["metadata"].get("deletionTimestamp").is_none() {
                let _ = cluster.controller_delete(r, Propagation::Foreground);
            }
            blocking |= blocks
                && lookup(cluster, obj["metadata"]["uid"].as_str().unwrap_or_default()).is_some();
        }
        if !blocking {
            let _ = cluster.remove_finalizer(&owner_ref, "foregroundDeletion");
            return false;
        }
        return true;
    }
    false
}

/// A new object names owners: if none of them exists, it is collected.
fn check_owners(cluster: &Cluster, uid: &str) -> bool {
    let Some((r, obj)) = lookup(cluster, uid) else {
        return false;
    };
    for oref in owner_refs(&obj) {
        if !owner_exists(cluster, &r, &oref) {
            let uid = oref["uid"].as_str().unwrap_or_default().to_owned();
            collect_dependent(cluster, &r, &obj, &uid);
            return false;
        }
    }
    false
}

/// Empties a terminating namespace, then removes it. Returns whether to look again.
fn namespace(cluster: &Cluster, ns: &str) -> bool {
    let contents: Vec<ObjectRef> = cluster.with_state(|st| {
        st.by_uid
            .values()
            .filter(|(_, n, _)| n.as_deref() == Some(ns))
            .cloned()
            .collect()
    });
    for r in &contents {
        let _ = cluster.controller_delete(r, Propagation::Background);
    }
    !cluster.finish_namespace(ns).unwrap_or(false)
}

/// Deletes the custom resources of a CRD being deleted, then releases the
/// CRD's cleanup finalizer. Returns whether to look again.
fn crd(cluster: &Cluster, name: &str) -> bool {
    let crd_ref = (super::resources::crd_resource(), None, name.to_owned());
    let Some(crd) = cluster.with_state(|st| st.store.get(&crd_ref.0, None, name).ok()) else {
        return false;
    };
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let res = Resource::new(group, plural);
    let remaining: Vec<ObjectRef> = cluster.with_state(|st| {
        st.by_uid
            .values()
            .filter(|(r, _, _)| *r == res)
            .cloned()
            .collect()
    });
    for r in &remaining {
        let _ = cluster.controller_delete(r, Propagation::Background);
    }
    if remaining.is_empty() {
        let _ = cluster.remove_finalizer(&crd_ref, super::admission::CRD_CLEANUP_FINALIZER);
        return false;
    }
    true
}
