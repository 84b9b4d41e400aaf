//! Kubernetes protobuf request bodies, for the few kinds kubectl's typed
//! commands send that way (`kubectl create secret|configmap|namespace|
//! serviceaccount`). The sim answers in JSON, which clients accept; other
//! kinds in protobuf get 415 with a message saying so.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` message
//! (1: typeMeta {1: apiVersion, 2: kind}, 2: raw object bytes). Field
//! numbers below are those of k8s.io/api's generated.proto.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// Not a Kubernetes protobuf envelope, or truncated.
    #[error("malformed protobuf body: {0}")]
    Malformed(&'static str),
    /// A kind the sim does not decode from protobuf.
    #[error(
        "kube-sim decodes protobuf only for Secret, ConfigMap, Namespace and ServiceAccount, not {0}; send JSON (kubectl apply -f)"
    )]
    Unsupported(String),
}

type Fields<'a> = Vec<(u32, Field<'a>)>;

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, ProtobufError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*i)
            .ok_or(ProtobufError::Malformed("truncated varint"))?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtobufError::Malformed("varint too long"))
}

fn fields(b: &[u8]) -> Result<Fields<'_>, ProtobufError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(b, &mut i)?))),
            2 => {
                let len = usize::try_from(varint(b, &mut i)?)
                    .map_err(|_| ProtobufError::Malformed("length"))?;
                let end = i
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or(ProtobufError::Malformed("truncated field"))?;
                out.push((num, Field::Bytes(&b[i..end])));
                i = end;
            }
            1 => i += 8,
            5 => i += 4,
            _ => return Err(ProtobufError::Malformed("unsupported wire type")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// A map entry (1: key, 2: value).
fn entry(b: &[u8]) -> Result<(String, &[u8]), ProtobufError> {
    let mut k = String::new();
    let mut v: &[u8] = &[];
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = String::from_utf8_lossy(x).into_owned(),
            (2, Field::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_string(map: &mut Map<String, Value>, field: &str, b: &[u8]) -> Result<(), ProtobufError> {
    let (k, v) = entry(b)?;
    let m = map.entry(field).or_insert_with(|| json!({}));
    m[k] = string(v);
    Ok(())
}

fn object_meta(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => drop(m.insert("name".into(), string(x))),
            2 => drop(m.insert("generateName".into(), string(x))),
            3 => drop(m.insert("namespace".into(), string(x))),
            6 => drop(m.insert("resourceVersion".into(), string(x))),
            11 => insert_string(&mut m, "labels", x)?,
            12 => insert_string(&mut m, "annotations", x)?,
            13 => {
                let mut r = Map::new();
                for (rn, rf) in fields(x)? {
                    match (rn, rf) {
                        (1, Field::Bytes(v)) => drop(r.insert("kind".into(), string(v))),
                        (3, Field::Bytes(v)) => drop(r.insert("name".into(), string(v))),
                        (4, Field::Bytes(v)) => drop(r.insert("uid".into(), string(v))),
                        (5, Field::Bytes(v)) => drop(r.insert("apiVersion".into(), string(v))),
                        (6, Field::Varint(v)) => {
                            drop(r.insert("controller".into(), (v != 0).into()))
                        }
                        (7, Field::Varint(v)) => {
                            drop(r.insert("blockOwnerDeletion".into(), (v != 0).into()))
                        }
                        _ => {}
                    }
                }
                let list = m.entry("ownerReferences").or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(Value::Object(r));
                }
            }
            14 => {
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(string(x));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or(ProtobufError::Malformed("missing k8s magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => {
                            api_version = String::from_utf8_lossy(v).into_owned()
                        }
                        (2, Field::Bytes(v)) => kind = String::from_utf8_lossy(v).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.clone().into());
    obj.insert("kind".into(), kind.clone().into());
    let supported = matches!(
        kind.as_str(),
        "Secret" | "ConfigMap" | "Namespace" | "ServiceAccount"
    ) && api_version == "v1";
    if !supported {
        return Err(ProtobufError::Unsupported(format!("{api_version} {kind}")));
    }
    for (n, f) in fields(raw)? {
        let Field::Bytes(x) = f else {
            if let (5, Field::Varint(v)) | (4, Field::Varint(v)) = (n, f) {
                let immutable = matches!((kind.as_str(), n), ("Secret", 5) | ("ConfigMap", 4));
                if immutable {
                    obj.insert("immutable".into(), (v != 0).into());
                }
            }
            continue;
        };
        match (kind.as_str(), n) {
            (_, 1) => drop(obj.insert("metadata".into(), object_meta(x)?)),
            ("Secret", 2) | ("ConfigMap", 3) => {
                let field = if kind == "Secret" {
                    "data"
                } else {
                    "binaryData"
                };
                let (k, v) = entry(x)?;
                let m = obj.entry(field).or_insert_with(|| json!({}));
                m[k] = b64.encode(v).into();
            }
            ("Secret", 3) => drop(obj.insert("type".into(), string(x))),
            ("Secret", 4) => insert_string(&mut obj, "stringData", x)?,
            ("ConfigMap", 2) => insert_string(&mut obj, "data", x)?,
            _ => {}
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(num: u32, b: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [
            len_field(1, b"s"),
            len_field(3, b"default"),
            len_field(11, &[len_field(1, b"a"), len_field(2, b"b")].concat()),
        ]
        .concat();
        let raw = [
            len_field(1, &meta),
            len_field(
                2,
                &[len_field(1, b"value"), len_field(2, b"\x00\xff")].concat(),
            ),
            len_field(3, b"Opaque"),
        ]
        .concat();
        let tm = [len_field(1, b"v1"), len_field(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), len_field(1, &tm), len_field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default", "labels": {"a": "b"}}, "data": {"value": "AP8="}, "type": "Opaque"})
        );
        let tm = [len_field(1, b"apps/v1"), len_field(2, b"Deployment")].concat();
        let body = [b"k8s\0".to_vec(), len_field(1, &tm)].concat();
        assert!(matches!(decode(&body), Err(ProtobufError::Unsupported(_))));
        assert!(matches!(decode(b"nope"), Err(ProtobufError::Malformed(_))));
    }
}
