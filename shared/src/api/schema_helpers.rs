//! Small schema functions for fields whose schema cannot be derived.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object that keeps whatever fields it is given
/// (`x-kubernetes-preserve-unknown-fields`), as k0smotron's free-form k0s config.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A Kubernetes quantity (`resource.Quantity`): an integer or a string.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
    })
}
