//! Kubeconfig files for simulated clusters, in the form `kubectl` and
//! `kube::Config` read: one cluster, one user, one context.

use base64::Engine as _;
use serde_json::{Value, json};

/// How the kubeconfig's user authenticates.
pub enum Credentials<'a> {
    /// None (plain HTTP).
    None,
    /// A client certificate and key, PEM.
    ClientCert {
        /// Certificate, PEM.
        cert_pem: &'a str,
        /// Key, PEM.
        key_pem: &'a str,
    },
    /// A bearer token.
    Token(&'a str),
}

/// A kubeconfig (YAML) for `server`, trusting `ca_pem` when given.
pub fn render(name: &str, server: &str, ca_pem: Option<&str>, creds: Credentials<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut cluster = json!({"server": server});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = b64(ca).into();
    }
    let user = match creds {
        Credentials::None => json!({}),
        Credentials::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": b64(cert_pem),
            "client-key-data": b64(key_pem),
        }),
        Credentials::Token(t) => json!({"token": t}),
    };
    let user_name = format!("{name}-admin");
    let doc: Value = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user_name, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    });
    serde_saphyr::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}
