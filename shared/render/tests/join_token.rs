//! Join tokens: encode, decode, and check the kubeconfig inside.

mod common;

use drover_render::{
    BootstrapToken, JoinKubeconfig, TokenRole, decode_join_token, decode_join_token_yaml,
    encode_join_token,
};

#[test]
fn worker_join_token_round_trips() {
    let token = BootstrapToken::from_random(b"0123456789abcdefghijklmnopqrstuvwxyz").unwrap();
    let encoded = encode_join_token(
        common::CA_CRT.as_bytes(),
        &token.token(),
        "https://10.0.0.10:6443",
        TokenRole::Worker,
    );
    assert!(encoded.starts_with("H4sI"), "gzip magic in base64");
    let kc = decode_join_token(&encoded).unwrap();
    assert_eq!(kc.server, "https://10.0.0.10:6443");
    assert_eq!(kc.ca_cert, common::CA_CRT.as_bytes());
    assert_eq!(kc.user, "kubelet-bootstrap");
    assert_eq!(kc.token, token.token());

    let yaml = decode_join_token_yaml(&encoded).unwrap();
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, common::CA_CRT);
    assert_eq!(
        yaml,
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://10.0.0.10:6443\n  name: k0s\ncontexts:\n- context:\n    cluster: k0s\n    user: kubelet-bootstrap\n  name: k0s\ncurrent-context: k0s\nkind: Config\npreferences: {{}}\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: {}\n",
            token.token()
        )
    );
}

#[test]
fn controller_join_token_and_server_rewrite() {
    let encoded = encode_join_token(
        b"ca",
        "ghijkl.0123456789ghijkl",
        "https://[fd00::1]:9443",
        TokenRole::Controller,
    );
    let mut kc = decode_join_token(&encoded).unwrap();
    assert_eq!(kc.user, "controller-bootstrap");
    assert_eq!(kc.server, "https://[fd00::1]:9443");
    // Ingress: point the token at another server.
    kc.server = "https://api.example.com:443".into();
    let rewritten = kc.encode();
    assert_eq!(
        decode_join_token(&rewritten).unwrap(),
        JoinKubeconfig {
            server: "https://api.example.com:443".into(),
            ca_cert: b"ca".to_vec(),
            user: "controller-bootstrap".into(),
            token: "ghijkl.0123456789ghijkl".into(),
        }
    );
}

#[test]
fn garbage_is_rejected() {
    assert!(decode_join_token("not base64!").is_err());
    assert!(decode_join_token("aGVsbG8=").is_err());
}
