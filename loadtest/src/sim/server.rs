//! Serving simulated clusters over HTTP(S): one loopback port per cluster,
//! many clusters per process, each with its own CA, admin client
//! certificate, bearer token and kubeconfig.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tls: true,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
        }
    }
}

/// A running simulated cluster and how to reach it.
pub struct ClusterHandle {
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
}

/// Many simulated clusters in one process. Dropping it stops them all.
pub struct Sim {
    config: SimConfig,
    clusters: Mutex<BTreeMap<String, Arc<ClusterHandle>>>,
    shutdown: watch::Sender<bool>,
}

impl Sim {
    /// A sim with no clusters yet.
    pub fn new(config: SimConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            config,
            clusters: Mutex::new(BTreeMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    /// The cluster named `name`, if it runs.
    pub fn cluster(&self, name: &str) -> Option<Arc<ClusterHandle>> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Names of the running clusters.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Starts a cluster on a free loopback port.
    pub async fn add_cluster(&self, name: &str) -> Result<Arc<ClusterHandle>, SimError> {
        if self.cluster(name).is_some() {
            return Err(SimError::Exists(name.to_owned()));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SimError::Io {
                what: format!("binding a port for cluster {name}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        let (cluster, housekeeping) = Cluster::new(name, self.config.history_limit);
        tokio::spawn(controllers::run(cluster.clone(), housekeeping));
        let faults = Arc::new(Faults::default());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let handler = Handler {
            cluster: cluster.clone(),
            tokens: Arc::new(vec![token.clone()]),
            require_auth: self.config.tls,
            faults: faults.clone(),
            bookmark_interval: self.config.bookmark_interval,
        };
        let (url, kubeconfig, ca, tls) = if self.config.tls {
            let ca = Arc::new(ClusterCa::generate(name)?);
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
        tokio::spawn(accept_loop(
            listener,
            handler,
            tls,
            self.shutdown.subscribe(),
        ));
        let handle = Arc::new(ClusterHandle {
            cluster,
            url,
            addr,
            kubeconfig,
            token,
            ca,
            faults,
        });
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), handle.clone());
        Ok(handle)
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
        let _ = self.shutdown.send(true);
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
    mut shutdown: watch::Receiver<bool>,
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
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let mut stop = shutdown.clone();
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
