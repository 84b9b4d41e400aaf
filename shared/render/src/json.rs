//! JSON written the way Go's `encoding/json` writes it: keys sorted (maps),
//! HTML-sensitive characters escaped (`<`, `>`, `&` as `\u003c`…), U+2028 and
//! U+2029 escaped, and `MarshalIndent`'s layout for the pretty form.

use serde_json::Value;

/// Appends `s` as a Go-escaped JSON string literal.
pub(crate) fn write_go_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `v` as compact Go-style JSON.
pub(crate) fn write_go_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            // serde_json's map is a BTreeMap here: sorted like Go's maps.
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_str(out, k);
                out.push(':');
                write_go_json(out, x);
            }
            out.push('}');
        }
    }
}

/// Appends `v` as Go `json.MarshalIndent(v, "", "  ")` would, at `depth`.
pub(crate) fn write_go_json_pretty(out: &mut String, v: &Value, depth: usize) {
    fn indent(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_go_json_pretty(out, x, depth + 1);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_go_str(out, k);
                out.push_str(": ");
                write_go_json_pretty(out, x, depth + 1);
            }
            indent(out, depth);
            out.push('}');
        }
        other => write_go_json(out, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut s = String::new();
        write_go_str(&mut s, "a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#);
    }

    #[test]
    fn sorted_compact_and_pretty() {
        let v = serde_json::json!({"b": [1, {"c": true}], "a": {}, "d": []});
        let mut s = String::new();
        write_go_json(&mut s, &v);
        assert_eq!(s, r#"{"a":{},"b":[1,{"c":true}],"d":[]}"#);
        let mut p = String::new();
        write_go_json_pretty(&mut p, &v, 0);
        assert_eq!(
            p,
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"c\": true\n    }\n  ],\n  \"d\": []\n}"
        );
    }
}
