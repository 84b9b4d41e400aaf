use serde_json::json;

use super::*;

fn schema(v: Value) -> StructuralSchema {
    let props: JSONSchemaProps = serde_json::from_value(v).expect("schema parses");
    StructuralSchema::compile(&props).expect("schema compiles")
}

fn paths(errs: &[FieldError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{} {:?}", e.path, e.kind))
        .collect()
}

#[test]
fn prunes_unknown_fields_but_keeps_object_metadata() {
    let s = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
    );
    let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "1", "b": 2}, "junk": true});
    s.prune(&mut obj, true);
    assert_eq!(
        obj,
        json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "1"}})
    );
}

#[test]
fn preserve_unknown_keeps_everything_below() {
    let s = schema(
        json!({"type": "object", "properties": {"k0s": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}),
    );
    let mut obj = json!({"k0s": {"spec": {"api": {"port": 6443}}}});
    s.prune(&mut obj, false);
    assert_eq!(obj, json!({"k0s": {"spec": {"api": {"port": 6443}}}}));
}

#[test]
fn defaults_apply_top_down_including_inside_defaulted_objects() {
    let s = schema(json!({"type": "object", "properties": {
        "etcd": {"type": "object", "default": {"persistence": {}}, "properties": {
            "image": {"type": "string", "default": "etcd:1"},
            "persistence": {"type": "object", "properties": {"size": {"type": "string", "default": "1Gi"}}}
        }}
    }}));
    let mut obj = json!({});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"etcd": {"image": "etcd:1", "persistence": {"size": "1Gi"}}})
    );
}

#[test]
fn a_null_that_is_not_nullable_is_pruned_then_defaulted() {
    let s = schema(
        json!({"type": "object", "properties": {"port": {"type": "integer", "default": 22}}}),
    );
    let mut obj = json!({"port": null});
    s.process(&mut obj).unwrap();
    assert_eq!(obj, json!({"port": 22}));
}

#[test]
fn reports_required_type_enum_and_pattern_failures_with_paths() {
    let s = schema(
        json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z]+$"},
            "mode": {"type": "string", "enum": ["tunnel", "proxy"]},
            "replicas": {"type": "integer", "format": "int32", "minimum": 1},
            "files": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}}}}
        }}}}),
    );
    let errs = s.validate(&json!({"spec": {"mode": "udp", "replicas": 0, "files": [{"path": 3}]}}));
    assert_eq!(
        paths(&errs),
        [
            "spec.name Required",
            "spec.files[0].path Invalid",
            "spec.mode NotSupported",
            "spec.replicas Invalid",
        ]
    );
    let errs = s.validate(&json!({"spec": {"name": "ABC"}}));
    assert_eq!(
        errs[0].to_string(),
        "spec.name: Invalid value: \"ABC\": should match '^[a-z]+$'"
    );
    assert_eq!(paths(&s.validate(&json!({}))), ["spec Required"]);
}

#[test]
fn int32_range_and_int_or_string() {
    let s = schema(json!({"type": "object", "properties": {
        "n": {"type": "integer", "format": "int32"},
        "q": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    }}));
    assert!(s.validate(&json!({"n": 2147483647, "q": "1Gi"})).is_empty());
    assert!(s.validate(&json!({"q": 5})).is_empty());
    assert_eq!(
        paths(&s.validate(&json!({"n": 2147483648_i64}))),
        ["n Invalid"]
    );
    assert_eq!(paths(&s.validate(&json!({"q": true}))), ["q Invalid"]);
    assert_eq!(paths(&s.validate(&json!({"n": 1.5}))), ["n Invalid"]);
}

#[test]
fn maps_lists_and_property_counts() {
    let s = schema(json!({"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "ep": {"type": "object", "minProperties": 1, "properties": {"host": {"type": "string"}}},
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "claims": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                   "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
    }}));
    let mut obj = json!({"labels": {"a": "b", "c": 1}, "ep": {}, "set": ["x", "x"], "claims": [{"name": "a"}, {"name": "a"}]});
    s.prune(&mut obj, false);
    assert_eq!(
        paths(&s.validate(&obj)),
        [
            "claims Duplicate",
            "ep Invalid",
            "labels.c Invalid",
            "set Duplicate"
        ]
    );
}

#[test]
fn date_time_and_byte_formats() {
    let s = schema(json!({"type": "object", "properties": {
        "t": {"type": "string", "format": "date-time"},
        "b": {"type": "string", "format": "byte"}
    }}));
    assert!(
        s.validate(&json!({"t": "2026-11-23T19:49:51Z", "b": "aGVsbG8="}))
            .is_empty()
    );
    assert!(
        s.validate(&json!({"t": "2026-11-23T19:49:51.123+01:00"}))
            .is_empty()
    );
    assert_eq!(
        paths(&s.validate(&json!({"t": "yesterday", "b": "not base64!"}))),
        ["b Invalid", "t Invalid"]
    );
}

#[test]
fn one_of_any_of_and_not() {
    let s = schema(
        json!({"type": "object", "properties": {"src": {"type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["c"]}
        }}}),
    );
    assert!(s.validate(&json!({"src": {"a": "x"}})).is_empty());
    assert_eq!(
        paths(&s.validate(&json!({"src": {"a": "x", "b": "y"}}))),
        ["src Invalid"]
    );
    assert_eq!(paths(&s.validate(&json!({"src": {}}))), ["src Invalid"]);
}

#[test]
fn bad_schema_patterns_are_reported_at_compile_time() {
    let props: JSONSchemaProps = serde_json::from_value(
        json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "(["}}}),
    )
    .unwrap();
    let err = StructuralSchema::compile(&props).unwrap_err();
    assert_eq!(err.path, "x");
}
