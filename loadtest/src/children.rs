//! A **stand-in for the control-plane providers** (a simulation): what they
//! give a CAPI Cluster that the bootstrap provider needs, until drover's
//! own control-plane handlers exist.
//!
//! For every CAPI Cluster (in the namespace, or all), once:
//!
//! - a CA: Secret `<cluster>-ca` (`tls.crt`, `tls.key`, type
//!   `cluster.x-k8s.io/secret`, label `cluster.x-k8s.io/cluster-name`), or
//!   the one already there;
//! - a child kube-sim cluster named `<cluster>.<namespace>` serving with that
//!   CA, so join tokens carry the CA the child's API really presents;
//! - Secret `<cluster>-kubeconfig` (key `value`: the child's admin
//!   kubeconfig), as CAPI's control planes write it;
//! - `spec.controlPlaneEndpoint` = the child's loopback address, when empty.
//!
//! It does not run k0s, manage certificates other than the CA, rotate
//! anything, or react to a Cluster's deletion (its child cluster lives on
//! until the stand-in stops).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drover_shared::api::capi::Cluster;
use drover_shared::labels;
use futures_util::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sim::Sim;
use crate::sim::hosted::child_name;
use crate::sim::tls::ClusterCa;

/// Settings of the [`ChildClusterStandIn`].
#[derive(Clone, Debug)]
pub struct ChildClusterConfig {
    /// Only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// How often Clusters are listed while new ones appear (doubling up to
    /// 2 s while none do).
    pub poll: Duration,
    /// Clusters provisioned at once.
    pub concurrency: usize,
}

impl Default for ChildClusterConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            poll: Duration::from_millis(250),
            concurrency: 16,
        }
    }
}

/// The longest wait between lists while no new Cluster appears.
const MAX_POLL: Duration = Duration::from_secs(2);

/// The running stand-in.
pub struct ChildClusterStandIn {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    provisioned: watch::Receiver<usize>,
}

impl ChildClusterStandIn {
    /// Starts it: every Cluster seen gets its child cluster and Secrets.
    pub fn start(sim: Arc<Sim>, client: kube::Client, config: ChildClusterConfig) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (count_tx, provisioned) = watch::channel(0usize);
        let task = tokio::spawn(async move {
            let clusters: Api<Cluster> = match &config.namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let mut done: HashSet<(String, String)> = HashSet::new();
            let mut wait = config.poll;
            loop {
                match clusters.list(&ListParams::default()).await {
                    Ok(list) => {
                        let todo: Vec<Cluster> = list
                            .items
                            .into_iter()
                            .filter(|c| !done.contains(&key(c)))
                            .collect();
                        let found = !todo.is_empty();
                        let results: Vec<_> = futures_util::stream::iter(todo)
                            .map(|c| {
                                let sim = sim.clone();
                                let client = client.clone();
                                async move {
                                    let k = key(&c);
                                    (k, provision(&sim, &client, &c).await)
                                }
                            })
                            .buffer_unordered(config.concurrency.max(1))
                            .collect()
                            .await;
                        for (k, r) in results {
                            match r {
                                Ok(()) => {
                                    done.insert(k);
                                }
                                Err(e) => tracing::warn!(
                                    namespace = %k.0, cluster = %k.1, error = %e,
                                    "child cluster stand-in: will retry"
                                ),
                            }
                        }
                        let _ = count_tx.send(done.len());
                        // Listing every Cluster four times a second costs
                        // real CPU in a fleet: back off while nothing is new.
                        wait = if found {
                            config.poll
                        } else {
                            (wait * 2).min(MAX_POLL)
                        };
                    }
                    Err(e) => tracing::warn!(error = %e, "child cluster stand-in: list failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Self {
            stop,
            task,
            provisioned,
        }
    }

    /// How many Clusters have their child cluster so far.
    pub fn provisioned(&self) -> usize {
        *self.provisioned.borrow()
    }

    /// Stops provisioning (child clusters stay up with the [`Sim`]).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn key(c: &Cluster) -> (String, String) {
    (
        c.metadata.namespace.clone().unwrap_or_default(),
        c.metadata.name.clone().unwrap_or_default(),
    )
}

fn capi_secret(name: &str, ns: &str, cluster: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(BTreeMap::from([(
                labels::CLUSTER_NAME.to_owned(),
                cluster.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(labels::CAPI_SECRET_TYPE.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Errors of one provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ChildClusterError {
    /// The management API failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The CA could not be made or read, or the child could not start.
    #[error("{0}")]
    Sim(String),
}

async fn provision(sim: &Sim, client: &kube::Client, c: &Cluster) -> Result<(), ChildClusterError> {
    let (ns, name) = key(c);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let kubeconfig_name = format!("{name}-kubeconfig");
    if secrets.get_metadata_opt(&kubeconfig_name).await?.is_some() {
        return Ok(());
    }
    let child = child_name(&ns, &name);
    let ca_name = format!("{name}-ca");
    let ca = match secrets.get_opt(&ca_name).await? {
        Some(s) => {
            let data = s.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .unwrap_or_default()
            };
            ClusterCa::from_pem(&text("tls.crt"), &text("tls.key"))
                .map_err(|e| ChildClusterError::Sim(format!("Secret {ns}/{ca_name}: {e}")))?
        }
        None => {
            let ca =
                ClusterCa::generate(&child).map_err(|e| ChildClusterError::Sim(e.to_string()))?;
            let s = capi_secret(
                &ca_name,
                &ns,
                &name,
                &[("tls.crt", &ca.cert_pem()), ("tls.key", ca.key_pem())],
            );
            match secrets.create(&PostParams::default(), &s).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            ca
        }
    };
    let handle = match sim.cluster(&child) {
        Some(h) => h,
        None => sim
            .add_cluster_with_ca(&child, ca)
            .await
            .map_err(|e| ChildClusterError::Sim(e.to_string()))?,
    };
    // The kubeconfig before the endpoint, as a control plane provider
    // would: configs woken by the endpoint find everything in place.
    let s = capi_secret(
        &kubeconfig_name,
        &ns,
        &name,
        &[("value", &handle.kubeconfig)],
    );
    match secrets.create(&PostParams::default(), &s).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let endpoint_missing = c
        .spec
        .control_plane_endpoint
        .as_ref()
        .is_none_or(|e| !e.is_valid());
    if endpoint_missing {
        let patch = json!({"spec": {"controlPlaneEndpoint": {
            "host": handle.addr.ip().to_string(), "port": handle.addr.port()}}});
        Api::<Cluster>::namespaced(client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    tracing::debug!(namespace = %ns, cluster = %name, child = %child, "child cluster up");
    Ok(())
}
