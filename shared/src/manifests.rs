//! Checking manifests against drover's CRDs, without an API server.
//!
//! [`SchemaRegistry`] compiles every generated CRD once; [`SchemaRegistry::admit`]
//! then prunes, defaults and validates an object exactly as
//! [`crate::structural`] describes. `drover validate` and the example tests use it.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::Error;
use crate::structural::{FieldError, FieldErrorKind, StructuralSchema};

/// Compiled schemas of every CRD drover generates, by group, version and kind.
pub struct SchemaRegistry {
    schemas: HashMap<(String, String, String), StructuralSchema>,
}

impl SchemaRegistry {
    /// Compiles the schemas of [`crate::crds::all_crds`].
    pub fn new() -> Result<Self, crate::structural::SchemaError> {
        let mut schemas = HashMap::new();
        for (_, crd) in crate::crds::all_crds() {
            for v in &crd.spec.versions {
                if let Some(s) = v
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                {
                    let key = (
                        crd.spec.group.clone(),
                        v.name.clone(),
                        crd.spec.names.kind.clone(),
                    );
                    schemas.insert(key, StructuralSchema::compile(s)?);
                }
            }
        }
        Ok(Self { schemas })
    }

    /// Whether drover has a CRD for this `apiVersion` and `kind`.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        let (group, version) = split_api_version(api_version);
        self.schemas
            .contains_key(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }

    /// Prunes, defaults and validates `object` in place. Objects of kinds
    /// drover has no CRD for give [`Error::UnknownKind`].
    pub fn admit(&self, object: &mut Value) -> Result<(), Error> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (group, version) = split_api_version(&api_version);
        let schema = self
            .schemas
            .get(&(group.to_owned(), version.to_owned(), kind.clone()))
            .ok_or_else(|| Error::UnknownKind {
                group: group.to_owned(),
                kind: kind.clone(),
            })?;
        let mut errors = metadata_errors(object);
        if let Err(mut e) = schema.process(object) {
            errors.append(&mut e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }
}

/// Parses a multi-document YAML (or JSON) manifest into objects, skipping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, Error> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| Error::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `group/version` → (group, version); `v1` → ("", "v1").
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The metadata checks an API server makes before the schema: a name (or
/// generateName) that is a DNS subdomain.
fn metadata_errors(object: &Value) -> Vec<FieldError> {
    let meta = object.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let generate_name = meta
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str);
    match (name, generate_name) {
        (None, None) => vec![FieldError {
            path: "metadata.name".into(),
            kind: FieldErrorKind::Required,
            detail: "name or generateName is required".into(),
        }],
        (Some(n), _) if !is_dns_subdomain(n) => vec![FieldError {
            path: "metadata.name".into(),
            kind: FieldErrorKind::Invalid,
            detail: format!(
                "{n:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        }],
        _ => Vec::new(),
    }
}

/// RFC 1123 subdomain, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn admits_and_defaults_a_worker_config() {
        let reg = SchemaRegistry::new().unwrap();
        let mut obj = json!({
            "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
            "kind": "K0sWorkerConfig",
            "metadata": {"name": "w0"},
            "spec": {"version": "v1.33.1+k0s.0", "unknownField": 1, "provisioner": {}}
        });
        reg.admit(&mut obj).unwrap();
        assert_eq!(obj["spec"]["k0sInstallDir"], "/usr/local/bin");
        // Like k0smotron's CRD: no default for the provisioner object itself,
        // but its fields are defaulted once it is there.
        assert_eq!(
            obj["spec"]["provisioner"],
            json!({"type": "cloud-config", "platform": "linux"})
        );
        assert!(
            obj["spec"].get("unknownField").is_none(),
            "unknown fields are pruned"
        );
    }

    #[test]
    fn rejects_bad_enum_and_names_the_field() {
        let reg = SchemaRegistry::new().unwrap();
        let mut obj = json!({
            "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
            "kind": "K0sWorkerConfig",
            "metadata": {"name": "w0"},
            "spec": {"provisioner": {"type": "cloud-init"}}
        });
        let err = reg.admit(&mut obj).unwrap_err().to_string();
        assert!(
            err.starts_with("spec.provisioner.type: Unsupported value: \"cloud-init\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_kinds_and_bad_names_are_errors() {
        let reg = SchemaRegistry::new().unwrap();
        let mut obj =
            json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}});
        assert!(matches!(
            reg.admit(&mut obj),
            Err(Error::UnknownKind { .. })
        ));
        let mut obj = json!({"apiVersion": "k0smotron.io/v1beta2", "kind": "JoinTokenRequest",
            "metadata": {"name": "Bad_Name"}, "spec": {"clusterName": "c"}});
        assert!(
            reg.admit(&mut obj)
                .unwrap_err()
                .to_string()
                .starts_with("metadata.name: Invalid value")
        );
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("a-b.c1"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
