//! Fixtures shared by the integration tests and the benchmark.
#![allow(dead_code)]

use drover_render::{
    BootstrapInput, CapiCertificates, KeyPairPem, Role, TokenRole, UserFile, encode_join_token,
};

/// A fake CA certificate (not a real key pair).
pub const CA_CRT: &str = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlcm5l\ndGVzMB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAwMFowFTETMBEGA1UEAxMK\n-----END CERTIFICATE-----\n";

fn fake_pem(kind: &str, body: &str) -> String {
    format!("-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n")
}

/// The worker join token used in the goldens.
pub fn worker_token() -> String {
    encode_join_token(
        CA_CRT.as_bytes(),
        "abcdef.0123456789abcdef",
        "https://10.0.0.10:6443",
        TokenRole::Worker,
    )
}

/// A worker named `md-0-x7k2p` with everything at its default.
pub fn worker() -> BootstrapInput {
    let mut i = BootstrapInput::new(
        Role::Worker {
            join_token: worker_token(),
        },
        "md-0-x7k2p",
        "md-0-x7k2p-cfg",
    );
    i.version = drover_render::normalize_k0s_version("v1.33.1-k0s.0");
    i.install_dir = "/usr/local/bin".into();
    i
}

/// A worker with files, args, kubelet extra args and commands.
pub fn worker_files_args() -> BootstrapInput {
    let mut i = worker();
    i.working_dir = "/var/lib/drover".into();
    i.args = vec![
        "--debug".into(),
        "--kubelet-extra-args=\"--max-pods=200\"".into(),
        "--kubelet-extra-args '--node-ip=10.0.0.21'".into(),
        "--labels=tier=gpu".into(),
    ];
    i.pre_k0s_commands = vec![
        "apt-get update && apt-get install -y curl".into(),
        "echo 'starting: k0s'".into(),
    ];
    i.post_k0s_commands = vec!["systemctl status k0sworker --no-pager || true".into()];
    i.files = vec![
        UserFile {
            path: "/etc/motd".into(),
            content: "Welcome to drover\n".into(),
            permissions: "0644".into(),
        },
        UserFile {
            path: "/etc/k0s/containerd.d/registry.toml".into(),
            content: "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n\n# end\n".into(),
            permissions: "0600".into(),
        },
        UserFile {
            path: "/opt/flags".into(),
            content: "true".into(),
            permissions: String::new(),
        },
    ];
    i
}

/// The CAPI certificates of the init controller (fake PEMs).
pub fn certificates() -> CapiCertificates {
    let pair = |name: &str| KeyPairPem {
        cert: fake_pem("CERTIFICATE", &format!("{name}-certificate-body")),
        key: fake_pem("RSA PRIVATE KEY", &format!("{name}-private-key-body")),
    };
    CapiCertificates {
        ca: Some(KeyPairPem {
            cert: CA_CRT.into(),
            key: fake_pem("EC PRIVATE KEY", "cluster-ca-private-key-body"),
        }),
        service_account: Some(KeyPairPem {
            cert: fake_pem("PUBLIC KEY", "sa-public-key-body"),
            key: fake_pem("RSA PRIVATE KEY", "sa-private-key-body"),
        }),
        front_proxy_ca: Some(pair("front-proxy")),
        etcd_ca: Some(pair("etcd")),
    }
}

/// A k0s ClusterConfig.
pub fn k0s_config() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "k0s.k0sproject.io/v1beta1",
        "kind": "ClusterConfig",
        "metadata": {"name": "k0s"},
        "spec": {
            "api": {"externalAddress": "10.0.0.10", "sans": ["10.0.0.10", "cp.example.com"]},
            "network": {"provider": "calico"},
            "storage": {"etcd": {"extraArgs": {"name": "cp-0"}}},
            "telemetry": {"enabled": false}
        }
    })
}

/// The init controller with certificates and a k0s config.
pub fn controller_init() -> BootstrapInput {
    let mut i = BootstrapInput::new(
        Role::ControllerInit {
            certificates: certificates(),
        },
        "cp-0",
        "cp-0",
    );
    i.version = drover_render::normalize_k0s_version("v1.33.1+k0s.0");
    i.install_dir = "/usr/local/bin".into();
    i.k0s_config = Some(k0s_config());
    i.args = vec!["--enable-worker".into(), "--no-taints".into()];
    i
}

/// A joining controller.
pub fn controller_join() -> BootstrapInput {
    let mut i = BootstrapInput::new(
        Role::ControllerJoin {
            join_token: encode_join_token(
                CA_CRT.as_bytes(),
                "ghijkl.0123456789ghijkl",
                "https://10.0.0.10:9443",
                TokenRole::Controller,
            ),
        },
        "cp-1",
        "cp-1",
    );
    i.version = drover_render::normalize_k0s_version("v1.33.1");
    i.install_dir = "/usr/local/bin".into();
    i.k0s_config = Some(k0s_config());
    i.post_k0s_commands = vec!["echo joined".into()];
    i
}
