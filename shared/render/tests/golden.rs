//! Renders every variant and compares it to `testdata/<name>.golden`.
//! `DROVER_UPDATE_GOLDEN=1 cargo test -p drover-render --test golden`
//! rewrites the files instead.

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use drover_render::{BootstrapInput, render};
use drover_shared::api::bootstrap::{IgnitionSpec, IgnitionVariant, ProvisionerType};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    if std::env::var_os("DROVER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with DROVER_UPDATE_GOLDEN=1)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden file; actual:\n{actual}"
    );
}

fn golden(name: &str, input: &BootstrapInput) {
    let out = render(input).unwrap();
    assert_eq!(out.format, input.provisioner.format.as_str());
    let text = String::from_utf8(out.value).unwrap();
    check(&format!("{name}.golden"), &text);
    if out.format == "ignition" {
        // Also keep the embedded configs readable.
        let outer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let merge = outer["ignition"]["config"]["merge"].as_array().unwrap();
        for (i, m) in merge.iter().enumerate() {
            let src = m["source"].as_str().unwrap();
            let b64 = src.strip_prefix("data:application/json;base64,").unwrap();
            let inner = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            check(
                &format!("{name}.merge{i}.json"),
                &String::from_utf8(inner).unwrap(),
            );
        }
    }
}

fn ignition(input: &mut BootstrapInput, additional: &str) {
    input.provisioner.format = ProvisionerType::Ignition;
    input.provisioner.ignition = Some(IgnitionSpec {
        variant: IgnitionVariant::Fcos,
        version: "1.5.0".into(),
        additional_config: additional.into(),
    });
}

#[test]
fn worker_default() {
    golden("worker_default", &common::worker());
}

#[test]
fn worker_files_args() {
    golden("worker_files_args", &common::worker_files_args());
}

#[test]
fn worker_use_system_hostname() {
    let mut i = common::worker();
    i.use_system_hostname = true;
    golden("worker_use_system_hostname", &i);
}

#[test]
fn worker_custom_url() {
    let mut i = common::worker();
    i.download_url = "https://mirror.example.com/k0s/v1.33.1+k0s.0/k0s-amd64".into();
    i.install_dir = "/opt/bin".into();
    golden("worker_custom_url", &i);
}

#[test]
fn worker_oci() {
    let mut i = common::worker();
    i.download_url = "oci://registry.example.com/k0s/k0s-amd64@sha256:0123abcd".into();
    golden("worker_oci", &i);
}

#[test]
fn worker_preinstalled() {
    let mut i = common::worker();
    i.pre_installed_k0s = true;
    i.download_url = "ftp://ignored.example.com".into();
    golden("worker_preinstalled", &i);
}

#[test]
fn worker_custom_user_data() {
    let mut i = common::worker();
    i.custom_user_data = Some("runcmd:\n  - echo 'custom cloud init'\n".into());
    golden("worker_custom_user_data", &i);
}

#[test]
fn worker_cloud_init_vars() {
    let mut i = common::worker();
    i.custom_user_data = Some(
        "runcmd:\n  - {{ k0smotron_k0sDownloadCommands }}\n  - {{ k0smotron_k0sInstallCommand }}\n  - {{ k0smotron_k0sStartCommand }}\n".into(),
    );
    i.cloud_init_vars = true;
    golden("worker_cloud_init_vars", &i);
}

#[test]
fn controller_init() {
    golden("controller_init", &common::controller_init());
}

#[test]
fn controller_join() {
    golden("controller_join", &common::controller_join());
}

#[test]
fn worker_ignition() {
    let mut i = common::worker_files_args();
    ignition(&mut i, "");
    golden("worker_ignition", &i);
}

#[test]
fn worker_ignition_additional_config() {
    let mut i = common::worker();
    ignition(
        &mut i,
        "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n      ssh_authorized_keys:\n        - ssh-ed25519 AAAAC3Nza drover@example\nstorage:\n  files:\n    - path: /etc/hostname\n      mode: 420\n      contents:\n        inline: md-0-x7k2p\n",
    );
    golden("worker_ignition_additional_config", &i);
}

#[test]
fn worker_powershell() {
    let mut i = common::worker_files_args();
    i.provisioner.format = ProvisionerType::Powershell;
    i.custom_user_data = Some("Write-Host \"done\"\r\n".into());
    golden("worker_powershell", &i);
}

#[test]
fn worker_powershell_xml() {
    let mut i = common::worker();
    i.provisioner.format = ProvisionerType::PowershellXml;
    golden("worker_powershell_xml", &i);
}

#[test]
fn worker_ingress() {
    let mut i = common::worker();
    i.ingress = Some(drover_render::IngressCerts {
        ca_crt: common::CA_CRT.into(),
        server_crt: "-----BEGIN CERTIFICATE-----\nhaproxy-server\n-----END CERTIFICATE-----\n"
            .into(),
        server_key: "-----BEGIN EC PRIVATE KEY-----\nhaproxy-key\n-----END EC PRIVATE KEY-----\n"
            .into(),
    });
    golden("worker_ingress", &i);
}

#[test]
fn controller_init_k0s_1_31_5() {
    let mut i = common::controller_init();
    i.version = drover_render::normalize_k0s_version("v1.31.5");
    i.working_dir = "/var/lib/drover".into();
    golden("controller_init_k0s_1_31_5", &i);
}

#[test]
fn controller_join_tunnel_proxy() {
    let mut i = common::controller_join();
    i.tunnel = Some(drover_render::tunnel::Tunnel {
        server_address: "203.0.113.7".into(),
        server_port: 31700,
        token: "frp-token-value".into(),
        local_ip: drover_render::tunnel::api_service_ip(&["10.96.0.0/12".into()]),
        mode: drover_shared::api::bootstrap::TunnelingMode::Proxy,
        endpoint_host: "cp.example.com".into(),
    });
    golden("controller_join_tunnel_proxy", &i);
}
