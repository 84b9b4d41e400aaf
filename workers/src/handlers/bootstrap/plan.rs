//! The bootstrap handler's pure decisions: gates, the init node, join
//! addresses, token lifetimes, the bootstrap Secret, the conditions and the
//! render input built from a spec. No I/O; every value comes in as an
//! argument (the clock too), so each rule is a unit test.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_render::{BootstrapInput, Provisioner, Rendered, Role, UserFile};
use drover_shared::api::bootstrap::{K0sConfigSpec, K0sWorkerConfigSpec};
use drover_shared::api::capi::{Cluster, Machine};
use drover_shared::api::common::{Condition, ConditionStatus, MachineAddressType, SecretMetadata};
use drover_shared::conditions;
use drover_shared::labels;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// `DataSecretAvailable=True`.
pub const REASON_AVAILABLE: &str = "Available";
/// The Cluster has no control-plane endpoint or is not initialized.
pub const REASON_WAITING_FOR_CONTROL_PLANE: &str = "WaitingForControlPlaneInitialization";
/// A joining controller waits for a running control-plane Machine with an
/// address. (k0smotron spells this reason like the one above, a typo.)
pub const REASON_WAITING_FOR_INFRASTRUCTURE: &str = "WaitingForInfrastructureInitialization";
/// `<cluster>-kubeconfig` does not exist yet.
pub const REASON_WAITING_FOR_KUBECONFIG: &str = "WaitingForClusterKubeconfig";
/// `<cluster>-ca` (or another cluster certificate) does not exist yet.
pub const REASON_WAITING_FOR_CERTIFICATES: &str = "WaitingForCertificates";
/// Bad input or an unresolved reference; the message names the field.
pub const REASON_GENERATION_FAILED: &str = "DataSecretGenerationFailed";
/// The child cluster or the management API failed.
pub const REASON_INTERNAL_ERROR: &str = "InternalError";
/// `Ready` summary reasons (CAPI's).
pub const REASON_READY: &str = "Ready";
/// `Ready=False`.
pub const REASON_NOT_READY: &str = "NotReady";
/// `Paused` reasons (CAPI's).
pub const REASON_PAUSED: &str = "Paused";
/// `Paused=False`.
pub const REASON_NOT_PAUSED: &str = "NotPaused";

/// Label on the bootstrap token Secrets drover mints: the uid of the
/// config they were minted for (a retry reuses the token instead of
/// minting another; deleting the config revokes it).
pub const TOKEN_CONFIG_UID_LABEL: &str = "bootstrap.drover.dev/config-uid";
/// Label naming the management-cluster config (`<namespace>.<name>`, when
/// it fits in a label value).
pub const TOKEN_CONFIG_LABEL: &str = "bootstrap.drover.dev/config";
/// Annotation on the bootstrap data Secret: when the token in it expires
/// (RFC 3339), so keeping the token alive needs the child cluster only
/// when a refresh is due.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "bootstrap.drover.dev/token-expiration";
/// `app.kubernetes.io/managed-by`: which tokens drover may clean up.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "drover";

/// Why a config cannot be generated yet. Not an error: the handler writes
/// the condition and runs again when the watcher reports a change (or
/// after [`Wait::fallback`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The `DataSecretAvailable` reason.
    pub reason: &'static str,
    /// What is awaited.
    pub message: String,
    /// Run again after this long even without a change. Long when the
    /// watcher reports the awaited change (Cluster status, Secrets), short
    /// when it does not (sibling control-plane Machines).
    pub fallback: Duration,
}

/// Fallback of waits the watcher wakes up.
pub const WATCHED_WAIT: Duration = Duration::from_secs(60);
/// Fallback of waits on other Machines (k0smotron polls every 30 s).
pub const POLLED_WAIT: Duration = Duration::from_secs(10);

/// Workers and controllers both need the Cluster's control-plane endpoint;
/// workers also need the control plane initialized
/// (`ControlPlaneInitialized` condition, or v1beta2
/// `status.initialization.controlPlaneInitialized`).
pub fn control_plane_gate(cluster: &Cluster, need_initialized: bool) -> Result<(), Wait> {
    let endpoint = cluster.spec.control_plane_endpoint.as_ref();
    if !endpoint.is_some_and(|e| e.is_valid()) {
        return Err(Wait {
            reason: REASON_WAITING_FOR_CONTROL_PLANE,
            message: "Cluster spec.controlPlaneEndpoint is not set yet".into(),
            fallback: WATCHED_WAIT,
        });
    }
    if need_initialized && !control_plane_initialized(cluster) {
        return Err(Wait {
            reason: REASON_WAITING_FOR_CONTROL_PLANE,
            message:
                "Control plane is not initialized yet (Cluster condition ControlPlaneInitialized)"
                    .into(),
            fallback: WATCHED_WAIT,
        });
    }
    Ok(())
}

/// Whether CAPI reports the Cluster's control plane initialized.
pub fn control_plane_initialized(cluster: &Cluster) -> bool {
    cluster.status.as_ref().is_some_and(|s| {
        conditions::is_true(&s.conditions, conditions::CONTROL_PLANE_INITIALIZED)
            || s.initialization
                .as_ref()
                .and_then(|i| i.control_plane_initialized)
                .unwrap_or(false)
    })
}

/// `https://host:port` of the Cluster's endpoint.
pub fn endpoint_url(cluster: &Cluster) -> String {
    let e = cluster
        .spec
        .control_plane_endpoint
        .clone()
        .unwrap_or_default();
    format!("https://{}:{}", bracket(&e.host), e.port)
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Control-plane Machines that count: not being deleted, oldest first
/// (creation time, then name: a strict order, unlike k0smotron's mixed
/// comparator).
pub fn active_by_age(machines: &[Machine]) -> Vec<&Machine> {
    let mut v: Vec<&Machine> = machines
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .collect();
    v.sort_by(|a, b| {
        let ka = (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &a.metadata.name,
        );
        let kb = (
            b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &b.metadata.name,
        );
        ka.cmp(&kb)
    });
    v
}

/// Whether `machine` is the init node: the oldest active control-plane
/// Machine. `None` when there is none (the caller waits).
pub fn is_init_node(machines: &[Machine], machine: &str) -> Option<bool> {
    active_by_age(machines)
        .first()
        .map(|m| m.metadata.name.as_deref() == Some(machine))
}

/// The address a joining controller reaches the first controller at: the
/// oldest other active control-plane Machine that has one. ExternalIP
/// first, then an IPv4 InternalIP, then any InternalIP (IPv6 bracketed).
pub fn join_address(machines: &[Machine], machine: &str) -> Option<String> {
    active_by_age(machines)
        .into_iter()
        .filter(|m| m.metadata.name.as_deref() != Some(machine))
        .find_map(machine_address)
}

/// A Machine's address for the join API (see [`join_address`]).
pub fn machine_address(m: &Machine) -> Option<String> {
    let addrs = &m.status.as_ref()?.addresses;
    let of = |t: MachineAddressType| addrs.iter().filter(move |a| a.r#type == t);
    if let Some(a) = of(MachineAddressType::ExternalIp).next() {
        return Some(bracket(&a.address));
    }
    if let Some(a) = of(MachineAddressType::InternalIp).find(|a| !a.address.contains(':')) {
        return Some(a.address.clone());
    }
    of(MachineAddressType::InternalIp)
        .next()
        .map(|a| bracket(&a.address))
}

/// `spec.k0s.spec.api.k0sApiPort`, or 9443.
pub fn k0s_api_port(spec: &K0sConfigSpec) -> u16 {
    spec.k0s
        .as_ref()
        .and_then(|k| k.get("spec"))
        .and_then(|s| s.pointer("/api/k0sApiPort"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(drover_render::token::DEFAULT_K0S_API_PORT)
}

/// RFC 3339 (seconds, UTC) of `now + ttl`: a token's `expiration`.
pub fn expiration(now: jiff::Timestamp, ttl: Duration) -> String {
    let at = now
        .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(jiff::Timestamp::MAX);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The time left before `expiration` (an RFC 3339 time); zero when it has
/// passed, `None` when it does not parse.
pub fn time_left(expiration: &str, now: jiff::Timestamp) -> Option<Duration> {
    let at: jiff::Timestamp = expiration.parse().ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// Whether a token with `left` to live is refreshed: when less than two
/// thirds of its lifetime remain, so that a refresh every third of the
/// lifetime keeps it valid.
pub fn needs_refresh(left: Duration, ttl: Duration) -> bool {
    left < ttl.mul_f64(2.0 / 3.0)
}

/// How long until a token with `left` to live needs a refresh (at least a
/// minute, so a clock skew cannot make a busy loop).
pub fn until_refresh(left: Duration, ttl: Duration) -> Duration {
    left.saturating_sub(ttl.mul_f64(2.0 / 3.0))
        .max(Duration::from_secs(60))
}

/// The value of the [`TOKEN_CONFIG_LABEL`], if `<namespace>.<name>` fits a
/// label value (63 characters).
pub fn config_label_value(namespace: &str, name: &str) -> Option<String> {
    let v = format!("{namespace}.{name}");
    (v.len() <= 63).then_some(v)
}

/// The config a bootstrap Secret is made for.
#[derive(Clone, Debug)]
pub struct ConfigIdentity<'a> {
    /// `bootstrap.cluster.x-k8s.io/v1beta2`.
    pub api_version: &'a str,
    /// `K0sWorkerConfig` or `K0sControllerConfig`.
    pub kind: &'a str,
    /// Name (and the Secret's name).
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// uid, for the ownerReference.
    pub uid: &'a str,
}

/// The bootstrap data Secret, as applied (server-side apply): named like the
/// config, type `cluster.x-k8s.io/secret`, keys `value` and `format`,
/// labels `cluster.x-k8s.io/cluster-name` and
/// `app.kubernetes.io/component=bootstrap` plus `secretMetadata` (workers
/// only, as in k0smotron), and a controller ownerReference to the config.
pub fn bootstrap_secret(
    config: &ConfigIdentity<'_>,
    cluster: &str,
    rendered: &Rendered,
    secret_metadata: Option<&SecretMetadata>,
    token_expiration: Option<&str>,
) -> Secret {
    let mut labels_map = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    if let Some(md) = secret_metadata {
        labels_map.extend(md.labels.clone());
        annotations.extend(md.annotations.clone());
    }
    if let Some(e) = token_expiration {
        annotations.insert(TOKEN_EXPIRATION_ANNOTATION.to_owned(), e.to_owned());
    }
    labels_map.insert(labels::CLUSTER_NAME.to_owned(), cluster.to_owned());
    labels_map.insert(labels::COMPONENT.to_owned(), "bootstrap".to_owned());
    Secret {
        metadata: ObjectMeta {
            name: Some(config.name.to_owned()),
            namespace: Some(config.namespace.to_owned()),
            labels: Some(labels_map),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: config.api_version.to_owned(),
                kind: config.kind.to_owned(),
                name: config.name.to_owned(),
                uid: config.uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some(labels::CAPI_SECRET_TYPE.to_owned()),
        data: Some(BTreeMap::from([
            ("value".to_owned(), ByteString(rendered.value.clone())),
            (
                "format".to_owned(),
                ByteString(rendered.format.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// Sets `DataSecretAvailable` and its `Ready` summary (True → `Ready`,
/// otherwise `NotReady` with the same message) and `Paused=False`. Returns
/// whether anything changed.
pub fn set_data_secret_conditions(
    current: &mut Vec<Condition>,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> bool {
    let ready_reason = if status == ConditionStatus::True {
        REASON_READY
    } else {
        REASON_NOT_READY
    };
    let mut changed = conditions::set(
        current,
        conditions::new(
            conditions::DATA_SECRET_AVAILABLE,
            status,
            reason,
            message,
            generation,
        ),
        now,
    );
    changed |= conditions::set(
        current,
        conditions::new(conditions::READY, status, ready_reason, message, generation),
        now,
    );
    changed |= set_paused(current, None, generation, now);
    changed
}

/// Sets the `Paused` condition: `True` with the cause's message, or `False`.
pub fn set_paused(
    current: &mut Vec<Condition>,
    paused: Option<&str>,
    generation: Option<i64>,
    now: &str,
) -> bool {
    let c = match paused {
        Some(message) => conditions::new(
            conditions::PAUSED,
            ConditionStatus::True,
            REASON_PAUSED,
            message,
            generation,
        ),
        None => conditions::new(
            conditions::PAUSED,
            ConditionStatus::False,
            REASON_NOT_PAUSED,
            "",
            generation,
        ),
    };
    conditions::set(current, c, now)
}

/// What the render input needs besides the spec.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Worker, init controller or joining controller, with what it carries.
    pub role: Role,
    /// The owner Machine's name.
    pub machine_name: String,
    /// The config's name.
    pub config_name: String,
    /// The k0s version, normalised.
    pub version: String,
    /// `spec.files`, resolved.
    pub files: Vec<UserFile>,
    /// `spec.provisioner.customUserDataRef`, resolved.
    pub custom_user_data: Option<String>,
}

/// The render input from a spec's fields: the worker and controller specs
/// share their names, so one body serves both.
macro_rules! input_from_spec {
    ($spec:expr, $r:expr) => {{
        let (spec, r) = ($spec, $r);
        let mut input = BootstrapInput::new(r.role, r.machine_name, r.config_name);
        input.version = r.version;
        input.install_dir = spec.k0s_install_dir.clone();
        input.working_dir = spec.working_dir.clone();
        input.download_url = spec.download_url.clone();
        input.pre_installed_k0s = spec.pre_installed_k0s;
        input.args = spec.args.clone();
        input.use_system_hostname = spec.use_system_hostname;
        input.pre_k0s_commands = spec.pre_k0s_commands.clone();
        input.post_k0s_commands = spec.post_k0s_commands.clone();
        input.files = r.files;
        input.custom_user_data = r.custom_user_data;
        input.provisioner = Provisioner::from(&spec.provisioner);
        input
    }};
}

/// The render input of a K0sWorkerConfig.
pub fn worker_input(spec: &K0sWorkerConfigSpec, r: Resolved) -> BootstrapInput {
    input_from_spec!(spec, r)
}

/// The render input of a K0sControllerConfig: the same plus its k0s
/// ClusterConfig.
pub fn controller_input(spec: &K0sConfigSpec, r: Resolved) -> BootstrapInput {
    let mut input = input_from_spec!(spec, r);
    input.k0s_config = spec.k0s.clone().map(serde_json::Value::Object);
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_shared::api::capi::{ClusterSpec, ClusterStatus, MachineSpec, MachineStatus};
    use drover_shared::api::common::{ApiEndpoint, MachineAddress};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn cluster(endpoint: bool, initialized: bool) -> Cluster {
        let mut c = Cluster::new("c1", ClusterSpec::default());
        if endpoint {
            c.spec.control_plane_endpoint = Some(ApiEndpoint {
                host: "10.0.0.1".into(),
                port: 6443,
            });
        }
        let mut status = ClusterStatus::default();
        if initialized {
            conditions::set(
                &mut status.conditions,
                conditions::new(
                    conditions::CONTROL_PLANE_INITIALIZED,
                    ConditionStatus::True,
                    "Initialized",
                    "",
                    None,
                ),
                "2026-01-01T00:00:00Z",
            );
        }
        c.status = Some(status);
        c
    }

    fn machine(name: &str, created: i64, addrs: &[(MachineAddressType, &str)]) -> Machine {
        let mut m = Machine::new(name, MachineSpec::default());
        m.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(created).unwrap()));
        m.status = Some(MachineStatus {
            addresses: addrs
                .iter()
                .map(|(t, a)| MachineAddress {
                    r#type: *t,
                    address: (*a).into(),
                })
                .collect(),
            ..MachineStatus::default()
        });
        m
    }

    #[test]
    fn workers_wait_for_endpoint_and_initialization_controllers_for_endpoint() {
        assert_eq!(
            control_plane_gate(&cluster(false, true), true)
                .unwrap_err()
                .reason,
            REASON_WAITING_FOR_CONTROL_PLANE
        );
        let w = control_plane_gate(&cluster(true, false), true).unwrap_err();
        assert!(
            w.message.contains("ControlPlaneInitialized"),
            "{}",
            w.message
        );
        assert!(control_plane_gate(&cluster(true, false), false).is_ok());
        assert!(control_plane_gate(&cluster(true, true), true).is_ok());
        assert_eq!(endpoint_url(&cluster(true, true)), "https://10.0.0.1:6443");
    }

    #[test]
    fn the_oldest_active_machine_is_the_init_node_ties_broken_by_name() {
        let mut gone = machine("a-gone", 1, &[]);
        gone.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::from_second(5).unwrap()));
        let ms = vec![
            machine("c", 10, &[]),
            machine("b", 10, &[]),
            gone,
            machine("d", 20, &[]),
        ];
        assert_eq!(is_init_node(&ms, "b"), Some(true));
        assert_eq!(is_init_node(&ms, "c"), Some(false));
        assert_eq!(is_init_node(&[], "c"), None);
    }

    #[test]
    fn join_addresses_prefer_external_then_ipv4_and_skip_the_machine_itself() {
        use MachineAddressType::*;
        let ms = vec![
            machine("first", 1, &[]),
            machine(
                "second",
                2,
                &[(InternalIp, "fd00::2"), (InternalIp, "10.0.0.2")],
            ),
            machine("me", 3, &[(ExternalIp, "1.2.3.4")]),
        ];
        // The oldest has no address yet: the next one with an address.
        assert_eq!(join_address(&ms, "me").as_deref(), Some("10.0.0.2"));
        assert_eq!(join_address(&ms, "second"), Some("1.2.3.4".into()));
        let v6 = vec![machine("x", 1, &[(InternalIp, "fd00::9")])];
        assert_eq!(join_address(&v6, "me").as_deref(), Some("[fd00::9]"));
        assert_eq!(join_address(&ms[..1], "me"), None);
    }

    #[test]
    fn k0s_api_port_comes_from_the_k0s_config() {
        let mut spec = K0sConfigSpec::default();
        assert_eq!(k0s_api_port(&spec), 9443);
        spec.k0s = serde_json::json!({"spec": {"api": {"k0sApiPort": 9444}}})
            .as_object()
            .cloned();
        assert_eq!(k0s_api_port(&spec), 9444);
    }

    #[test]
    fn token_lifetimes() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ttl = Duration::from_secs(3600);
        let exp = expiration(now, ttl);
        assert_eq!(exp, "2027-01-15T09:00:00Z");
        assert_eq!(time_left(&exp, now), Some(ttl));
        let later = now
            .checked_add(jiff::SignedDuration::from_hours(2))
            .unwrap();
        assert_eq!(time_left(&exp, later), Some(Duration::ZERO));
        assert_eq!(time_left("yesterday", now), None);
        assert!(!needs_refresh(ttl, ttl));
        assert!(!needs_refresh(Duration::from_secs(2500), ttl));
        assert!(needs_refresh(Duration::from_secs(2300), ttl));
        assert_eq!(until_refresh(ttl, ttl), Duration::from_secs(1200));
        assert_eq!(until_refresh(Duration::ZERO, ttl), Duration::from_secs(60));
    }

    #[test]
    fn the_bootstrap_secret_follows_the_contract() {
        let id = ConfigIdentity {
            api_version: "bootstrap.cluster.x-k8s.io/v1beta2",
            kind: "K0sWorkerConfig",
            name: "md-0-abc",
            namespace: "default",
            uid: "u-1",
        };
        let md = SecretMetadata {
            labels: BTreeMap::from([
                ("team".to_owned(), "a".to_owned()),
                // The contract label wins over user metadata.
                (labels::CLUSTER_NAME.to_owned(), "other".to_owned()),
            ]),
            annotations: BTreeMap::from([("note".to_owned(), "x".to_owned())]),
        };
        let rendered = Rendered {
            value: b"#cloud-config\n".to_vec(),
            format: "cloud-config",
        };
        let s = bootstrap_secret(
            &id,
            "c1",
            &rendered,
            Some(&md),
            Some("2026-01-01T01:00:00Z"),
        );
        assert_eq!(s.metadata.name.as_deref(), Some("md-0-abc"));
        assert_eq!(s.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
        let l = s.metadata.labels.as_ref().unwrap();
        assert_eq!(l[labels::CLUSTER_NAME], "c1");
        assert_eq!(l["team"], "a");
        assert_eq!(l[labels::COMPONENT], "bootstrap");
        let a = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(a["note"], "x");
        assert_eq!(a[TOKEN_EXPIRATION_ANNOTATION], "2026-01-01T01:00:00Z");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("K0sWorkerConfig", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["format"].0, b"cloud-config");
        assert_eq!(data["value"].0, b"#cloud-config\n");
    }

    #[test]
    fn ready_mirrors_data_secret_available_and_rewrites_nothing_when_equal() {
        let mut cs = Vec::new();
        let now = "2026-01-01T00:00:00Z";
        assert!(set_data_secret_conditions(
            &mut cs,
            ConditionStatus::False,
            REASON_GENERATION_FAILED,
            "spec.downloadURL: unsupported URL scheme 'ftp'",
            Some(1),
            now
        ));
        let ready = conditions::get(&cs, conditions::READY).unwrap();
        assert_eq!(ready.reason, REASON_NOT_READY);
        assert!(ready.message.contains("spec.downloadURL"));
        assert!(!set_data_secret_conditions(
            &mut cs,
            ConditionStatus::False,
            REASON_GENERATION_FAILED,
            "spec.downloadURL: unsupported URL scheme 'ftp'",
            Some(1),
            "2026-01-01T00:05:00Z"
        ));
        assert_eq!(
            conditions::get(&cs, conditions::PAUSED).unwrap().status,
            ConditionStatus::False
        );
    }

    #[test]
    fn config_labels_fit_or_are_left_out() {
        assert_eq!(config_label_value("ns", "n").as_deref(), Some("ns.n"));
        assert_eq!(config_label_value("ns", &"x".repeat(70)), None);
    }
}
