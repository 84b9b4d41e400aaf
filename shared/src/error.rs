//! The error type of the `drover-shared` crate.

/// Errors of the pure functions in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// YAML could not be rendered or parsed.
    #[error("YAML: {0}")]
    Yaml(String),
    /// JSON could not be rendered or parsed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An object failed validation against its CRD schema; each entry names a field.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<crate::structural::FieldError>),
    /// No CRD is known for this group and kind.
    #[error("no CustomResourceDefinition for kind {kind} in group {group}")]
    UnknownKind {
        /// API group.
        group: String,
        /// Kind.
        kind: String,
    },
}
