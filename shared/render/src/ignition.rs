//! `ignition`: what k0smotron gets from Butane, produced directly.
//!
//! k0smotron builds a Butane document (`storage.files` with inline contents
//! and octal modes, one `k0s-bootstrap.service` oneshot unit running every
//! command through `/bin/sh -c '…'`), translates it with Butane (no automatic
//! compression, pretty JSON) and wraps the result in a small outer Ignition
//! config that merges it as a base64 `data:` URL, followed by the translated
//! `additionalConfig` if any. This module writes the same Ignition JSON
//! without Butane: the field order, the data-URL encoding choice (URL-escaped
//! unless base64 is shorter, `"compression": ""`) and Go's JSON escaping are
//! reproduced so the embedded document matches Butane's byte for byte.
//!
//! `additionalConfig` is translated by a generic mapping that covers plain
//! Butane: `variant`/`version` become `ignition.version`, snake_case keys
//! become camelCase, and `inline` contents become data URLs. Butane sugar that
//! needs more (`local`, `contents_local`, `trees`, `boot_device`, `grub`) is
//! rejected with an error naming `spec.provisioner.ignition.additionalConfig`.
//!
//! The `openshift` variant is not supported: Butane turns it into a
//! MachineConfig, which k0smotron's own wrapper cannot read either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use drover_shared::api::bootstrap::{IgnitionSpec, IgnitionVariant};
use serde_json::{Map, Value};

use crate::error::{RenderError, Result};
use crate::json::{write_go_json, write_go_json_pretty, write_go_str};
use crate::model::{ProvisionData, parse_mode};

/// The systemd unit that runs the bootstrap commands.
pub const UNIT_NAME: &str = "k0s-bootstrap.service";

const ADDITIONAL: &str = "spec.provisioner.ignition.additionalConfig";

/// The Ignition spec version Butane emits for a variant and Butane version.
pub fn ignition_spec_version(variant: &str, version: &str) -> Option<&'static str> {
    Some(match (variant, version) {
        ("fcos", "1.0.0") => "3.0.0",
        ("fcos", "1.1.0") => "3.1.0",
        ("fcos", "1.2.0" | "1.3.0") => "3.2.0",
        ("fcos", "1.4.0") => "3.3.0",
        ("fcos", "1.5.0") => "3.4.0",
        ("fcos", "1.6.0") => "3.5.0",
        ("fcos", "1.7.0") => "3.6.0",
        ("fcos", "1.8.0-experimental") => "3.7.0-experimental",
        ("flatcar", "1.0.0") => "3.3.0",
        ("flatcar", "1.1.0") => "3.4.0",
        ("flatcar", "1.2.0-experimental") => "3.7.0-experimental",
        ("r4e", "1.0.0") => "3.3.0",
        ("r4e", "1.1.0") => "3.4.0",
        ("r4e", "1.2.0-experimental") => "3.7.0-experimental",
        ("fiot", "1.0.0") => "3.4.0",
        ("fiot", "1.1.0-experimental") => "3.7.0-experimental",
        _ => return None,
    })
}

fn variant_name(v: IgnitionVariant) -> &'static str {
    match v {
        IgnitionVariant::Fcos => "fcos",
        IgnitionVariant::Flatcar => "flatcar",
        IgnitionVariant::Openshift => "openshift",
        IgnitionVariant::R4e => "r4e",
        IgnitionVariant::Fiot => "fiot",
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Butane's data URL for inline contents without auto-compression: the
/// URL-escaped form (`data:,…`) unless the base64 form is strictly shorter.
pub fn data_url(contents: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let escaped_len: usize = contents
        .iter()
        .map(|b| if is_unreserved(*b) { 1 } else { 3 })
        .sum::<usize>()
        + 1;
    let b64_len = ";base64,".len() + contents.len().div_ceil(3) * 4;
    let mut out = String::with_capacity(5 + escaped_len.min(b64_len));
    out.push_str("data:");
    if b64_len < escaped_len {
        out.push_str(";base64,");
        STANDARD.encode_string(contents, &mut out);
    } else {
        out.push(',');
        for b in contents {
            if is_unreserved(*b) {
                out.push(*b as char);
            } else {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}

/// The unit file running every command, one `ExecStart` each.
fn unit_contents(commands: &[String]) -> String {
    let mut s = String::with_capacity(256 + commands.iter().map(|c| c.len() + 24).sum::<usize>());
    s.push_str("[Unit]\nDescription=K0s Bootstrap Commands\nAfter=network-online.target\n\n[Service]\nType=oneshot");
    for c in commands {
        s.push_str("\nExecStart=/bin/sh -c '");
        s.push_str(c);
        s.push('\'');
    }
    s.push_str("\nRemainAfterExit=true\n\n[Install]\nWantedBy=multi-user.target");
    s
}

/// The main Ignition config, laid out as Butane's pretty output.
fn main_config(data: &ProvisionData, spec_version: &str) -> Result<String> {
    let mut o = String::with_capacity(1024);
    o.push_str("{\n  \"ignition\": {\n    \"version\": ");
    write_go_str(&mut o, spec_version);
    o.push_str("\n  }");
    if !data.files.is_empty() {
        o.push_str(",\n  \"storage\": {\n    \"files\": [");
        for (i, f) in data.files.iter().enumerate() {
            let mode = parse_mode(f)?;
            if i > 0 {
                o.push(',');
            }
            o.push_str("\n      {\n        \"path\": ");
            write_go_str(&mut o, &f.path);
            o.push_str(",\n        \"contents\": {\n          \"compression\": \"\",\n          \"source\": ");
            write_go_str(&mut o, &data_url(f.content.as_bytes()));
            o.push_str("\n        },\n        \"mode\": ");
            o.push_str(&mode.to_string());
            o.push_str("\n      }");
        }
        o.push_str("\n    ]\n  }");
    }
    if !data.commands.is_empty() {
        o.push_str(",\n  \"systemd\": {\n    \"units\": [\n      {\n        \"contents\": ");
        write_go_str(&mut o, &unit_contents(&data.commands));
        o.push_str(",\n        \"enabled\": true,\n        \"name\": ");
        write_go_str(&mut o, UNIT_NAME);
        o.push_str("\n      }\n    ]\n  }");
    }
    o.push_str("\n}");
    Ok(o)
}

fn snake_to_camel(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn translate_value(v: Value, path: &str) -> Result<Value> {
    match v {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, x)| translate_value(x, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        Value::Object(m) => {
            let mut out = Map::new();
            let has_compression = m.get("compression").is_some_and(|c| !c.is_null());
            for (k, x) in m {
                let here = format!("{path}.{k}");
                match k.as_str() {
                    "local" | "contents_local" | "trees" | "boot_device" | "grub" => {
                        return Err(RenderError::InvalidAdditionalConfig {
                            field: ADDITIONAL,
                            reason: format!(
                                "{here}: this Butane feature is not supported by drover"
                            ),
                        });
                    }
                    "inline" => {
                        let Value::String(s) = x else {
                            return Err(RenderError::InvalidAdditionalConfig {
                                field: ADDITIONAL,
                                reason: format!("{here} must be a string"),
                            });
                        };
                        out.insert("source".into(), Value::String(data_url(s.as_bytes())));
                        if !has_compression {
                            out.insert("compression".into(), Value::String(String::new()));
                        }
                    }
                    _ => {
                        out.insert(snake_to_camel(&k), translate_value(x, &here)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other),
    }
}

/// Translates a Butane YAML document to pretty Ignition JSON; returns it with
/// its Ignition spec version.
pub fn translate_additional_config(butane: &str) -> Result<(String, &'static str)> {
    let bad = |reason: String| RenderError::InvalidAdditionalConfig {
        field: ADDITIONAL,
        reason,
    };
    let doc: Value =
        serde_saphyr::from_str(butane).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let Value::Object(mut m) = doc else {
        return Err(bad("must be a Butane document (a mapping)".into()));
    };
    let variant = m.remove("variant");
    let version = m.remove("version");
    let (Some(Value::String(variant)), Some(Value::String(version))) = (variant, version) else {
        return Err(bad("needs string `variant` and `version` fields".into()));
    };
    let spec = ignition_spec_version(&variant, &version).ok_or_else(|| {
        bad(format!(
            "unsupported Butane variant/version {variant} {version}"
        ))
    })?;
    let Value::Object(mut out) = translate_value(Value::Object(m), "$")? else {
        unreachable!("objects translate to objects")
    };
    let ign = out
        .entry("ignition")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(ign) = ign else {
        return Err(bad("$.ignition must be a mapping".into()));
    };
    ign.insert("version".into(), Value::String(spec.into()));
    let mut s = String::with_capacity(512);
    write_go_json_pretty(&mut s, &Value::Object(out), 0);
    Ok((s, spec))
}

/// Renders the outer Ignition config.
pub fn render(data: &ProvisionData, spec: Option<&IgnitionSpec>) -> Result<String> {
    let spec = spec.ok_or(RenderError::UnsupportedIgnition {
        field: "spec.provisioner.ignition",
        reason: "type ignition needs ignition.variant and ignition.version".into(),
    })?;
    let variant = variant_name(spec.variant);
    if spec.variant == IgnitionVariant::Openshift {
        return Err(RenderError::UnsupportedIgnition {
            field: "spec.provisioner.ignition.variant",
            reason: "openshift produces a MachineConfig, not an Ignition config; use fcos, flatcar, r4e or fiot".into(),
        });
    }
    let spec_version = ignition_spec_version(variant, &spec.version).ok_or_else(|| {
        RenderError::UnsupportedIgnition {
            field: "spec.provisioner.ignition.version",
            reason: format!(
                "Butane has no version {} for variant {variant}",
                spec.version
            ),
        }
    })?;
    let main = main_config(data, spec_version)?;
    let mut merge = vec![source(&main)];
    if !spec.additional_config.is_empty() {
        let (extra, extra_version) = translate_additional_config(&spec.additional_config)?;
        if extra_version != spec_version {
            return Err(RenderError::InvalidAdditionalConfig {
                field: ADDITIONAL,
                reason: format!(
                    "mismatched Ignition versions between initial config ({spec_version}) and additional config ({extra_version})"
                ),
            });
        }
        merge.push(source(&extra));
    }
    let outer = serde_json::json!({
        "ignition": {
            "config": { "merge": merge },
            "version": spec_version,
        }
    });
    let mut out = String::with_capacity(main.len() * 4 / 3 + 128);
    write_go_json(&mut out, &outer);
    Ok(out)
}

fn source(config: &str) -> Value {
    let mut s = String::with_capacity(config.len() * 4 / 3 + 32);
    s.push_str("data:application/json;base64,");
    STANDARD.encode_string(config.as_bytes(), &mut s);
    serde_json::json!({ "source": s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_url_picks_the_shorter_form() {
        assert_eq!(data_url(b"foobar"), "data:,foobar");
        assert_eq!(data_url(b"a b\n"), "data:,a%20b%0A");
        assert_eq!(
            data_url(b"\x00\x01\x02\x03\x04\x05"),
            "data:;base64,AAECAwQF"
        );
    }

    #[test]
    fn additional_config_translates() {
        let (json, v) = translate_additional_config(
            "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys: [ssh-ed25519 AAA]\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hi\n",
        )
        .unwrap();
        assert_eq!(v, "3.4.0");
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["ignition"]["version"], "3.4.0");
        assert_eq!(
            parsed["passwd"]["users"][0]["sshAuthorizedKeys"][0],
            "ssh-ed25519 AAA"
        );
        assert_eq!(
            parsed["storage"]["files"][0]["contents"]["source"],
            "data:,hi"
        );
    }
}
