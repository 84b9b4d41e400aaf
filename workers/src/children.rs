//! Clients for child clusters, made from the CAPI kubeconfig Secret
//! `<cluster>-kubeconfig` (key `value`) in the cluster's namespace.
//!
//! Cached per (namespace, cluster) with the Secret's resourceVersion: after
//! a short TTL the next use reads the Secret again (one GET) and rebuilds
//! the client only if the Secret changed (a rotated kubeconfig). A 401 from
//! a child drops its entry ([`ChildClients::note_error`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::Instant;

use crate::HandlerError;

/// The cache. Its lock is never held across an `.await`.
pub struct ChildClients {
    mgmt: Client,
    ttl: Duration,
    entries: Mutex<HashMap<(String, String), Cached>>,
}

struct Cached {
    client: Client,
    resource_version: String,
    checked: Instant,
}

/// The name of a cluster's kubeconfig Secret.
pub fn secret_name(cluster: &str) -> String {
    format!("{cluster}-kubeconfig")
}

impl ChildClients {
    /// A cache reading Secrets through `mgmt`, re-checking them after `ttl`.
    pub fn new(mgmt: Client, ttl: Duration) -> Self {
        Self {
            mgmt,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client for CAPI cluster `cluster` in `namespace`; an error when its
    /// kubeconfig Secret does not exist.
    pub async fn get(&self, namespace: &str, cluster: &str) -> Result<Client, HandlerError> {
        self.get_opt(namespace, cluster).await?.ok_or_else(|| {
            let name = secret_name(cluster);
            HandlerError::ChildCluster {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                message: format!("Secret {namespace}/{name} not found"),
            }
        })
    }

    /// A client for CAPI cluster `cluster` in `namespace`, or `None` when
    /// its kubeconfig Secret does not exist (yet).
    pub async fn get_opt(
        &self,
        namespace: &str,
        cluster: &str,
    ) -> Result<Option<Client>, HandlerError> {
        let key = (namespace.to_owned(), cluster.to_owned());
        let cached_version = {
            let entries = self.entries();
            match entries.get(&key) {
                Some(c) if c.checked.elapsed() < self.ttl => return Ok(Some(c.client.clone())),
                Some(c) => Some(c.resource_version.clone()),
                None => None,
            }
        };
        let child_error = |message: String| HandlerError::ChildCluster {
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
            message,
        };
        let name = secret_name(cluster);
        let Some(secret) = Api::<Secret>::namespaced(self.mgmt.clone(), namespace)
            .get_opt(&name)
            .await?
        else {
            self.forget(namespace, cluster);
            return Ok(None);
        };
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        if cached_version.as_deref() == Some(version.as_str()) {
            let mut entries = self.entries();
            if let Some(c) = entries.get_mut(&key) {
                c.checked = Instant::now();
                return Ok(Some(c.client.clone()));
            }
        }
        let field = format!("Secret {namespace}/{name} .data.value");
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .ok_or_else(|| HandlerError::bad_input(&field, "missing"))?;
        let yaml = std::str::from_utf8(&bytes.0)
            .map_err(|e| HandlerError::bad_input(&field, format!("not UTF-8: {e}")))?;
        let kubeconfig = Kubeconfig::from_yaml(yaml)
            .map_err(|e| HandlerError::bad_input(&field, format!("not a kubeconfig: {e}")))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| HandlerError::bad_input(&field, format!("unusable kubeconfig: {e}")))?;
        let client = Client::try_from(config)
            .map_err(|e| child_error(format!("cannot make a client: {e}")))?;
        tracing::debug!(namespace, cluster, resource_version = %version, "child cluster client made");
        self.entries().insert(
            key,
            Cached {
                client: client.clone(),
                resource_version: version,
                checked: Instant::now(),
            },
        );
        Ok(Some(client))
    }

    /// Drops the cached client of a cluster.
    pub fn forget(&self, namespace: &str, cluster: &str) {
        self.entries()
            .remove(&(namespace.to_owned(), cluster.to_owned()));
    }

    /// Call with an error from a child's client: a 401 (its credentials
    /// were rotated) drops the cached client, so the next use reads the
    /// Secret again.
    pub fn note_error(&self, namespace: &str, cluster: &str, error: &kube::Error) {
        if matches!(error, kube::Error::Api(s) if s.code == 401) {
            tracing::info!(
                namespace,
                cluster,
                "child cluster refused its credentials; dropping its client"
            );
            self.forget(namespace, cluster);
        }
    }

    /// The resourceVersion of the Secret the cached client was made from.
    pub fn cached_version(&self, namespace: &str, cluster: &str) -> Option<String> {
        self.entries()
            .get(&(namespace.to_owned(), cluster.to_owned()))
            .map(|c| c.resource_version.clone())
    }
}
