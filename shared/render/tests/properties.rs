//! Property: every valid input renders output that parses back (YAML for
//! cloud-config, JSON for ignition) with the model's files and commands inside.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use drover_render::{BootstrapInput, ProvisionData, Role, UserFile, build, render};
use drover_shared::api::bootstrap::{IgnitionSpec, IgnitionVariant, ProvisionerType};
use proptest::prelude::*;
use serde::Deserialize;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,30}",
        3 => "[ -~\n\t]{0,60}",
        2 => "(true|0644|null|~|- x|a: b|#c|'q'|\"d\"| lead|trail |\n|x\n|\n\ny| \n|[a-z ]{0,5}){1,4}",
        1 => proptest::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter),
    ]
}

fn perms() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0644".into()),
        Just("0600".into()),
        Just("0755".into()),
        Just("4755".into())
    ]
}

fn input() -> impl Strategy<Value = BootstrapInput> {
    let role = prop_oneof![
        "[A-Za-z0-9+/=]{1,80}".prop_map(|t| Role::Worker { join_token: t }),
        Just(Role::ControllerInit {
            certificates: common::certificates()
        }),
        "[A-Za-z0-9+/=]{1,80}".prop_map(|t| Role::ControllerJoin { join_token: t }),
    ];
    let files = proptest::collection::vec(
        ("/[a-z0-9/._-]{1,30}", text(), perms()).prop_map(|(path, content, permissions)| {
            UserFile {
                path,
                content,
                permissions,
            }
        }),
        0..4,
    );
    let url = prop_oneof![
        Just(String::new()),
        Just("https://get.k0s.sh".to_string()),
        "https://[a-z]{1,10}\\.example/k0s",
        "oci://[a-z]{1,10}\\.example/k0s@sha256:[0-9a-f]{8}",
    ];
    (
        role,
        "[a-z0-9-]{1,20}",
        proptest::option::of("v1\\.[0-9]{2}\\.[0-9](-k0s\\.[0-9])?"),
        prop_oneof![Just(String::new()), Just("/opt/bin".to_string())],
        prop_oneof![Just(String::new()), Just("/var/lib/x/".to_string())],
        url,
        any::<bool>(),
        proptest::collection::vec(text(), 0..4),
        (
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec(text(), 0..3),
        ),
        files,
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                role,
                name,
                version,
                install_dir,
                working_dir,
                download_url,
                pre_installed,
                args,
                (pre, post),
                files,
                (k0s, custom, ign),
            )| {
                let mut i = BootstrapInput::new(role, name.clone(), name);
                i.version = version
                    .map(|v| drover_render::normalize_k0s_version(&v))
                    .unwrap_or_default();
                i.install_dir = install_dir;
                i.working_dir = working_dir;
                i.download_url = download_url;
                i.pre_installed_k0s = pre_installed;
                i.args = args;
                i.pre_k0s_commands = pre;
                i.post_k0s_commands = post;
                i.files = files;
                if k0s {
                    i.k0s_config = Some(common::k0s_config());
                }
                if custom {
                    i.custom_user_data = Some("package_update: true\n".into());
                }
                if ign {
                    i.provisioner.format = ProvisionerType::Ignition;
                    i.provisioner.ignition = Some(IgnitionSpec {
                        variant: IgnitionVariant::Flatcar,
                        version: "1.1.0".into(),
                        additional_config: String::new(),
                    });
                }
                i
            },
        )
}

#[derive(Deserialize)]
struct CloudConfig {
    write_files: Vec<WriteFile>,
    runcmd: Vec<String>,
    #[serde(default)]
    package_update: Option<bool>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    content: String,
    permissions: String,
}

fn check_cloud_config(text: &str, data: &ProvisionData, custom: bool) -> Result<(), TestCaseError> {
    prop_assert!(text.starts_with("## template: jinja\n#cloud-config\n"));
    let parsed: CloudConfig =
        serde_saphyr::from_str(text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(parsed.write_files.len(), data.files.len());
    for (w, f) in parsed.write_files.iter().zip(&data.files) {
        prop_assert_eq!(&w.path, &f.path);
        prop_assert_eq!(&w.content, &f.content);
        prop_assert_eq!(&w.permissions, &f.permissions);
    }
    prop_assert_eq!(&parsed.runcmd, &data.commands);
    prop_assert_eq!(parsed.package_update, custom.then_some(true));
    Ok(())
}

fn decode_data_url(src: &str) -> Vec<u8> {
    if let Some(b64) = src.strip_prefix("data:;base64,") {
        return STANDARD.decode(b64).unwrap();
    }
    let esc = src.strip_prefix("data:,").unwrap().as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < esc.len() {
        if esc[i] == b'%' {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&esc[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            out.push(esc[i]);
            i += 1;
        }
    }
    out
}

fn check_ignition(text: &str, data: &ProvisionData) -> Result<(), TestCaseError> {
    let outer: serde_json::Value =
        serde_json::from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&outer["ignition"]["version"], "3.4.0");
    let src = outer["ignition"]["config"]["merge"][0]["source"]
        .as_str()
        .unwrap();
    let main = STANDARD
        .decode(src.strip_prefix("data:application/json;base64,").unwrap())
        .unwrap();
    let main: serde_json::Value =
        serde_json::from_slice(&main).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&main["ignition"]["version"], "3.4.0");
    let files = main["storage"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    prop_assert_eq!(files.len(), data.files.len());
    for (j, f) in files.iter().zip(&data.files) {
        prop_assert_eq!(j["path"].as_str().unwrap(), f.path.as_str());
        let content = decode_data_url(j["contents"]["source"].as_str().unwrap());
        prop_assert_eq!(content, f.content.as_bytes().to_vec());
        let mode = if f.permissions.is_empty() {
            0o644
        } else {
            u32::from_str_radix(&f.permissions, 8).unwrap()
        };
        prop_assert_eq!(j["mode"].as_u64().unwrap(), u64::from(mode));
    }
    let unit = &main["systemd"]["units"][0];
    prop_assert_eq!(&unit["name"], "k0s-bootstrap.service");
    let contents = unit["contents"].as_str().unwrap();
    let mut expected = String::from(
        "[Unit]\nDescription=K0s Bootstrap Commands\nAfter=network-online.target\n\n[Service]\nType=oneshot",
    );
    for c in &data.commands {
        expected.push_str(&format!("\nExecStart=/bin/sh -c '{c}'"));
    }
    expected.push_str("\nRemainAfterExit=true\n\n[Install]\nWantedBy=multi-user.target");
    prop_assert_eq!(contents, expected.as_str());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn renders_parse_back(input in input()) {
        let data = build(&input).unwrap();
        let out = render(&input).unwrap();
        let text = String::from_utf8(out.value).unwrap();
        match out.format {
            "cloud-config" => check_cloud_config(&text, &data, input.custom_user_data.is_some())?,
            "ignition" => check_ignition(&text, &data)?,
            other => prop_assert!(false, "unexpected format {}", other),
        }
        // Every file of the model is present, in order: token/config first.
        let first = data.files.first().map(|f| f.path.clone());
        match &input.role {
            Role::Worker { .. } => prop_assert_eq!(first, Some(input.join_token_path())),
            _ if input.k0s_config.is_some() => prop_assert_eq!(first, Some(input.k0s_config_path())),
            _ => {}
        }
        prop_assert_eq!(data.commands.last().map(String::as_str), Some(drover_render::model::SENTINEL_COMMAND));
    }
}
