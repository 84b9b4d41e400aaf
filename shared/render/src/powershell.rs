//! `powershell` and `powershell-xml`: a script that writes each file through a
//! single-quoted here-string and `[System.IO.File]::WriteAllText` (ASCII,
//! content trimmed), then runs the commands one per line, then the custom user
//! data; line endings normalised to LF. The XML flavour wraps the script in
//! `<powershell>`…`</powershell>` (EC2 user data).

use crate::model::ProvisionData;

/// Go's `filepath.Dir` on a Unix host, after `\` became `/`.
fn dir_of(path: &str) -> String {
    let p = path.replace('\\', "/");
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    clean(dir)
}

/// Go's `path.Clean`.
fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Renders the PowerShell script.
pub fn render(data: &ProvisionData) -> String {
    let mut b = String::with_capacity(1024);
    for f in &data.files {
        b.push_str("\n# --- write_file ---\n");
        b.push_str("New-Item -ItemType Directory -Force -Path \"");
        b.push_str(&dir_of(&f.path).replace('"', "\"\""));
        b.push_str("\" | Out-Null\n");
        let content = normalize_newlines(&f.content);
        b.push_str("$file = @'\n");
        b.push_str(&content);
        if !content.ends_with('\n') {
            b.push('\n');
        }
        b.push_str("'@\n");
        b.push_str("[System.IO.File]::WriteAllText(\n  \"");
        b.push_str(&f.path.replace('"', "\"\""));
        b.push_str("\",\n  $file.Trim(),\n  [System.Text.Encoding]::ASCII\n)\n");
    }
    if !data.commands.is_empty() {
        b.push_str("\n# --- runcmd ---\n");
        for c in &data.commands {
            b.push_str(c);
            b.push('\n');
        }
    }
    if let Some(custom) = &data.custom_user_data {
        b.push_str(custom);
    }
    normalize_newlines(&b)
}

/// Renders the script wrapped in `<powershell>` tags.
pub fn render_xml(data: &ProvisionData) -> String {
    let mut s = String::from("<powershell>\n");
    s.push_str(&render(data));
    s.push_str("</powershell>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_like_go() {
        assert_eq!(dir_of("/etc/k0s.token"), "/etc");
        assert_eq!(dir_of(r"C:\bootstrap\k0s_install.ps1"), "C:/bootstrap");
        assert_eq!(dir_of("file"), ".");
        assert_eq!(dir_of("/k0s"), "/");
        assert_eq!(dir_of("/a//b/../c/x"), "/a/c");
    }
}
