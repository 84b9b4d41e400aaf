//! Pure rendering of k0smotron-compatible bootstrap data.
//!
//! No I/O, no clock, no randomness: the handler resolves Secrets and
//! ConfigMaps, mints the token and picks the init node, then calls [`render`].
//!
//! # Module tour
//!
//! * [`input`]: [`BootstrapInput`], everything the handler resolved — the
//!   [`Role`] (worker, init controller with its [`CapiCertificates`], joining
//!   controller) with its join token, names, version, directories, download
//!   options, args, commands, [`UserFile`]s, the k0s ClusterConfig, custom user
//!   data and the [`Provisioner`] options. [`resolve_user_files`] turns
//!   `spec.files` into user files through a caller-supplied resolver.
//! * [`model`]: [`build`] lays out the abstract model
//!   ([`ProvisionData`]: files, commands, Jinja vars) in k0smotron's order;
//!   [`normalize_k0s_version`] and [`download_commands`] are its pure helpers.
//!   CAPI private keys are written 0600, not 0644 as in k0smotron.
//! * [`cloudinit`], [`ignition`], [`powershell`]: one renderer per
//!   `spec.provisioner.type`, each faithful to k0smotron's layout (YAML with
//!   yaml.v3's scalar styles through the private `yaml` module, Ignition JSON
//!   with Go's escaping through the private `json` module).
//! * [`leave`]: the etcd-leave-on-shutdown helpers controllers get for k0s
//!   older than v1.31.6.
//! * [`tunnel`]: the FRP tunneling manifest of controllers behind NAT.
//! * [`token`]: bootstrap tokens from random bytes, the token Secret's data,
//!   k0s join tokens (kubeconfig → gzip → base64) and their decoder.
//! * [`error`]: [`RenderError`], each variant naming the spec field at fault.
//!
//! ```
//! use drover_render::{BootstrapInput, Role, render};
//!
//! let mut input = BootstrapInput::new(
//!     Role::Worker { join_token: "H4sIAAAA".into() },
//!     "md-0-abcde",
//!     "md-0-abcde",
//! );
//! input.version = drover_render::normalize_k0s_version("v1.33.1-k0s.0");
//! let out = render(&input).unwrap();
//! assert_eq!(out.format, "cloud-config");
//! assert!(out.value.starts_with(b"## template: jinja\n#cloud-config\n"));
//! ```

pub mod cloudinit;
pub mod error;
pub mod ignition;
pub mod input;
mod json;
pub mod leave;
pub mod model;
pub mod powershell;
pub mod token;
pub mod tunnel;
mod yaml;

use drover_shared::api::bootstrap::ProvisionerType;

pub use error::{RenderError, Result};
pub use input::{
    BootstrapInput, CapiCertificates, IngressCerts, KeyPairPem, Provisioner, Role, UserFile,
    resolve_user_files,
};
pub use model::{NodeFile, ProvisionData, build, download_commands, normalize_k0s_version};
pub use token::{
    BootstrapToken, JoinKubeconfig, TokenRole, decode_join_token, decode_join_token_yaml,
    encode_join_token,
};

/// Rendered bootstrap data: the bootstrap Secret's `value` and `format` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The user data bytes.
    pub value: Vec<u8>,
    /// `cloud-config`, `ignition`, `powershell` or `powershell-xml`.
    pub format: &'static str,
}

/// Renders already-built provision data in the input's format.
pub fn render_data(input: &BootstrapInput, data: &ProvisionData) -> Result<Rendered> {
    let format = input.provisioner.format;
    let text = match format {
        ProvisionerType::CloudConfig => cloudinit::render(data, input.cloud_init_vars),
        ProvisionerType::Ignition => ignition::render(data, input.provisioner.ignition.as_ref())?,
        ProvisionerType::Powershell => powershell::render(data),
        ProvisionerType::PowershellXml => powershell::render_xml(data),
    };
    Ok(Rendered {
        value: text.into_bytes(),
        format: format.as_str(),
    })
}

/// Builds the model and renders it: the whole bootstrap data of one Machine.
pub fn render(input: &BootstrapInput) -> Result<Rendered> {
    let data = build(input)?;
    render_data(input, &data)
}
