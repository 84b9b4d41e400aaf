//! `cloud-config`: `## template: jinja` and `#cloud-config` headers, then YAML
//! with `write_files` and `runcmd` (yaml.v3 layout, 2-space indent), then
//! custom user data after a blank line and its own `#cloud-config` header.
//!
//! With the `CloudInitVars` feature gate and custom user data, the files and
//! the download/install/start commands are emitted as Jinja `{% set … %}`
//! variables instead, followed directly by the user data, which is expected
//! to use them. (k0smotron writes the variables in Go map order, that is in
//! random order; drover writes download, install, start.)

use crate::model::ProvisionData;
use crate::yaml::write_value;

/// Renders the cloud-config text.
pub fn render(data: &ProvisionData, cloud_init_vars: bool) -> String {
    let mut out = String::with_capacity(estimate(data));
    out.push_str("## template: jinja\n#cloud-config\n");
    let custom = data.custom_user_data.as_deref().filter(|s| !s.is_empty());
    let vars_mode = cloud_init_vars && custom.is_some() && !data.vars.is_empty();
    if vars_mode {
        for (name, value) in &data.vars {
            out.push_str("{% set ");
            out.push_str(name.as_str());
            out.push_str(" = '");
            out.push_str(&value.replace('"', "\\\""));
            out.push_str("' %}\n");
        }
        write_files_vars(&mut out, data);
    } else {
        if data.files.is_empty() {
            out.push_str("write_files: []\n");
        } else {
            out.push_str("write_files:\n");
            for f in &data.files {
                out.push_str("  - path:");
                write_value(&mut out, &f.path, 6);
                out.push_str("    content:");
                write_value(&mut out, &f.content, 6);
                out.push_str("    permissions:");
                write_value(&mut out, &f.permissions, 6);
            }
        }
        if data.commands.is_empty() {
            out.push_str("runcmd: []\n");
        } else {
            out.push_str("runcmd:\n");
            for c in &data.commands {
                out.push_str("  -");
                write_value(&mut out, c, 4);
            }
        }
    }
    if let Some(custom) = custom {
        if !vars_mode {
            out.push_str("\n#cloud-config\n");
        }
        out.push_str(custom);
    }
    out
}

fn estimate(data: &ProvisionData) -> usize {
    let files: usize = data
        .files
        .iter()
        .map(|f| f.path.len() + f.content.len() + f.content.len() / 8 + 64)
        .sum();
    let cmds: usize = data.commands.iter().map(|c| c.len() + 8).sum();
    64 + files + cmds + data.custom_user_data.as_ref().map_or(0, |c| c.len() + 16)
}

/// Go's `%q` body: backslash escapes for quotes, backslashes and control
/// characters; printable Unicode kept.
fn go_quote_body(out: &mut String, s: &str) {
    use std::fmt::Write;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn write_files_vars(out: &mut String, data: &ProvisionData) {
    if data.files.is_empty() {
        return;
    }
    out.push_str("{% set k0smotron_files = [\n");
    let last = data.files.len() - 1;
    for (i, f) in data.files.iter().enumerate() {
        out.push_str("  {\n    \"path\": \"");
        out.push_str(&f.path);
        out.push_str("\",\n    \"content\": \"");
        go_quote_body(out, &f.content);
        out.push_str("\",\n    \"permissions\": \"");
        out.push_str(&f.permissions);
        out.push_str("\"\n");
        out.push_str(if i < last { "  },\n" } else { "  }\n" });
    }
    out.push_str("] %}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeFile, VarName};

    fn sample() -> ProvisionData {
        ProvisionData {
            files: vec![NodeFile {
                path: "/etc/hosts".into(),
                content: "foobar".into(),
                permissions: "0644".into(),
                spec_index: None,
            }],
            commands: vec!["echo 'hello world'".into()],
            custom_user_data: None,
            vars: vec![],
        }
    }

    #[test]
    fn plain_layout() {
        assert_eq!(
            render(&sample(), false),
            "## template: jinja\n#cloud-config\nwrite_files:\n  - path: /etc/hosts\n    content: foobar\n    permissions: \"0644\"\nruncmd:\n  - echo 'hello world'\n"
        );
    }

    #[test]
    fn custom_user_data_appended() {
        let mut d = sample();
        d.custom_user_data = Some("runcmd:\n  - echo 'custom cloud init'\n".into());
        assert!(render(&d, false).ends_with(
            "  - echo 'hello world'\n\n#cloud-config\nruncmd:\n  - echo 'custom cloud init'\n"
        ));
    }

    #[test]
    fn jinja_vars() {
        let mut d = sample();
        d.custom_user_data = Some("runcmd:\n  - echo 'custom cloud init'\n".into());
        d.vars = vec![(VarName::InstallCommand, "k0s \"x\"".into())];
        assert_eq!(
            render(&d, true),
            "## template: jinja\n#cloud-config\n{% set k0smotron_k0sInstallCommand = 'k0s \\\"x\\\"' %}\n{% set k0smotron_files = [\n  {\n    \"path\": \"/etc/hosts\",\n    \"content\": \"foobar\",\n    \"permissions\": \"0644\"\n  }\n] %}\nruncmd:\n  - echo 'custom cloud init'\n"
        );
    }
}
