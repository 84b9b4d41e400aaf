//! Serving simulated clusters over HTTP(S): one loopback port per cluster,
//! many clusters per process, each with its own CA, admin client
//! certificate, bearer token and kubeconfig. Child clusters can be added at
//! run time in code ([`Sim::add_cluster`]), over HTTP (`/kube-sim/v1/clusters`
//! on any cluster's port), or by the [`hosted`](super::hosted) hook when a
//! hosted control plane in the management cluster becomes ready.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::cluster::Cluster;
use super::controllers;
use super::faults::Faults;
use super::http::Handler;
use super::kubeconfig::{self, Credentials};
use super::tls::{ClusterCa, TlsError};
use super::workloads::{self, WorkloadConfig};

/// Errors starting the sim or a cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A cluster of that name exists.
    #[error("cluster {0:?} already exists")]
    Exists(String),
    /// No cluster of that name.
    #[error("no cluster named {0:?}")]
    NoSuchCluster(String),
    /// The name cannot be a cluster name.
    #[error("invalid cluster name {0:?}: use lowercase letters, digits, '-' and '.'")]
    InvalidName(String),
}

/// Settings shared by every cluster of one sim.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Serve HTTPS with client-certificate or token auth (true), or plain HTTP.
    pub tls: bool,
    /// Watch events kept for resumes; older resume points get 410.
    pub history_limit: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// The simulated workload controllers and their delays.
    pub workloads: WorkloadConfig,
    /// Start a child cluster when a hosted control plane becomes ready in
    /// the cluster named here (the management cluster); `None` turns the hook off.
    pub hosted_control_planes_in: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tls: true,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            workloads: WorkloadConfig::default(),
            hosted_control_planes_in: None,
        }
    }
}

/// A running simulated cluster and how to reach it.
pub struct ClusterHandle {
    /// Its name.
    pub name: String,
    /// The cluster itself (for tests and simulated controllers).
    pub cluster: Arc<Cluster>,
    /// `https://127.0.0.1:PORT` or `http://...`.
    pub url: String,
    /// Its listening address.
    pub addr: SocketAddr,
    /// A kubeconfig for its admin (YAML).
    pub kubeconfig: String,
    /// A bearer token it accepts (TLS mode).
    pub token: String,
    /// The CA (TLS mode).
    pub ca: Option<Arc<ClusterCa>>,
    /// Fault injection for this cluster.
    pub faults: Arc<Faults>,
    stop: watch::Sender<bool>,
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) struct SimInner {
    config: SimConfig,
    clusters: Mutex<BTreeMap<String, Arc<ClusterHandle>>>,
    weak: Weak<SimInner>,
}

/// Many simulated clusters in one process. Dropping it stops them all.
pub struct Sim {
    inner: Arc<SimInner>,
}

impl Sim {
    /// A sim with no clusters yet.
    pub fn new(config: SimConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            inner: Arc::new_cyclic(|weak| SimInner {
                config,
                clusters: Mutex::new(BTreeMap::new()),
                weak: weak.clone(),
            }),
        }
    }

    /// The cluster named `name`, if it runs.
    pub fn cluster(&self, name: &str) -> Option<Arc<ClusterHandle>> {
        self.inner.cluster(name)
    }

    /// Names of the running clusters.
    pub fn cluster_names(&self) -> Vec<String> {
        self.inner.names()
    }

    /// Starts a cluster on a free loopback port, with a new CA.
    pub async fn add_cluster(&self, name: &str) -> Result<Arc<ClusterHandle>, SimError> {
        self.inner.add_cluster(name, None)
    }

    /// The settings every cluster of this sim shares.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Starts a cluster whose CA is the given one (for example the CA a
    /// provider generated into `<cluster>-ca`, so certificates it mints work).
    pub async fn add_cluster_with_ca(
        &self,
        name: &str,
        ca: ClusterCa,
    ) -> Result<Arc<ClusterHandle>, SimError> {
        self.inner.add_cluster(name, Some(ca))
    }

    /// Stops a cluster and forgets it.
    pub fn remove_cluster(&self, name: &str) -> Result<(), SimError> {
        self.inner.remove_cluster(name)
    }

    /// Writes every cluster's kubeconfig: `main` to `path`, the others
    /// beside it as `<stem>-<cluster>.<ext>`.
    pub fn write_kubeconfigs(&self, path: &Path, main: &str) -> Result<(), SimError> {
        for name in self.cluster_names() {
            let Some(h) = self.cluster(&name) else {
                continue;
            };
            let file = if name == main {
                path.to_path_buf()
            } else {
                sibling(path, &name)
            };
            write_atomically(&file, &h.kubeconfig)?;
        }
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Handles stop their listeners when dropped.
        self.inner
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl SimInner {
    pub(crate) fn cluster(&self, name: &str) -> Option<Arc<ClusterHandle>> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn remove_cluster(&self, name: &str) -> Result<(), SimError> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| SimError::NoSuchCluster(name.to_owned()))
    }

    /// Synchronous (binding with std) so that the hosted hook, which runs
    /// inside a cluster, can start clusters without a recursive future.
    /// Must be called within a tokio runtime.
    pub(crate) fn add_cluster(
        &self,
        name: &str,
        ca: Option<ClusterCa>,
    ) -> Result<Arc<ClusterHandle>, SimError> {
        if !drover_shared::manifests::is_dns_subdomain(name) {
            return Err(SimError::InvalidName(name.to_owned()));
        }
        if self.cluster(name).is_some() {
            return Err(SimError::Exists(name.to_owned()));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|source| SimError::Io {
                what: format!("binding a port for cluster {name}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        let config = &self.config;
        let (stop, stopped) = watch::channel(false);
        let (cluster, housekeeping) = Cluster::new(name, config.history_limit);
        tokio::spawn(controllers::run(
            cluster.clone(),
            housekeeping,
            stopped.clone(),
        ));
        tokio::spawn(workloads::run(
            cluster.clone(),
            config.workloads.clone(),
            stopped.clone(),
        ));
        if config.hosted_control_planes_in.as_deref() == Some(name) {
            tokio::spawn(super::hosted::run(
                cluster.clone(),
                self.weak.clone(),
                stopped.clone(),
            ));
        }
        let faults = Arc::new(Faults::default());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let handler = Handler {
            cluster: cluster.clone(),
            tokens: Arc::new(vec![token.clone()]),
            require_auth: config.tls,
            faults: faults.clone(),
            bookmark_interval: config.bookmark_interval,
            sim: self.weak.clone(),
        };
        let (url, kubeconfig, ca, tls) = if config.tls {
            let ca = Arc::new(match ca {
                Some(ca) => ca,
                None => ClusterCa::generate(name)?,
            });
            let serving = ca.server_cert(&[name.to_owned()])?;
            let admin = ca.client_cert("kubernetes-admin", "system:masters")?;
            let url = format!("https://{addr}");
            let kc = kubeconfig::render(
                name,
                &url,
                Some(&ca.cert_pem()),
                Credentials::ClientCert {
                    cert_pem: &admin.cert_pem,
                    key_pem: &admin.key_pem,
                },
            );
            let tls = tokio_rustls::TlsAcceptor::from(ca.server_config(&serving)?);
            (url, kc, Some(ca), Some(tls))
        } else {
            let url = format!("http://{addr}");
            let kc = kubeconfig::render(name, &url, None, Credentials::None);
            (url, kc, None, None)
        };
        tokio::spawn(accept_loop(listener, handler, tls, stopped));
        let handle = Arc::new(ClusterHandle {
            name: name.to_owned(),
            cluster,
            url,
            addr,
            kubeconfig,
            token,
            ca,
            faults,
            stop,
        });
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        if clusters.contains_key(name) {
            return Err(SimError::Exists(name.to_owned()));
        }
        clusters.insert(name.to_owned(), handle.clone());
        Ok(handle)
    }
}

/// `dir/kubeconfig-child.yaml` for `dir/kubeconfig.yaml` and cluster `child`.
pub fn sibling(path: &Path, cluster: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".into());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{cluster}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{cluster}"),
    };
    path.with_file_name(name)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), SimError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| SimError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
}

async fn accept_loop(
    listener: TcpListener,
    handler: Handler,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    let svc = service_fn(move |req| {
                        let h = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(h.serve(req, client_cert).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
                }
                None => {
                    let svc = service_fn(move |req| {
                        let h = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(h.serve(req, false).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
                }
            }
        });
    }
}
