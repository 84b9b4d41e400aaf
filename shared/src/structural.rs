//! OpenAPI v3 structural-schema processing of custom resources, the way a
//! Kubernetes API server applies a CRD's schema on every write:
//!
//! 1. **prune** fields the schema does not name (unless
//!    `x-kubernetes-preserve-unknown-fields`), and `null` where not `nullable`;
//! 2. **default** missing fields from `default`, top-down, so defaults inside a
//!    defaulted object apply too;
//! 3. **validate** types, formats, enums, required fields, lengths, ranges,
//!    patterns, list and map constraints, and the `allOf`/`anyOf`/`oneOf`/`not`
//!    value validations.
//!
//! A [`StructuralSchema`] is compiled once per CRD version (patterns are
//! compiled then), and reused for every object. Errors name the field path the
//! way the API server does: `spec.provisioner.type: Unsupported value: ...`.
//!
//! Not done (a real API server does them): CEL rules (`x-kubernetes-validations`)
//! are not evaluated, and the `metadata` of embedded resources is not validated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::{Map, Value};

/// One validation failure, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, for example `spec.files[0].path`.
    pub path: String,
    /// What kind of failure.
    pub kind: FieldErrorKind,
    /// Detail, as the API server phrases it.
    pub detail: String,
}

/// Kinds of [`FieldError`], named as in `k8s.io/apimachinery` `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// The value has the wrong type, format or range.
    Invalid,
    /// The value is not one of the allowed ones.
    NotSupported,
    /// Too many characters, items or properties.
    TooLong,
    /// Too few items or properties.
    TooShort,
    /// A duplicate in a set or map list.
    Duplicate,
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooShort => "Too short",
            Self::Duplicate => "Duplicate value",
        })
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.kind, self.detail)
    }
}

/// A schema could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schema at {path}: {message}")]
pub struct SchemaError {
    /// Where in the schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    fn matches(self, v: &Value) -> bool {
        match self {
            Self::Object => v.is_object(),
            Self::Array => v.is_array(),
            Self::String => v.is_string(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Number => v.is_number(),
            Self::Boolean => v.is_boolean(),
        }
    }
}

/// A compiled structural schema (one node; children inside).
#[derive(Clone, Debug, Default)]
pub struct StructuralSchema {
    ty: Option<Type>,
    nullable: bool,
    properties: BTreeMap<String, StructuralSchema>,
    additional_properties: Option<Box<StructuralSchema>>,
    items: Option<Box<StructuralSchema>>,
    required: Vec<String>,
    default: Option<Value>,
    enumeration: Vec<Value>,
    pattern: Option<Regex>,
    format: Option<String>,
    min_length: Option<i64>,
    max_length: Option<i64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_items: Option<i64>,
    max_items: Option<i64>,
    unique_items: bool,
    min_properties: Option<i64>,
    max_properties: Option<i64>,
    preserve_unknown: bool,
    int_or_string: bool,
    embedded_resource: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    all_of: Vec<StructuralSchema>,
    any_of: Vec<StructuralSchema>,
    one_of: Vec<StructuralSchema>,
    not: Option<Box<StructuralSchema>>,
}

impl StructuralSchema {
    /// Compiles a CRD version's `openAPIV3Schema`.
    pub fn compile(props: &JSONSchemaProps) -> Result<Self, SchemaError> {
        Self::compile_at(props, "")
    }

    fn compile_at(p: &JSONSchemaProps, path: &str) -> Result<Self, SchemaError> {
        let err = |message: String| SchemaError {
            path: display_path(path),
            message,
        };
        let ty = match p.type_.as_deref() {
            None | Some("") => None,
            Some(t) => Some(Type::parse(t).ok_or_else(|| err(format!("unknown type {t:?}")))?),
        };
        let mut properties = BTreeMap::new();
        for (name, child) in p.properties.iter().flatten() {
            properties.insert(name.clone(), Self::compile_at(child, &join(path, name))?);
        }
        let additional_properties = match &p.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(s)) => {
                Some(Box::new(Self::compile_at(s, &format!("{path}{{}}"))?))
            }
            // `additionalProperties: true` is not allowed in structural schemas;
            // treat it as "keep anything", which is what it would mean.
            Some(JSONSchemaPropsOrBool::Bool(true)) => Some(Box::new(Self {
                preserve_unknown: true,
                ..Self::default()
            })),
            _ => None,
        };
        let items = match &p.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => {
                Some(Box::new(Self::compile_at(s, &format!("{path}[]"))?))
            }
            Some(JSONSchemaPropsOrArray::Schemas(_)) => {
                return Err(err("tuple items are not structural".into()));
            }
            None => None,
        };
        let pattern = match &p.pattern {
            Some(pat) => Some(Regex::new(pat).map_err(|e| err(format!("pattern {pat:?}: {e}")))?),
            None => None,
        };
        let compile_all = |list: &Option<Vec<JSONSchemaProps>>| -> Result<Vec<Self>, SchemaError> {
            list.iter()
                .flatten()
                .map(|s| Self::compile_at(s, path))
                .collect()
        };
        Ok(Self {
            ty,
            nullable: p.nullable.unwrap_or(false),
            properties,
            additional_properties,
            items,
            required: p.required.clone().unwrap_or_default(),
            default: p.default.as_ref().map(|d| d.0.clone()),
            enumeration: p.enum_.iter().flatten().map(|e| e.0.clone()).collect(),
            pattern,
            format: p.format.clone(),
            min_length: p.min_length,
            max_length: p.max_length,
            minimum: p.minimum,
            maximum: p.maximum,
            exclusive_minimum: p.exclusive_minimum.unwrap_or(false),
            exclusive_maximum: p.exclusive_maximum.unwrap_or(false),
            multiple_of: p.multiple_of,
            min_items: p.min_items,
            max_items: p.max_items,
            unique_items: p.unique_items.unwrap_or(false),
            min_properties: p.min_properties,
            max_properties: p.max_properties,
            preserve_unknown: p.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
            int_or_string: p.x_kubernetes_int_or_string.unwrap_or(false),
            embedded_resource: p.x_kubernetes_embedded_resource.unwrap_or(false),
            list_type: p.x_kubernetes_list_type.clone(),
            list_map_keys: p.x_kubernetes_list_map_keys.clone().unwrap_or_default(),
            all_of: compile_all(&p.all_of)?,
            any_of: compile_all(&p.any_of)?,
            one_of: compile_all(&p.one_of)?,
            not: p
                .not
                .as_ref()
                .map(|n| Self::compile_at(n, path))
                .transpose()?
                .map(Box::new),
        })
    }

    /// Prunes, defaults and validates a whole object (with `apiVersion`,
    /// `kind` and `metadata` at its root), as the API server does on a write.
    pub fn process(&self, object: &mut Value) -> Result<(), Vec<FieldError>> {
        self.prune(object, true);
        self.apply_defaults(object);
        let errors = self.validate(object);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Removes fields the schema does not declare. `root` keeps the object
    /// metadata fields every resource has.
    pub fn prune(&self, value: &mut Value, root: bool) {
        match value {
            Value::Object(map) => {
                if self.int_or_string {
                    return;
                }
                let keep_meta = root || self.embedded_resource;
                if let Some(add) = &self.additional_properties {
                    for v in map.values_mut() {
                        add.prune(v, false);
                    }
                    return;
                }
                map.retain(|k, v| {
                    if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        return true;
                    }
                    match self.properties.get(k) {
                        // A null the schema does not allow is dropped, so a default can fill it.
                        Some(child) => !v.is_null() || child.nullable,
                        None => self.preserve_unknown,
                    }
                });
                for (k, v) in map.iter_mut() {
                    if let Some(child) = self.properties.get(k) {
                        child.prune(v, false);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for v in items {
                        item.prune(v, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fills missing fields from their schema defaults, top-down.
    pub fn apply_defaults(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (name, child) in &self.properties {
                    if !map.contains_key(name)
                        && let Some(d) = &child.default
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(name) {
                        child.apply_defaults(v);
                    }
                }
                if let Some(add) = &self.additional_properties {
                    for v in map.values_mut() {
                        add.apply_defaults(v);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for v in items {
                        item.apply_defaults(v);
                    }
                }
            }
            _ => {}
        }
    }

    /// Validates a value (already pruned and defaulted).
    pub fn validate(&self, value: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.validate_at(value, "", &mut errors);
        errors
    }

    fn validate_at(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let mut fail = |kind, detail: String| {
            errs.push(FieldError {
                path: display_path(path),
                kind,
                detail,
            })
        };
        if v.is_null() {
            if !self.nullable && self.ty.is_some() {
                fail(
                    FieldErrorKind::Invalid,
                    format!("null: must be of type {}", self.ty.map_or("", Type::name)),
                );
            }
            return;
        }
        if self.int_or_string {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                fail(
                    FieldErrorKind::Invalid,
                    format!("{}: must be an integer or a string", short(v)),
                );
                return;
            }
        } else if let Some(ty) = self.ty
            && !ty.matches(v)
        {
            fail(
                FieldErrorKind::Invalid,
                format!("{}: must be of type {}", short(v), ty.name()),
            );
            return;
        }
        if !self.enumeration.is_empty() && !self.enumeration.contains(v) {
            let allowed: Vec<String> = self.enumeration.iter().map(|e| e.to_string()).collect();
            fail(
                FieldErrorKind::NotSupported,
                format!("{}: supported values: {}", short(v), allowed.join(", ")),
            );
        }
        match v {
            Value::String(s) => self.validate_string(s, &mut fail),
            Value::Number(n) => self.validate_number(n, &mut fail),
            Value::Array(items) => {
                let n = items.len() as i64;
                if let Some(min) = self.min_items
                    && n < min
                {
                    fail(
                        FieldErrorKind::TooShort,
                        format!("must have at least {min} items"),
                    );
                }
                if let Some(max) = self.max_items
                    && n > max
                {
                    fail(
                        FieldErrorKind::TooLong,
                        format!("must have at most {max} items"),
                    );
                }
                self.validate_list_uniqueness(items, &mut fail);
                if let Some(item) = &self.items {
                    for (i, it) in items.iter().enumerate() {
                        item.validate_at(it, &format!("{path}[{i}]"), errs);
                    }
                }
            }
            Value::Object(map) => self.validate_object(map, path, errs),
            Value::Bool(_) | Value::Null => {}
        }
        self.validate_combinators(v, path, errs);
    }

    fn validate_string(&self, s: &str, fail: &mut impl FnMut(FieldErrorKind, String)) {
        let len = s.chars().count() as i64;
        if let Some(min) = self.min_length
            && len < min
        {
            fail(
                FieldErrorKind::Invalid,
                format!("{s:?}: should be at least {min} chars long"),
            );
        }
        if let Some(max) = self.max_length
            && len > max
        {
            fail(
                FieldErrorKind::TooLong,
                format!("may not be more than {max} bytes"),
            );
        }
        if let Some(re) = &self.pattern
            && !re.is_match(s)
        {
            fail(
                FieldErrorKind::Invalid,
                format!("{s:?}: should match '{}'", re.as_str()),
            );
        }
        if let Some(f) = self.format.as_deref()
            && !self.int_or_string
            && !string_format_ok(f, s)
        {
            fail(
                FieldErrorKind::Invalid,
                format!("{s:?}: must be of format {f}"),
            );
        }
    }

    fn validate_number(
        &self,
        n: &serde_json::Number,
        fail: &mut impl FnMut(FieldErrorKind, String),
    ) {
        let x = n.as_f64().unwrap_or(f64::NAN);
        match self.format.as_deref() {
            Some("int32") if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => {
                fail(
                    FieldErrorKind::Invalid,
                    format!("{n}: must be of format int32"),
                );
            }
            Some("int64") if n.as_i64().is_none() => {
                fail(
                    FieldErrorKind::Invalid,
                    format!("{n}: must be of format int64"),
                );
            }
            _ => {}
        }
        if let Some(min) = self.minimum
            && (x < min || (self.exclusive_minimum && x <= min))
        {
            let op = if self.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            fail(
                FieldErrorKind::Invalid,
                format!("{n}: should be {op} {min}"),
            );
        }
        if let Some(max) = self.maximum
            && (x > max || (self.exclusive_maximum && x >= max))
        {
            let op = if self.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            fail(
                FieldErrorKind::Invalid,
                format!("{n}: should be {op} {max}"),
            );
        }
        if let Some(m) = self.multiple_of
            && m != 0.0
            && (x / m).fract() != 0.0
        {
            fail(
                FieldErrorKind::Invalid,
                format!("{n}: should be a multiple of {m}"),
            );
        }
    }

    fn validate_list_uniqueness(
        &self,
        items: &[Value],
        fail: &mut impl FnMut(FieldErrorKind, String),
    ) {
        match self.list_type.as_deref() {
            Some("set") => {
                let mut seen = BTreeSet::new();
                for it in items {
                    if !seen.insert(it.to_string()) {
                        fail(FieldErrorKind::Duplicate, short(it));
                    }
                }
            }
            Some("map") if !self.list_map_keys.is_empty() => {
                let mut seen = BTreeSet::new();
                for it in items {
                    let key: Vec<String> = self
                        .list_map_keys
                        .iter()
                        .map(|k| it.get(k).map(Value::to_string).unwrap_or_default())
                        .collect();
                    if !seen.insert(key.clone()) {
                        fail(
                            FieldErrorKind::Duplicate,
                            format!("map key {}", key.join(",")),
                        );
                    }
                }
            }
            _ if self.unique_items => {
                let mut seen = BTreeSet::new();
                for it in items {
                    if !seen.insert(it.to_string()) {
                        fail(FieldErrorKind::Duplicate, short(it));
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_object(&self, map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
        let n = map.len() as i64;
        if let Some(min) = self.min_properties
            && n < min
        {
            errs.push(FieldError {
                path: display_path(path),
                kind: FieldErrorKind::Invalid,
                detail: format!("must have at least {min} properties"),
            });
        }
        if let Some(max) = self.max_properties
            && n > max
        {
            errs.push(FieldError {
                path: display_path(path),
                kind: FieldErrorKind::TooLong,
                detail: format!("must have at most {max} properties"),
            });
        }
        for r in &self.required {
            if !map.contains_key(r) {
                errs.push(FieldError {
                    path: join(path, r),
                    kind: FieldErrorKind::Required,
                    detail: String::new(),
                });
            }
        }
        for (k, v) in map {
            if let Some(child) = self.properties.get(k) {
                child.validate_at(v, &join(path, k), errs);
            } else if let Some(add) = &self.additional_properties {
                add.validate_at(v, &join(path, k), errs);
            }
        }
    }

    fn validate_combinators(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        for s in &self.all_of {
            s.validate_at(v, path, errs);
        }
        let passes = |s: &StructuralSchema| {
            let mut e = Vec::new();
            s.validate_at(v, path, &mut e);
            e.is_empty()
        };
        // An int-or-string field carries `anyOf: [integer, string]` only as a
        // marker; its type check already ran above.
        if !self.any_of.is_empty() && !self.int_or_string && !self.any_of.iter().any(passes) {
            errs.push(FieldError {
                path: display_path(path),
                kind: FieldErrorKind::Invalid,
                detail: format!("{}: must validate at least one schema (anyOf)", short(v)),
            });
        }
        if !self.one_of.is_empty() {
            let n = self.one_of.iter().filter(|s| passes(s)).count();
            if n != 1 {
                errs.push(FieldError {
                    path: display_path(path),
                    kind: FieldErrorKind::Invalid,
                    detail: format!(
                        "{}: must validate one and only one schema (oneOf), matched {n}",
                        short(v)
                    ),
                });
            }
        }
        if let Some(not) = &self.not
            && passes(not)
        {
            errs.push(FieldError {
                path: display_path(path),
                kind: FieldErrorKind::Invalid,
                detail: format!("{}: must not validate the schema (not)", short(v)),
            });
        }
    }
}

fn string_format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => is_rfc3339(s),
        "byte" => is_base64(s),
        "int32" | "int64" => s.parse::<i64>().is_ok(),
        // Other formats (uri, hostname, ...) are accepted, as the API server
        // accepts unknown formats.
        _ => true,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
    {
        return false;
    }
    if !digits(17..19) {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

fn is_base64(s: &str) -> bool {
    let trimmed = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - trimmed.len() <= 2
        && trimmed
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

/// A value for an error message, cut short like the API server does.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 64 {
        format!("{}...", s.chars().take(61).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
