//! The abstract model every format renders: files, then commands.
//!
//! [`build`] lays them out in exactly k0smotron's order:
//!
//! * worker: token file (0600), user files, ingress HAProxy certificates;
//!   pre commands, download, ingress `server.pem` assembly, install,
//!   start (`k0sworker` through systemd, OpenRC or SysV), post commands,
//!   sentinel.
//! * controller: k0s config (`k0s.yaml`, JSON, 0644), then the CAPI
//!   certificates (init node) or the token file (joining node), the FRP
//!   tunneling manifest, user files,
//!   the etcd-leave helpers for k0s < v1.31.6; pre commands, download, the
//!   leave service registration (< v1.31.6), install, `k0s start`, post
//!   commands, sentinel.

use crate::error::{RenderError, Result};
use crate::input::{BootstrapInput, CapiCertificates, KeyPairPem, Role};
use crate::json::write_go_json;

/// The command that marks bootstrap success (CAPI sentinel file contract).
pub const SENTINEL_COMMAND: &str =
    "mkdir -p /run/cluster-api && touch /run/cluster-api/bootstrap-success.complete";

/// The default k0s download script.
pub const DEFAULT_DOWNLOAD_URL: &str = "https://get.k0s.sh";

/// The node label carrying the Machine name.
pub const MACHINE_NAME_LABEL: &str = "k0smotron.io/machine-name";

const INGRESS_CA_PATH: &str = "/etc/haproxy/certs/ca.crt";
const INGRESS_CRT_PATH: &str = "/etc/haproxy/certs/server.crt";
const INGRESS_KEY_PATH: &str = "/etc/haproxy/certs/server.key";

/// Where CAPI's certificates go on controllers.
pub const PKI_DIR: &str = "/var/lib/k0s/pki";

const WORKER_START_COMMAND: &str = "(command -v systemctl > /dev/null 2>&1 && systemctl start k0sworker) || \
(command -v rc-service > /dev/null 2>&1 && rc-service k0sworker start) || \
(command -v service > /dev/null 2>&1 && service k0sworker start) || \
(echo \"Not a supported init system\"; false)";

/// A file written on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFile {
    /// Absolute path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Octal permissions, for example `0600`; may be empty for user files.
    pub permissions: String,
    /// Index into `spec.files` for user files (for error messages).
    pub spec_index: Option<usize>,
}

/// A Jinja variable of the `CloudInitVars` mode, in output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarName {
    /// `k0smotron_k0sDownloadCommands`: the download commands joined with ` && `.
    DownloadCommands,
    /// `k0smotron_k0sInstallCommand`.
    InstallCommand,
    /// `k0smotron_k0sStartCommand`.
    StartCommand,
}

impl VarName {
    /// The variable's name in the template.
    pub fn as_str(self) -> &'static str {
        match self {
            VarName::DownloadCommands => "k0smotron_k0sDownloadCommands",
            VarName::InstallCommand => "k0smotron_k0sInstallCommand",
            VarName::StartCommand => "k0smotron_k0sStartCommand",
        }
    }
}

/// Files, commands and the extras some formats use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionData {
    /// Files, in write order.
    pub files: Vec<NodeFile>,
    /// Shell commands, in run order.
    pub commands: Vec<String>,
    /// User data appended by cloud-config and PowerShell.
    pub custom_user_data: Option<String>,
    /// Jinja variables (download, install, start), for `CloudInitVars`.
    pub vars: Vec<(VarName, String)>,
}

/// Normalises a k0s version the way the bootstrap controllers do: the first
/// `-k0s.` becomes `+k0s.` (ClusterClass versions), and `+k0s.0` is appended
/// when no `+k0s.` suffix is present. An empty version stays empty.
///
/// (k0smotron's controller-config path only appends; replacing `-k0s.` there
/// too is harmless and keeps one rule.)
pub fn normalize_k0s_version(version: &str) -> String {
    if version.is_empty() {
        return String::new();
    }
    let v = version.replacen("-k0s.", "+k0s.", 1);
    if v.contains("+k0s.") { v } else { v + "+k0s.0" }
}

/// The k0s download commands (§3.4): none for a pre-installed k0s; the
/// get.k0s.sh script (with `K0S_INSTALL_PATH` and `K0S_VERSION`) by default;
/// `curl -o` + `chmod` for http(s) URLs; `oras blob fetch` for `oci://`.
/// Any other scheme is an error naming `spec.downloadURL`; a string that is
/// not a URL at all becomes an `echo 'Invalid download URL: …'` command, as in
/// k0smotron.
pub fn download_commands(
    pre_installed: bool,
    download_url: &str,
    version: &str,
    install_dir: &str,
) -> Result<Vec<String>> {
    if pre_installed {
        return Ok(Vec::new());
    }
    let install_dir = if install_dir.is_empty() {
        crate::input::DEFAULT_INSTALL_DIR
    } else {
        install_dir
    };
    let bin = format!("{install_dir}/k0s");
    let url = if download_url.is_empty() {
        DEFAULT_DOWNLOAD_URL
    } else {
        download_url
    };
    if url == DEFAULT_DOWNLOAD_URL {
        let mut cmd =
            format!("curl -sSfL --retry 5 {DEFAULT_DOWNLOAD_URL} | K0S_INSTALL_PATH={install_dir}");
        if !version.is_empty() {
            cmd.push_str(" K0S_VERSION=");
            cmd.push_str(version);
        }
        cmd.push_str(" sh");
        return Ok(vec![cmd]);
    }
    let Some(scheme) = url_scheme(url) else {
        return Ok(vec![format!("echo 'Invalid download URL: {url}'")]);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => Ok(vec![
            format!("curl -sSfL --retry 5 {url} -o {bin}"),
            format!("chmod +x {bin}"),
        ]),
        "oci" => {
            // host + path, without the scheme, query or fragment.
            let rest = &url[scheme.len() + 1..];
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let end = rest.find(['?', '#']).unwrap_or(rest.len());
            let reference = &rest[..end];
            Ok(vec![
                "export HOME=/root".to_string(),
                format!("oras blob fetch --output {bin} {reference}"),
                format!("chmod +x {bin}"),
            ])
        }
        _ => Err(RenderError::UnsupportedDownloadScheme {
            field: "spec.downloadURL",
            scheme: scheme.to_string(),
        }),
    }
}

/// The scheme of `url` as Go's `url.Parse` sees it: `None` for an invalid
/// scheme (a colon before any letter) or for control characters; `Some("")`
/// for a relative reference without a scheme.
fn url_scheme(url: &str) -> Option<&str> {
    if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    for (i, c) in url.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return None,
            ':' => return Some(&url[..i]),
            _ => return Some(""),
        }
    }
    Some("")
}

/// k0smotron's argument merge: the worker label first (workers and
/// worker-enabled controllers), other arguments verbatim, and every
/// `--kubelet-extra-args` value (after `=` or a space, quotes stripped) merged
/// behind `--hostname-override=<machine>` into one final
/// `--kubelet-extra-args="…"`.
fn merge_extra_args(
    args: &[String],
    machine_name: &str,
    is_worker: bool,
    use_system_hostname: bool,
) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    if is_worker {
        out.push(format!("--labels={MACHINE_NAME_LABEL}={machine_name}"));
    }
    let mut kubelet: Vec<String> = Vec::new();
    if is_worker && !use_system_hostname {
        kubelet.push(format!("--hostname-override={machine_name}"));
    }
    for arg in args {
        if let Some(rest) = arg.strip_prefix("--kubelet-extra-args") {
            // k0smotron cuts at the first `=` anywhere, so
            // `--kubelet-extra-args '--node-ip=1.2.3.4'` loses `--node-ip=`;
            // drover cuts right after the flag name (same result otherwise).
            let value = rest
                .strip_prefix('=')
                .or_else(|| rest.strip_prefix(' '))
                .map(|after| after.trim_matches(|c| c == '"' || c == '\''));
            kubelet.push(value.unwrap_or(arg).to_string());
        } else {
            out.push(arg.clone());
        }
    }
    if !kubelet.is_empty() {
        out.push(format!("--kubelet-extra-args=\"{}\"", kubelet.join(" ")));
    }
    out
}

/// Whether controller args ask for a kubelet too.
fn worker_enabled(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--enable-worker" || a == "--enable-worker=true" || a == "--single")
}

fn push_key_pair(files: &mut Vec<NodeFile>, pair: &Option<KeyPairPem>, cert: &str, key: &str) {
    let Some(pair) = pair else { return };
    if !pair.cert.is_empty() {
        files.push(NodeFile {
            path: format!("{PKI_DIR}/{cert}"),
            content: pair.cert.clone(),
            permissions: "0644".into(),
            spec_index: None,
        });
    }
    if !pair.key.is_empty() {
        files.push(NodeFile {
            path: format!("{PKI_DIR}/{key}"),
            content: pair.key.clone(),
            // k0smotron writes the keys 0644 (world-readable, inventory §10.4);
            // drover writes them 0600.
            permissions: "0600".into(),
            spec_index: None,
        });
    }
}

/// The CAPI certificate files in CAPI's order (cluster CA, service account,
/// front-proxy CA, etcd CA), each certificate before its key.
///
/// Certificates are written 0644 like k0smotron, but **private keys are
/// written 0600**: k0smotron writes them 0644 (world-readable), a bug drover
/// fixes.
pub fn certificate_files(certs: &CapiCertificates) -> Vec<NodeFile> {
    let mut files = Vec::with_capacity(8);
    push_key_pair(&mut files, &certs.ca, "ca.crt", "ca.key");
    push_key_pair(&mut files, &certs.service_account, "sa.pub", "sa.key");
    push_key_pair(
        &mut files,
        &certs.front_proxy_ca,
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
    );
    push_key_pair(&mut files, &certs.etcd_ca, "etcd/ca.crt", "etcd/ca.key");
    files
}

/// Checks that `permissions` is empty or an octal mode no larger than 07777;
/// returns the mode (0644 for empty).
pub(crate) fn parse_mode(file: &NodeFile) -> Result<u32> {
    if file.permissions.is_empty() {
        return Ok(0o644);
    }
    u32::from_str_radix(&file.permissions, 8)
        .ok()
        .filter(|m| *m <= 0o7777 && !file.permissions.starts_with('+'))
        .ok_or_else(|| RenderError::InvalidPermissions {
            field: match file.spec_index {
                Some(i) => format!("spec.files[{i}].permissions"),
                None => format!("file {}", file.path),
            },
            value: file.permissions.clone(),
        })
}

/// Builds the abstract model from the input, in k0smotron's order.
///
/// Errors: an unsupported `spec.downloadURL` scheme, a non-octal
/// `spec.files[i].permissions`, a `spec.k0s` that is not an object, a
/// Windows platform (not rendered by drover yet).
pub fn build(input: &BootstrapInput) -> Result<ProvisionData> {
    if input.provisioner.platform != drover_shared::api::bootstrap::Platform::Linux {
        return Err(RenderError::UnsupportedPlatform {
            field: "spec.provisioner.platform",
            platform: "windows".into(),
        });
    }
    let mut files = Vec::with_capacity(input.files.len() + 9);
    let k0s = input.k0s_path();
    let mut install = String::with_capacity(256);
    let is_worker = input.role.is_worker();
    let args: Vec<String> = if is_worker {
        // Worker: token, user files.
        if let Role::Worker { join_token } = &input.role {
            files.push(NodeFile {
                path: input.join_token_path(),
                content: join_token.clone(),
                permissions: "0600".into(),
                spec_index: None,
            });
        }
        install.push_str(&k0s);
        install.push_str(" install worker --token-file ");
        install.push_str(&input.join_token_path());
        merge_extra_args(
            &input.args,
            &input.machine_name,
            true,
            input.use_system_hostname,
        )
    } else {
        let mut install_args = input.args.clone();
        if let Some(cfg) = &input.k0s_config {
            if !cfg.is_object() {
                return Err(RenderError::InvalidK0sConfig { field: "spec.k0s" });
            }
            let mut content = String::with_capacity(256);
            write_go_json(&mut content, cfg);
            // Go's json.Encoder (unstructured.MarshalJSON) ends with a newline.
            content.push('\n');
            let path = input.k0s_config_path();
            files.push(NodeFile {
                path: path.clone(),
                content,
                permissions: "0644".into(),
                spec_index: None,
            });
            install_args.push("--config".into());
            install_args.push(path);
        }
        match &input.role {
            Role::ControllerInit { certificates } => {
                files.extend(certificate_files(certificates));
            }
            Role::ControllerJoin { join_token } => files.push(NodeFile {
                path: input.join_token_path(),
                content: join_token.clone(),
                permissions: "0600".into(),
                spec_index: None,
            }),
            Role::Worker { .. } => unreachable!("handled above"),
        }
        if let Some(t) = &input.tunnel {
            files.push(crate::tunnel::file(t));
        }
        install.push_str(&k0s);
        install.push_str(
            " install controller --force --enable-dynamic-config --env AUTOPILOT_HOSTNAME=",
        );
        install.push_str(&input.config_name);
        let mut merged = merge_extra_args(
            &install_args,
            &input.machine_name,
            worker_enabled(&input.args),
            input.use_system_hostname,
        );
        if let Role::ControllerJoin { .. } = input.role {
            merged.push("--token-file".into());
            merged.push(input.join_token_path());
        }
        merged
    };
    for a in &args {
        install.push(' ');
        install.push_str(a);
    }

    for (i, f) in input.files.iter().enumerate() {
        let file = NodeFile {
            path: f.path.clone(),
            content: f.content.clone(),
            permissions: f.permissions.clone(),
            spec_index: Some(i),
        };
        parse_mode(&file)?;
        files.push(file);
    }

    let leave = !is_worker
        && !input.version.is_empty()
        && crate::leave::needs_leave_helpers(&input.version).ok_or_else(|| {
            RenderError::InvalidVersion {
                field: "spec.version",
                version: input.version.clone(),
            }
        })?;
    if leave {
        files.extend(crate::leave::files(&input.working_dir, &k0s));
    }

    let ingress = input.ingress.as_ref().filter(|_| is_worker);
    if let Some(certs) = ingress {
        // k0smotron leaves these permissions empty (cloud-init's 0644, the
        // key included); drover writes the key 0600.
        for (path, content, permissions) in [
            (INGRESS_CA_PATH, &certs.ca_crt, "0644"),
            (INGRESS_CRT_PATH, &certs.server_crt, "0644"),
            (INGRESS_KEY_PATH, &certs.server_key, "0600"),
        ] {
            files.push(NodeFile {
                path: path.into(),
                content: content.clone(),
                permissions: permissions.into(),
                spec_index: None,
            });
        }
    }

    let download = download_commands(
        input.pre_installed_k0s,
        &input.download_url,
        &input.version,
        input.install_dir(),
    )?;
    let start = if is_worker {
        WORKER_START_COMMAND.to_string()
    } else {
        format!("{k0s} start")
    };

    let mut commands = Vec::with_capacity(
        input.pre_k0s_commands.len() + download.len() + input.post_k0s_commands.len() + 3,
    );
    commands.extend(input.pre_k0s_commands.iter().cloned());
    commands.extend(download.iter().cloned());
    if ingress.is_some() {
        commands.push("mkdir -p /etc/haproxy/certs".into());
        commands.push(format!(
            "cat {INGRESS_CRT_PATH} {INGRESS_KEY_PATH} > /etc/haproxy/certs/server.pem"
        ));
        // As k0smotron: the HAProxy container must read it.
        commands.push("chmod 666 /etc/haproxy/certs/server.pem".into());
    }
    if leave {
        commands.extend(crate::leave::commands(&input.working_dir));
    }
    commands.push(install.clone());
    commands.push(start.clone());
    commands.extend(input.post_k0s_commands.iter().cloned());
    commands.push(SENTINEL_COMMAND.to_string());

    let vars = if input.custom_user_data.is_some() {
        vec![
            (VarName::DownloadCommands, download.join(" && ")),
            (VarName::InstallCommand, install),
            (VarName::StartCommand, start),
        ]
    } else {
        Vec::new()
    };

    Ok(ProvisionData {
        files,
        commands,
        custom_user_data: input.custom_user_data.clone(),
        vars,
    })
}
