//! What the handler resolves before rendering: [`BootstrapInput`].
//!
//! Everything that needs the cluster (Secrets, ConfigMaps, the CA, the minted
//! token, the oldest control-plane Machine) is looked up by the caller and
//! passed in; this module only holds values and a few pure helpers that turn
//! spec fields into them.

use drover_shared::api::bootstrap::{
    ContentSource, File, IgnitionSpec, Platform, ProvisionerSpec, ProvisionerType,
};

use crate::error::{RenderError, Result};

/// Default directory of the k0s binary (`spec.k0sInstallDir`).
pub const DEFAULT_INSTALL_DIR: &str = "/usr/local/bin";
/// Default directory of `k0s.yaml` and `k0s.token` (`spec.workingDir`).
pub const DEFAULT_WORKING_DIR: &str = "/etc";

/// A private key and its certificate, PEM encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPairPem {
    /// The certificate (or, for the service-account pair, the public key).
    pub cert: String,
    /// The private key; empty for an external CA whose key drover does not hold.
    pub key: String,
}

/// The CAPI cluster certificates written on the first (init) controller, laid
/// out under `/var/lib/k0s/pki` as CAPI does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapiCertificates {
    /// `<cluster>-ca`: `ca.crt`, `ca.key`.
    pub ca: Option<KeyPairPem>,
    /// `<cluster>-sa`: `sa.pub`, `sa.key`.
    pub service_account: Option<KeyPairPem>,
    /// `<cluster>-proxy`: `front-proxy-ca.crt`, `front-proxy-ca.key`.
    pub front_proxy_ca: Option<KeyPairPem>,
    /// `<cluster>-etcd`: `etcd/ca.crt`, `etcd/ca.key`.
    pub etcd_ca: Option<KeyPairPem>,
}

/// The HAProxy certificates a worker of an ingress-mode K0smotronControlPlane
/// needs: `<cluster>-ca` `tls.crt` and `<cluster>-ingress-haproxy`
/// `tls.crt`/`tls.key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngressCerts {
    /// The cluster CA certificate.
    pub ca_crt: String,
    /// The HAProxy server certificate.
    pub server_crt: String,
    /// The HAProxy server key.
    pub server_key: String,
}

/// Which node the data is for, with what only that kind of node needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A worker (K0sWorkerConfig); joins with a `kubelet-bootstrap` token.
    Worker {
        /// The k0s join token (see [`crate::token::encode_join_token`]).
        join_token: String,
    },
    /// The oldest control-plane Machine: gets the cluster CAs, no token.
    ControllerInit {
        /// The CAPI certificates to write.
        certificates: CapiCertificates,
    },
    /// Any other control-plane Machine; joins with a `controller-bootstrap` token.
    ControllerJoin {
        /// The k0s join token (join API URL, port 9443 by default).
        join_token: String,
    },
}

impl Role {
    /// Whether this is a worker.
    pub fn is_worker(&self) -> bool {
        matches!(self, Role::Worker { .. })
    }
}

/// A user file with its content resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserFile {
    /// Absolute path on the node.
    pub path: String,
    /// The content (inline or from `contentFrom`).
    pub content: String,
    /// Octal permissions as given (`""` lets cloud-init pick 0644).
    pub permissions: String,
}

/// Output format options: `spec.provisioner` minus the references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioner {
    /// Output format.
    pub format: ProvisionerType,
    /// Target platform.
    pub platform: Platform,
    /// Butane parameters, for ignition.
    pub ignition: Option<IgnitionSpec>,
}

impl From<&ProvisionerSpec> for Provisioner {
    fn from(spec: &ProvisionerSpec) -> Self {
        Provisioner {
            format: spec.r#type,
            platform: spec.platform,
            ignition: spec.ignition.clone(),
        }
    }
}

/// Everything needed to render one bootstrap data Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapInput {
    /// Worker, init controller or joining controller.
    pub role: Role,
    /// Name of the owner Machine (node label, `--hostname-override`).
    pub machine_name: String,
    /// Name of the bootstrap config (`AUTOPILOT_HOSTNAME` of controllers).
    pub config_name: String,
    /// k0s version, already normalised ([`crate::normalize_k0s_version`]); may be
    /// empty for workers (then get.k0s.sh installs the latest).
    pub version: String,
    /// `spec.k0sInstallDir`; empty means [`DEFAULT_INSTALL_DIR`].
    pub install_dir: String,
    /// `spec.workingDir`; empty means [`DEFAULT_WORKING_DIR`].
    pub working_dir: String,
    /// `spec.downloadURL`; empty means `https://get.k0s.sh`.
    pub download_url: String,
    /// `spec.preInstalledK0s`.
    pub pre_installed_k0s: bool,
    /// `spec.args`.
    pub args: Vec<String>,
    /// `spec.useSystemHostname`.
    pub use_system_hostname: bool,
    /// `spec.preK0sCommands`.
    pub pre_k0s_commands: Vec<String>,
    /// `spec.postK0sCommands`.
    pub post_k0s_commands: Vec<String>,
    /// `spec.files`, resolved ([`resolve_user_files`]).
    pub files: Vec<UserFile>,
    /// `spec.k0s` (controllers only; ignored for workers).
    pub k0s_config: Option<serde_json::Value>,
    /// `spec.provisioner.customUserDataRef`, resolved.
    pub custom_user_data: Option<String>,
    /// `spec.provisioner`.
    pub provisioner: Provisioner,
    /// FRP tunneling (controllers with `spec.tunneling.enabled`; ignored for workers).
    pub tunnel: Option<crate::tunnel::Tunnel>,
    /// Ingress-mode HAProxy certificates (workers only; ignored for controllers).
    pub ingress: Option<IngressCerts>,
    /// The `CloudInitVars` feature gate: with custom user data, cloud-config
    /// output becomes Jinja variables the user data must reference.
    pub cloud_init_vars: bool,
}

impl BootstrapInput {
    /// An input with the given role and names and every option at its default.
    pub fn new(
        role: Role,
        machine_name: impl Into<String>,
        config_name: impl Into<String>,
    ) -> Self {
        BootstrapInput {
            role,
            machine_name: machine_name.into(),
            config_name: config_name.into(),
            version: String::new(),
            install_dir: String::new(),
            working_dir: String::new(),
            download_url: String::new(),
            pre_installed_k0s: false,
            args: Vec::new(),
            use_system_hostname: false,
            pre_k0s_commands: Vec::new(),
            post_k0s_commands: Vec::new(),
            files: Vec::new(),
            k0s_config: None,
            custom_user_data: None,
            provisioner: Provisioner::default(),
            tunnel: None,
            ingress: None,
            cloud_init_vars: false,
        }
    }

    /// The install directory with its default applied.
    pub fn install_dir(&self) -> &str {
        if self.install_dir.is_empty() {
            DEFAULT_INSTALL_DIR
        } else {
            &self.install_dir
        }
    }

    /// `<installDir>/k0s`.
    pub fn k0s_path(&self) -> String {
        join_path(self.install_dir(), "k0s")
    }

    /// `<workingDir>/k0s.token`, `/etc/k0s.token` by default.
    pub fn join_token_path(&self) -> String {
        join_path(self.working_dir(), "k0s.token")
    }

    /// `<workingDir>/k0s.yaml`, `/etc/k0s.yaml` by default.
    pub fn k0s_config_path(&self) -> String {
        join_path(self.working_dir(), "k0s.yaml")
    }

    fn working_dir(&self) -> &str {
        if self.working_dir.is_empty() {
            DEFAULT_WORKING_DIR
        } else {
            &self.working_dir
        }
    }
}

/// `dir/name` without doubling a trailing slash of `dir`.
pub(crate) fn join_path(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    let mut s = String::with_capacity(dir.len() + 1 + name.len());
    s.push_str(dir);
    s.push('/');
    s.push_str(name);
    s
}

/// Turns `spec.files` into [`UserFile`]s, calling `resolve(index, source)` for
/// each `contentFrom` (the handler reads the Secret or ConfigMap key in the
/// Cluster's namespace and returns its value, or a reason such as
/// `key "x" not found in secret "y"`).
///
/// Errors name the field: `spec.files[i].path` when the path is empty,
/// `spec.files[i].contentFrom` when both or neither of `content` and
/// `contentFrom` are set, when the source names neither a Secret nor a
/// ConfigMap, or when `resolve` fails. An empty `content` without
/// `contentFrom` is accepted (an empty file), as k0smotron does.
pub fn resolve_user_files<F>(files: &[File], mut resolve: F) -> Result<Vec<UserFile>>
where
    F: FnMut(usize, &ContentSource) -> std::result::Result<String, String>,
{
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.path.is_empty() {
                return Err(RenderError::MissingFilePath {
                    field: format!("spec.files[{i}].path"),
                });
            }
            let content = match &f.content_from {
                None => f.content.clone(),
                Some(_) if !f.content.is_empty() => {
                    return Err(RenderError::FileContent {
                        field: format!("spec.files[{i}].contentFrom"),
                        reason: "set either content or contentFrom, not both".into(),
                    });
                }
                Some(src) if src.secret_ref.is_none() && src.config_map_ref.is_none() => {
                    return Err(RenderError::FileContent {
                        field: format!("spec.files[{i}].contentFrom"),
                        reason: "no source specified (secretRef or configMapRef)".into(),
                    });
                }
                Some(src) => resolve(i, src).map_err(|reason| RenderError::FileContent {
                    field: format!("spec.files[{i}].contentFrom"),
                    reason,
                })?,
            };
            Ok(UserFile {
                path: f.path.clone(),
                content,
                permissions: f.permissions.clone(),
            })
        })
        .collect()
}
