//! The one error type of the crate.

use thiserror::Error;

/// Why bootstrap data could not be rendered.
///
/// Every variant names the spec field at fault (`field`), in the path form a
/// user sees in `kubectl explain` (for example `spec.downloadURL` or
/// `spec.files[2].contentFrom`), so the handler can copy the message into a
/// `DataSecretAvailable=False` condition verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    /// `spec.downloadURL` uses a scheme other than `http`, `https` or `oci`.
    #[error("{field}: unsupported URL scheme '{scheme}' (use http, https or oci)")]
    UnsupportedDownloadScheme {
        /// Always `spec.downloadURL`.
        field: &'static str,
        /// The scheme found.
        scheme: String,
    },
    /// A file's `permissions` is not an octal mode such as `0644`.
    #[error("{field}: '{value}' is not an octal file mode such as 0644")]
    InvalidPermissions {
        /// For example `spec.files[1].permissions`.
        field: String,
        /// The value found.
        value: String,
    },
    /// A file has both or neither of `content` and `contentFrom`, or its
    /// `contentFrom` could not be resolved (the reason comes from the resolver).
    #[error("{field}: {reason}")]
    FileContent {
        /// For example `spec.files[2].contentFrom`.
        field: String,
        /// What went wrong.
        reason: String,
    },
    /// A file has an empty `path`.
    #[error("{field}: a file needs a path")]
    MissingFilePath {
        /// For example `spec.files[0].path`.
        field: String,
    },
    /// `spec.k0s` is not a JSON object.
    #[error("{field}: the k0s ClusterConfig must be an object")]
    InvalidK0sConfig {
        /// Always `spec.k0s`.
        field: &'static str,
    },
    /// `type: ignition` without `spec.provisioner.ignition`, or a variant or
    /// version Butane does not know (or that drover does not map, like
    /// `openshift`, whose output is a MachineConfig, not an Ignition config).
    #[error("{field}: {reason}")]
    UnsupportedIgnition {
        /// `spec.provisioner.ignition`, `.variant` or `.version`.
        field: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// `spec.provisioner.ignition.additionalConfig` is not a Butane document
    /// drover can translate, or targets another Ignition spec version than the
    /// generated config.
    #[error("{field}: {reason}")]
    InvalidAdditionalConfig {
        /// Always `spec.provisioner.ignition.additionalConfig`.
        field: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A controller's `spec.version` is not a `vMAJOR.MINOR.PATCH` version.
    #[error("{field}: '{version}' is not a k0s version such as v1.33.1+k0s.0")]
    InvalidVersion {
        /// Always `spec.version`.
        field: &'static str,
        /// The value found.
        version: String,
    },
    /// A platform drover does not render yet (Windows workers).
    #[error("{field}: platform '{platform}' is not supported by drover yet")]
    UnsupportedPlatform {
        /// Always `spec.provisioner.platform`.
        field: &'static str,
        /// The platform asked for.
        platform: String,
    },
    /// A join token could not be decoded (not base64, not gzip, not a kubeconfig).
    #[error("join token: {0}")]
    InvalidJoinToken(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;
