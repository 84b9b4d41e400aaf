//! Every error names the spec field at fault.

mod common;

use drover_render::{RenderError, render, resolve_user_files};
use drover_shared::api::bootstrap::{
    ContentSource, ContentSourceRef, File, IgnitionSpec, IgnitionVariant, Platform, ProvisionerType,
};

fn message(input: &drover_render::BootstrapInput) -> String {
    render(input).unwrap_err().to_string()
}

#[test]
fn download_scheme() {
    let mut i = common::worker();
    i.download_url = "ftp://example.com/k0s".into();
    assert_eq!(
        message(&i),
        "spec.downloadURL: unsupported URL scheme 'ftp' (use http, https or oci)"
    );
    // Not a URL at all: k0smotron's echo quirk, not an error.
    i.download_url = ":bad".into();
    let out = String::from_utf8(render(&i).unwrap().value).unwrap();
    assert!(
        out.contains("  - 'echo ''Invalid download URL: :bad'''\n"),
        "{out}"
    );
}

#[test]
fn permissions() {
    let mut i = common::worker_files_args();
    i.files[1].permissions = "rw-r--r--".into();
    assert_eq!(
        message(&i),
        "spec.files[1].permissions: 'rw-r--r--' is not an octal file mode such as 0644"
    );
}

#[test]
fn k0s_config_must_be_an_object() {
    let mut i = common::controller_init();
    i.k0s_config = Some(serde_json::json!(["x"]));
    assert!(message(&i).starts_with("spec.k0s:"));
}

#[test]
fn ignition_errors() {
    let mut i = common::worker();
    i.provisioner.format = ProvisionerType::Ignition;
    assert!(message(&i).starts_with("spec.provisioner.ignition:"));
    let spec = |variant, version: &str, extra: &str| {
        Some(IgnitionSpec {
            variant,
            version: version.into(),
            additional_config: extra.into(),
        })
    };
    i.provisioner.ignition = spec(IgnitionVariant::Fcos, "9.9.9", "");
    assert!(message(&i).starts_with("spec.provisioner.ignition.version:"));
    i.provisioner.ignition = spec(IgnitionVariant::Openshift, "4.14.0", "");
    assert!(message(&i).starts_with("spec.provisioner.ignition.variant:"));
    i.provisioner.ignition = spec(
        IgnitionVariant::Fcos,
        "1.5.0",
        "variant: fcos\nversion: 1.4.0\n",
    );
    let err = render(&i).unwrap_err();
    assert!(matches!(err, RenderError::InvalidAdditionalConfig { .. }));
    assert_eq!(
        err.to_string(),
        "spec.provisioner.ignition.additionalConfig: mismatched Ignition versions between initial config (3.4.0) and additional config (3.3.0)"
    );
    i.provisioner.ignition = spec(IgnitionVariant::Fcos, "1.5.0", "variant: fcos\n");
    assert!(message(&i).starts_with("spec.provisioner.ignition.additionalConfig:"));
    i.provisioner.ignition = spec(
        IgnitionVariant::Fcos,
        "1.5.0",
        "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /x\n      contents:\n        local: x\n",
    );
    assert!(message(&i).starts_with(
        "spec.provisioner.ignition.additionalConfig: $.storage.files[0].contents.local"
    ));
}

#[test]
fn windows_is_not_rendered_yet() {
    let mut i = common::worker();
    i.provisioner.platform = Platform::Windows;
    assert!(message(&i).starts_with("spec.provisioner.platform:"));
}

#[test]
fn content_from() {
    let secret = |name: &str| ContentSource {
        secret_ref: Some(ContentSourceRef {
            name: name.into(),
            key: "k".into(),
        }),
        config_map_ref: None,
    };
    let files = vec![
        File {
            path: "/a".into(),
            content: "inline".into(),
            ..Default::default()
        },
        File {
            path: "/b".into(),
            content_from: Some(secret("ok")),
            permissions: "0600".into(),
            ..Default::default()
        },
        File {
            path: "/c".into(),
            content_from: Some(secret("missing")),
            ..Default::default()
        },
    ];
    let resolve = |_: usize, src: &ContentSource| {
        let r = src.secret_ref.as_ref().unwrap();
        if r.name == "ok" {
            Ok("resolved".to_string())
        } else {
            Err(format!("secret {:?} not found", r.name))
        }
    };
    let err = resolve_user_files(&files, resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.files[2].contentFrom: secret \"missing\" not found"
    );
    let ok = resolve_user_files(&files[..2], resolve).unwrap();
    assert_eq!(ok[1].content, "resolved");
    assert_eq!(ok[1].permissions, "0600");

    let both = vec![File {
        path: "/d".into(),
        content: "x".into(),
        content_from: Some(secret("ok")),
        ..Default::default()
    }];
    assert!(
        resolve_user_files(&both, resolve)
            .unwrap_err()
            .to_string()
            .starts_with("spec.files[0].contentFrom:")
    );
    let no_path = vec![File::default()];
    assert_eq!(
        resolve_user_files(&no_path, resolve)
            .unwrap_err()
            .to_string(),
        "spec.files[0].path: a file needs a path"
    );
}
