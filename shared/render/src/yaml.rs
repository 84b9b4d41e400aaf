//! A tiny YAML scalar emitter that picks the same style as Go's
//! `gopkg.in/yaml.v3` (libyaml rules, unicode on, no line folding), so the
//! cloud-config layout matches k0smotron byte for byte: plain when possible,
//! double quotes for strings that would read back as another type (`"0644"`,
//! `""`, `"true"`), single quotes for strings plain style cannot hold
//! (`': '`, leading `- `, …), literal blocks (`|`, `|-`, `|+`) for multi-line
//! text, and double quotes with escapes for anything else.

/// Does a plain scalar `s` resolve to something other than a string under
/// yaml.v3 (null, bool, int, float, timestamp), or is it a YAML 1.1 bool or a
/// base-60 float yaml.v3 quotes for compatibility?
fn resolves_non_string(s: &str) -> bool {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return true,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return true,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON"
        | "off" | "Off" | "OFF" => return true,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return true,
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return false;
    }
    if is_timestamp(s) {
        return true;
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    is_go_int(&plain) || is_yaml_float(&plain) || is_base60_float(s)
}

/// `strconv.ParseInt(s, 0, 64)`-ish acceptance (overflow is ignored: a long
/// digit string still looks like a number to ParseUint or the float rule).
fn is_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d.to_string(), 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d.to_string(), 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d.to_string(), 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8)
    } else {
        (lower, 10)
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac
        && !f.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or("");
    let hb = head.as_bytes();
    if hb.is_empty()
        || !hb[0].is_ascii_digit()
        || !hb.iter().all(|c| c.is_ascii_digit() || *c == b'_')
    {
        return false;
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let pb = p.as_bytes();
        let ok = match pb.len() {
            1 => pb[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&pb[0]) && pb[1].is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

/// A `YYYY-M-D` date prefix, as yaml.v3's timestamp formats all start with one.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let seg = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < 2 {
            *i += 1;
        }
        *i - start
    };
    if seg(&mut i) == 0 || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    if seg(&mut i) == 0 {
        return false;
    }
    i == b.len() || matches!(b[i], b'T' | b't' | b' ' | b'\t')
}

/// libyaml's printable set, as yaml.v3 tests it (4-byte UTF-8 is not printable).
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

struct Analysis {
    block_plain: bool,
    single: bool,
    block: bool,
}

fn analyze(s: &str) -> Analysis {
    let mut block_indicators = false;
    let mut special = false;
    let mut tabs = false;
    let mut line_breaks = false;
    let mut space_break = false;
    let mut break_space = false;
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_ws = true;
    let mut prev: Option<char> = None;
    let mut iter = s.chars().peekable();
    let mut first = true;
    while let Some(c) = iter.next() {
        let next = iter.peek().copied();
        let followed_by_ws = matches!(next, None | Some(' ' | '\t' | '\n'));
        if first {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
            first = false;
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == '\n' {
            line_breaks = true;
            if prev == Some(' ') {
                space_break = true;
            }
            if next == Some(' ') {
                break_space = true;
            }
        }
        preceded_by_ws = matches!(c, ' ' | '\t' | '\n');
        prev = Some(c);
    }
    let leading_space = s.starts_with(' ');
    let leading_break = s.starts_with('\n');
    let trailing_space = s.ends_with(' ');
    let trailing_break = s.ends_with('\n');

    let mut a = Analysis {
        block_plain: true,
        single: true,
        block: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || tabs || special {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block = false;
    }
    if line_breaks || block_indicators {
        a.block_plain = false;
    }
    a
}

fn push_indent(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push(' ');
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
}

fn write_literal(out: &mut String, s: &str, indent: usize) {
    out.push('|');
    if s.starts_with([' ', '\n']) {
        out.push('2');
    }
    if !s.ends_with('\n') {
        out.push('-');
    } else if s.len() == 1 || s[..s.len() - 1].ends_with('\n') {
        out.push('+');
    }
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            push_indent(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// Writes a block-context string scalar that follows `key:` or `- ` on the
/// current line (a space is written first), ending with a newline. `indent`
/// is the column literal-block content starts at.
pub(crate) fn write_value(out: &mut String, s: &str, indent: usize) {
    out.push(' ');
    let special_break = s.contains(['\u{2028}', '\u{2029}', '\u{85}']);
    if s.contains('\n') && !special_break {
        if analyze(s).block {
            write_literal(out, s, indent);
        } else {
            write_double_quoted(out, s);
            out.push('\n');
        }
        return;
    }
    if special_break || resolves_non_string(s) {
        write_double_quoted(out, s);
    } else {
        let a = analyze(s);
        if a.block_plain {
            out.push_str(s);
        } else if a.single {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        } else {
            write_double_quoted(out, s);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        let mut out = String::new();
        write_value(&mut out, s, 4);
        out
    }

    #[test]
    fn styles_match_yaml_v3() {
        assert_eq!(v("foobar"), " foobar\n");
        assert_eq!(v("0644"), " \"0644\"\n");
        assert_eq!(v(""), " \"\"\n");
        assert_eq!(v("true"), " \"true\"\n");
        assert_eq!(v("yes"), " \"yes\"\n");
        assert_eq!(v("1.5"), " \"1.5\"\n");
        assert_eq!(v("2024-01-02"), " \"2024-01-02\"\n");
        assert_eq!(v("echo 'hello world'"), " echo 'hello world'\n");
        assert_eq!(v("a: b"), " 'a: b'\n");
        assert_eq!(v("- x"), " '- x'\n");
        assert_eq!(v("#x"), " '#x'\n");
        assert_eq!(v("a #b"), " 'a #b'\n");
        assert_eq!(v("a#b"), " a#b\n");
        assert_eq!(v(" lead"), " ' lead'\n");
        assert_eq!(v("it's: x"), " 'it''s: x'\n");
        assert_eq!(v("tab\there"), " \"tab\\there\"\n");
        assert_eq!(v("a\nb\n"), " |\n    a\n    b\n");
        assert_eq!(v("a\nb"), " |-\n    a\n    b\n");
        assert_eq!(v("a\n\nb\n\n"), " |+\n    a\n\n    b\n\n");
        assert_eq!(v(" a\nb"), " |2-\n     a\n    b\n");
        assert_eq!(v("a \nb"), " \"a \\nb\"\n");
        assert_eq!(v("(echo \"x\"; false)"), " (echo \"x\"; false)\n");
    }
}
