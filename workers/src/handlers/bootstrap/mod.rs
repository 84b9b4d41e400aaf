//! The bootstrap provider: K0sWorkerConfig and K0sControllerConfig
//! (inventory §2.1, §2.2, §3; CAPI bootstrap contract, capi-contracts §1).
//!
//! One run, level-triggered:
//!
//! 1. Read the config (gone or another uid: a stale job, done), its owner
//!    Machine (none yet: done; the watcher sends a job when the owner is
//!    set) and the Machine's Cluster (none: done).
//! 2. Paused (`Cluster.spec.paused` or the annotation): `Paused=True`, done.
//! 3. Generated already (`status.initialization.dataSecretCreated`) and the
//!    Secret exists: nothing is regenerated (one-shot, as in k0smotron);
//!    only the token is kept alive until the Machine has a Node. If the
//!    Secret is gone, it is generated again.
//! 4. Gates: a control-plane endpoint, and for workers an initialized
//!    control plane; the cluster CA (and for the init controller its
//!    certificates); the child cluster's kubeconfig. Waiting writes
//!    `DataSecretAvailable=False` with the reason and is a "run again"
//!    outcome; the watcher wakes waiting configs when the Cluster, the
//!    `<cluster>-kubeconfig` or `<cluster>-ca` Secret changes, so the
//!    fallback delay is long.
//! 5. Resolve `files[].contentFrom` and custom user data, mint (or reuse)
//!    the bootstrap token in the child cluster, render ([`drover_render`]),
//!    server-side apply the Secret, then write the status:
//!    `dataSecretName`, `initialization.dataSecretCreated`, v1beta1
//!    `ready`, `DataSecretAvailable` and `Ready`.
//!
//! Failures write `DataSecretAvailable=False` (`DataSecretGenerationFailed`
//! naming the field, or `InternalError`) and a Warning Event, then return
//! the error: bad input is dead-lettered at once, an unresolved reference
//! after the queue's bounded retries, anything else retried.
//!
//! The pure rules are in [`plan`]; child-cluster tokens in [`tokens`];
//! management-cluster lookups in [`resolve`].

pub mod plan;
pub mod resolve;
pub mod tokens;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use drover_render::{RenderError, Role, TokenRole, encode_join_token};
use drover_shared::api::bootstrap::{
    BootstrapConfigStatus, GROUP, K0sControllerConfigSpec, K0sWorkerConfigSpec,
};
use drover_shared::api::capi::{Cluster, Machine};
use drover_shared::api::common::ConditionStatus;
use drover_shared::api::controlplane::K0smotronControlPlane;
use drover_shared::jobs::{Change, Job};
use drover_shared::{labels, paused};
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument as _;

use plan::{ConfigIdentity, Resolved, Wait};

use crate::{Context, Handled, Handler, HandlerError, HandlerResult};

/// Settings of the bootstrap handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapSettings {
    /// Lifetime of minted bootstrap tokens. Kept alive (pushed out every
    /// third of it) until the Machine has a Node, so a short lifetime does
    /// not strand slow infrastructure.
    pub token_ttl: Duration,
}

impl Default for BootstrapSettings {
    /// Tokens live 1 h (k0smotron: 24 h, hard-coded; issue #1573).
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// The handler of [`drover_shared::jobs::JobKind::Bootstrap`] jobs.
pub struct Bootstrap {
    settings: BootstrapSettings,
    /// When each child cluster's expired tokens were last deleted.
    cleaned: Mutex<HashMap<(String, String), Instant>>,
}

impl Bootstrap {
    /// A handler with these settings.
    pub fn new(settings: BootstrapSettings) -> Self {
        Self {
            settings,
            cleaned: Mutex::new(HashMap::new()),
        }
    }
}

impl Handler<Context> for Bootstrap {
    fn name(&self) -> &'static str {
        "bootstrap"
    }

    fn handle<'a>(&'a self, ctx: &'a Context, job: &'a Job) -> BoxFuture<'a, HandlerResult> {
        Box::pin(self.run(ctx, job))
    }
}

/// Which bootstrap kind, with its spec.
enum Spec {
    Worker(Box<K0sWorkerConfigSpec>),
    Controller(Box<K0sControllerConfigSpec>),
}

/// The config as read.
struct Config {
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    spec: Spec,
    status: BootstrapConfigStatus,
    /// The object as read, for the first round of a status write.
    raw: DynamicObject,
}

/// What a kind-specific step found: go on, or wait.
type Prepared<T> = Result<Result<T, Wait>, HandlerError>;

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A render error is bad input naming its field.
pub(crate) fn render_error(e: RenderError) -> HandlerError {
    let message = e.to_string();
    let field = match &e {
        RenderError::UnsupportedDownloadScheme { field, .. }
        | RenderError::InvalidK0sConfig { field }
        | RenderError::UnsupportedIgnition { field, .. }
        | RenderError::InvalidAdditionalConfig { field, .. }
        | RenderError::InvalidVersion { field, .. }
        | RenderError::UnsupportedPlatform { field, .. } => (*field).to_owned(),
        RenderError::InvalidPermissions { field, .. }
        | RenderError::FileContent { field, .. }
        | RenderError::MissingFilePath { field } => field.clone(),
        RenderError::InvalidJoinToken(_) => "join token".to_owned(),
    };
    // The message already starts with the field.
    let message = message
        .strip_prefix(&format!("{field}: "))
        .map(str::to_owned)
        .unwrap_or(message);
    HandlerError::bad_input(field, message)
}

impl Config {
    fn from_dynamic(obj: DynamicObject, ar: &ApiResource) -> Result<Self, HandlerError> {
        let spec_value = obj.data.get("spec").cloned().unwrap_or(json!({}));
        let spec = match ar.kind.as_str() {
            "K0sWorkerConfig" => Spec::Worker(Box::new(
                serde_json::from_value(spec_value)
                    .map_err(|e| HandlerError::bad_input("spec", e.to_string()))?,
            )),
            "K0sControllerConfig" => Spec::Controller(Box::new(
                serde_json::from_value(spec_value)
                    .map_err(|e| HandlerError::bad_input("spec", e.to_string()))?,
            )),
            other => {
                return Err(HandlerError::bad_input(
                    "object.kind",
                    format!(
                        "the bootstrap handler serves K0sWorkerConfig and K0sControllerConfig, not {other}"
                    ),
                ));
            }
        };
        let status = match obj.data.get("status") {
            None | Some(serde_json::Value::Null) => BootstrapConfigStatus::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| HandlerError::bad_input("status", e.to_string()))?,
        };
        Ok(Config {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            spec,
            status,
            raw: obj,
        })
    }

    fn identity(&self) -> ConfigIdentity<'_> {
        ConfigIdentity {
            api_version: &self.api_version,
            kind: &self.kind,
            name: &self.name,
            namespace: &self.namespace,
            uid: &self.uid,
        }
    }

    fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.raw.metadata.resource_version.clone(),
            ..ObjectReference::default()
        }
    }

    /// The owner Machine: an ownerReference of kind Machine in CAPI's group.
    fn owner_machine(&self) -> Option<String> {
        self.raw
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| {
                o.kind == "Machine"
                    && drover_shared::owners::group_of(&o.api_version) == "cluster.x-k8s.io"
            })
            .map(|o| o.name.clone())
    }
}

impl Bootstrap {
    async fn run(&self, ctx: &Context, job: &Job) -> HandlerResult {
        if job.cause.change == Change::Deleted {
            self.revoke(ctx, job).await;
            return Ok(Handled::Done);
        }
        let (api, ar) = ctx.api_for(&job.object)?;
        if ar.group != GROUP {
            return Err(HandlerError::bad_input(
                "object.apiVersion",
                format!("{} is not a bootstrap kind", job.object.api_version),
            ));
        }
        let Some(obj) = api
            .get_opt(&job.object.name)
            .instrument(tracing::debug_span!("read_config"))
            .await?
        else {
            tracing::debug!("the config is gone: stale job");
            return Ok(Handled::Done);
        };
        if obj.metadata.uid.as_deref() != Some(job.object.uid.as_str()) {
            tracing::debug!("the config was replaced: stale job");
            return Ok(Handled::Done);
        }
        if obj.metadata.deletion_timestamp.is_some() {
            // No finalizer: the data Secret goes by garbage collection.
            return Ok(Handled::Done);
        }
        let config = Config::from_dynamic(obj, &ar)?;
        match self.reconcile(ctx, &api, &config).await {
            Ok(handled) => Ok(handled),
            Err(e) => {
                self.report_failure(ctx, &api, &config, &e).await;
                Err(e)
            }
        }
    }

    async fn reconcile(
        &self,
        ctx: &Context,
        api: &Api<DynamicObject>,
        config: &Config,
    ) -> HandlerResult {
        let Some(machine_name) = config.owner_machine() else {
            tracing::debug!("no owner Machine yet");
            return Ok(Handled::Done);
        };
        let ns = config.namespace.as_str();
        let Some(machine) = Api::<Machine>::namespaced(ctx.client.clone(), ns)
            .get_opt(&machine_name)
            .instrument(tracing::debug_span!("read_machine"))
            .await?
        else {
            tracing::debug!(machine = %machine_name, "owner Machine not found yet");
            return Ok(Handled::Done);
        };
        let cluster_name = machine.spec.cluster_name.clone();
        if cluster_name.is_empty() {
            return Ok(Handled::Done);
        }
        let Some(cluster) = Api::<Cluster>::namespaced(ctx.client.clone(), ns)
            .get_opt(&cluster_name)
            .instrument(tracing::debug_span!("read_cluster"))
            .await?
        else {
            tracing::debug!(cluster = %cluster_name, "Cluster not found yet");
            return Ok(Handled::Done);
        };
        if let Some(cause) = paused::pause_cause(
            Some(&cluster.spec),
            config.raw.metadata.annotations.as_ref(),
        ) {
            tracing::debug!("paused");
            self.write_status(api, config, |st, g, now| {
                plan::set_paused(&mut st.conditions, Some(cause.message()), g, now)
            })
            .await?;
            return Ok(Handled::Done);
        }
        let secrets = Api::<Secret>::namespaced(ctx.client.clone(), ns);
        if config.status.initialization.data_secret_created == Some(true) {
            let name = config
                .status
                .data_secret_name
                .clone()
                .unwrap_or_else(|| config.name.clone());
            if let Some(existing) = secrets.get_metadata_opt(&name).await? {
                return self
                    .keep_alive(ctx, api, config, &machine, &cluster, &existing.metadata)
                    .await;
            }
            tracing::warn!(secret = %name, "the bootstrap data Secret is gone; generating it again");
        }

        let prepared = match &config.spec {
            Spec::Worker(spec) => {
                self.prepare_worker(ctx, config, spec, &machine, &cluster)
                    .await?
            }
            Spec::Controller(spec) => {
                self.prepare_controller(ctx, config, spec, &machine, &cluster)
                    .await?
            }
        };
        let (input, secret_metadata, token_expiration) = match prepared {
            Ok(p) => p,
            Err(wait) => {
                tracing::debug!(reason = wait.reason, message = %wait.message, "waiting");
                self.write_status(api, config, |st, g, now| {
                    plan::set_data_secret_conditions(
                        &mut st.conditions,
                        ConditionStatus::False,
                        wait.reason,
                        &wait.message,
                        g,
                        now,
                    )
                })
                .await?;
                return Ok(Handled::RunAfter(wait.fallback));
            }
        };
        let rendered = drover_render::render(&input).map_err(render_error)?;
        let secret = plan::bootstrap_secret(
            &config.identity(),
            &cluster_name,
            &rendered,
            secret_metadata.as_ref(),
            token_expiration.as_deref(),
        );
        secrets
            .patch(
                &config.name,
                &PatchParams::apply(ctx.field_manager).force(),
                &Patch::Apply(&secret),
            )
            .instrument(tracing::debug_span!("apply_secret"))
            .await?;
        let name = config.name.clone();
        self.write_status(api, config, |st, g, now| {
            let mut changed = st.data_secret_name.as_deref() != Some(name.as_str())
                || st.initialization.data_secret_created != Some(true)
                || st.ready != Some(true);
            st.data_secret_name = Some(name.clone());
            st.initialization.data_secret_created = Some(true);
            st.ready = Some(true);
            changed |= plan::set_data_secret_conditions(
                &mut st.conditions,
                ConditionStatus::True,
                plan::REASON_AVAILABLE,
                "Bootstrap secret created",
                g,
                now,
            );
            changed
        })
        .await?;
        // No Normal Event for a success (k0smotron emits none either): at
        // fleet scale it doubled the Events stored and cost a write per
        // config; the conditions say it. Failures get Warning Events.
        tracing::info!(secret = %config.name, format = rendered.format, "bootstrap data Secret created");
        if token_expiration.is_some() {
            self.clean_expired(ctx, ns, &cluster_name).await;
            if !has_node(&machine) {
                return Ok(Handled::RunAfter(self.settings.token_ttl / 3));
            }
        }
        Ok(Handled::Done)
    }

    /// Generated already: keep the token alive until the Machine has a
    /// Node, and clear a stale `Paused=True`. The data Secret's
    /// token-expiration annotation says when a refresh is due, so the child
    /// cluster is asked only then.
    async fn keep_alive(
        &self,
        ctx: &Context,
        api: &Api<DynamicObject>,
        config: &Config,
        machine: &Machine,
        cluster: &Cluster,
        secret: &ObjectMeta,
    ) -> HandlerResult {
        let paused = drover_shared::conditions::is_true(
            &config.status.conditions,
            drover_shared::conditions::PAUSED,
        );
        if paused {
            self.write_status(api, config, |st, g, now| {
                plan::set_paused(&mut st.conditions, None, g, now)
            })
            .await?;
        }
        if has_node(machine) {
            return Ok(Handled::Done);
        }
        let ttl = self.settings.token_ttl;
        let now = jiff::Timestamp::now();
        let recorded = secret
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::TOKEN_EXPIRATION_ANNOTATION))
            .and_then(|e| plan::time_left(e, now));
        if let Some(left) = recorded
            && !plan::needs_refresh(left, ttl)
        {
            return Ok(Handled::RunAfter(plan::until_refresh(left, ttl)));
        }
        let ns = &config.namespace;
        let cluster_name = cluster.metadata.name.as_deref().unwrap_or_default();
        let Some(child) = ctx.children.get_opt(ns, cluster_name).await? else {
            return Ok(Handled::Done);
        };
        match tokens::keep_alive(&child, &config.uid, ttl, now).await {
            Ok(Some(expiration)) => {
                let patch = json!({"metadata": {"annotations": {
                    plan::TOKEN_EXPIRATION_ANNOTATION: expiration}}});
                Api::<Secret>::namespaced(ctx.client.clone(), ns)
                    .patch(
                        secret.name.as_deref().unwrap_or(&config.name),
                        &PatchParams {
                            field_manager: Some(ctx.field_manager.to_owned()),
                            ..PatchParams::default()
                        },
                        &Patch::Merge(&patch),
                    )
                    .await?;
                let left = plan::time_left(&expiration, now).unwrap_or(ttl);
                Ok(Handled::RunAfter(plan::until_refresh(left, ttl)))
            }
            Ok(None) => Ok(Handled::Done),
            Err(e) => {
                if let HandlerError::Kube(k) = &e {
                    ctx.children.note_error(ns, cluster_name, k);
                }
                Err(e)
            }
        }
    }

    /// K0sWorkerConfig: gate on the initialized control plane, resolve the
    /// files, the CA, ingress certificates, the token.
    async fn prepare_worker(
        &self,
        ctx: &Context,
        config: &Config,
        spec: &K0sWorkerConfigSpec,
        machine: &Machine,
        cluster: &Cluster,
    ) -> Prepared<(
        drover_render::BootstrapInput,
        Option<drover_shared::api::common::SecretMetadata>,
        Option<String>,
    )> {
        if let Err(w) = plan::control_plane_gate(cluster, true) {
            return Ok(Err(w));
        }
        let ns = config.namespace.as_str();
        let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
        let version = if spec.version.is_empty() {
            machine.spec.version.clone().unwrap_or_default()
        } else {
            spec.version.clone()
        };
        let files = resolve::files(&ctx.client, ns, &spec.files).await?;
        let custom_user_data = resolve::custom_user_data(
            &ctx.client,
            ns,
            spec.provisioner.custom_user_data_ref.as_ref(),
        )
        .await?;
        let ca = match resolve::ca_cert(&ctx.client, ns, &cluster_name).await? {
            Ok(ca) => ca,
            Err(w) => return Ok(Err(w)),
        };
        // A hosted control plane exposed through an Ingress: join through
        // it, and give the node the HAProxy certificates.
        let mut server = plan::endpoint_url(cluster);
        let mut ingress_certs = None;
        if let Some(ingress) = self.ingress_of(ctx, cluster).await? {
            let port = if ingress.port == 0 { 443 } else { ingress.port };
            server = format!("https://{}:{}", ingress.api_host, port);
            let (crt, key) = match resolve::haproxy_pair(&ctx.client, ns, &cluster_name).await? {
                Ok(p) => p,
                Err(w) => return Ok(Err(w)),
            };
            ingress_certs = Some(drover_render::IngressCerts {
                ca_crt: String::from_utf8_lossy(&ca).into_owned(),
                server_crt: crt,
                server_key: key,
            });
        }
        let Some(child) = self.child(ctx, ns, &cluster_name).await? else {
            return Ok(Err(kubeconfig_wait(ns, &cluster_name)));
        };
        let (token, expiration) = self
            .token(ctx, &child, config, &cluster_name, TokenRole::Worker)
            .await?;
        let join_token = encode_join_token(&ca, &token.token(), &server, TokenRole::Worker);
        let mut input = plan::worker_input(
            spec,
            Resolved {
                role: Role::Worker { join_token },
                machine_name: machine.metadata.name.clone().unwrap_or_default(),
                config_name: config.name.clone(),
                version: drover_render::normalize_k0s_version(&version),
                files,
                custom_user_data,
            },
        );
        input.ingress = ingress_certs;
        Ok(Ok((input, spec.secret_metadata.clone(), Some(expiration))))
    }

    /// K0sControllerConfig: the oldest control-plane Machine is the init
    /// node (cluster certificates), the others join with a controller
    /// token through the first running controller's address.
    async fn prepare_controller(
        &self,
        ctx: &Context,
        config: &Config,
        spec: &K0sControllerConfigSpec,
        machine: &Machine,
        cluster: &Cluster,
    ) -> Prepared<(
        drover_render::BootstrapInput,
        Option<drover_shared::api::common::SecretMetadata>,
        Option<String>,
    )> {
        let k0s = &spec.k0s_config_spec;
        let version = if spec.version.is_empty() {
            machine.spec.version.clone().unwrap_or_default()
        } else {
            spec.version.clone()
        };
        if version.is_empty() {
            return Err(HandlerError::bad_input(
                "spec.version",
                "a K0sControllerConfig needs a k0s version (spec.version, or the Machine's spec.version)",
            ));
        }
        if let Err(w) = plan::control_plane_gate(cluster, false) {
            return Ok(Err(w));
        }
        let ns = config.namespace.as_str();
        let cluster_name = cluster.metadata.name.clone().unwrap_or_default();
        let machine_name = machine.metadata.name.clone().unwrap_or_default();
        let selector = format!(
            "{}={cluster_name},{}",
            labels::CLUSTER_NAME,
            labels::CONTROL_PLANE
        );
        let mut machines = Api::<Machine>::namespaced(ctx.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .instrument(tracing::debug_span!("list_control_plane_machines"))
            .await?
            .items;
        if !machines
            .iter()
            .any(|m| m.metadata.name.as_deref() == Some(machine_name.as_str()))
        {
            machines.push(machine.clone());
        }
        let files = resolve::files(&ctx.client, ns, &k0s.files).await?;
        let custom_user_data = resolve::custom_user_data(
            &ctx.client,
            ns,
            k0s.provisioner.custom_user_data_ref.as_ref(),
        )
        .await?;
        let init = plan::is_init_node(&machines, &machine_name).unwrap_or(true);
        let (role, token_expiration) = if init {
            if ctx.children.get_opt(ns, &cluster_name).await?.is_none() {
                return Ok(Err(kubeconfig_wait(ns, &cluster_name)));
            }
            let certificates =
                match resolve::capi_certificates(&ctx.client, ns, &cluster_name).await? {
                    Ok(c) => c,
                    Err(w) => return Ok(Err(w)),
                };
            (Role::ControllerInit { certificates }, None)
        } else {
            let ca = match resolve::ca_cert(&ctx.client, ns, &cluster_name).await? {
                Ok(ca) => ca,
                Err(w) => return Ok(Err(w)),
            };
            // Fixes k0smotron's empty Secret (§10.2): no running
            // controller to join yet is a wait, not empty data.
            let Some(address) = plan::join_address(&machines, &machine_name) else {
                return Ok(Err(Wait {
                    reason: plan::REASON_WAITING_FOR_INFRASTRUCTURE,
                    message: "waiting for a running control-plane Machine with an address to join"
                        .into(),
                    fallback: plan::POLLED_WAIT,
                }));
            };
            let Some(child) = self.child(ctx, ns, &cluster_name).await? else {
                return Ok(Err(kubeconfig_wait(ns, &cluster_name)));
            };
            let (token, expiration) = self
                .token(ctx, &child, config, &cluster_name, TokenRole::Controller)
                .await?;
            let server = format!("https://{address}:{}", plan::k0s_api_port(k0s));
            let join_token = encode_join_token(&ca, &token.token(), &server, TokenRole::Controller);
            (Role::ControllerJoin { join_token }, Some(expiration))
        };
        let mut input = plan::controller_input(
            k0s,
            Resolved {
                role,
                machine_name,
                config_name: config.name.clone(),
                version: drover_render::normalize_k0s_version(&version),
                files,
                custom_user_data,
            },
        );
        if k0s.tunneling.enabled {
            let token = match resolve::frp_token(&ctx.client, ns, &cluster_name).await? {
                Ok(t) => t,
                Err(w) => return Ok(Err(w)),
            };
            if k0s.tunneling.server_address.is_empty() {
                return Ok(Err(Wait {
                    reason: plan::REASON_WAITING_FOR_INFRASTRUCTURE,
                    message:
                        "spec.tunneling.serverAddress is not set yet (the control plane detects it)"
                            .into(),
                    fallback: plan::WATCHED_WAIT,
                }));
            }
            let services = cluster
                .spec
                .cluster_network
                .as_ref()
                .and_then(|n| n.services.as_ref())
                .map(|s| s.cidr_blocks.clone())
                .unwrap_or_default();
            input.tunnel = Some(drover_render::tunnel::Tunnel {
                server_address: k0s.tunneling.server_address.clone(),
                server_port: if k0s.tunneling.server_node_port == 0 {
                    31700
                } else {
                    k0s.tunneling.server_node_port
                },
                token,
                local_ip: drover_render::tunnel::api_service_ip(&services),
                mode: k0s.tunneling.mode,
                endpoint_host: cluster
                    .spec
                    .control_plane_endpoint
                    .as_ref()
                    .map(|e| e.host.clone())
                    .unwrap_or_default(),
            });
        }
        // k0smotron does not honour secretMetadata for controllers.
        Ok(Ok((input, None, token_expiration)))
    }

    /// The `spec.ingress` of the Cluster's control plane, when it is a
    /// K0smotronControlPlane exposed through an Ingress.
    async fn ingress_of(
        &self,
        ctx: &Context,
        cluster: &Cluster,
    ) -> Result<Option<drover_shared::api::k0smotron::IngressSpec>, HandlerError> {
        let Some(cp) = &cluster.spec.control_plane_ref else {
            return Ok(None);
        };
        if cp.kind != "K0smotronControlPlane" || cp.api_group != "controlplane.cluster.x-k8s.io" {
            return Ok(None);
        }
        let ns = cluster.metadata.namespace.as_deref().unwrap_or_default();
        Ok(
            Api::<K0smotronControlPlane>::namespaced(ctx.client.clone(), ns)
                .get_opt(&cp.name)
                .await?
                .and_then(|k| k.spec.cluster.ingress),
        )
    }

    async fn child(
        &self,
        ctx: &Context,
        ns: &str,
        cluster: &str,
    ) -> Result<Option<kube::Client>, HandlerError> {
        ctx.children
            .get_opt(ns, cluster)
            .instrument(tracing::debug_span!("child_client"))
            .await
    }

    async fn token(
        &self,
        ctx: &Context,
        child: &kube::Client,
        config: &Config,
        cluster: &str,
        role: TokenRole,
    ) -> Result<(drover_render::BootstrapToken, String), HandlerError> {
        let label = plan::config_label_value(&config.namespace, &config.name);
        let r = tokens::ensure(
            child,
            &config.uid,
            label,
            role,
            self.settings.token_ttl,
            jiff::Timestamp::now(),
        )
        .instrument(tracing::debug_span!("ensure_token"))
        .await;
        if let Err(HandlerError::Kube(e)) = &r {
            ctx.children.note_error(&config.namespace, cluster, e);
        }
        r
    }

    /// Deletes the child cluster's expired drover tokens, at most once per
    /// quarter token lifetime (and per minute) per cluster and process.
    async fn clean_expired(&self, ctx: &Context, ns: &str, cluster: &str) {
        let every = (self.settings.token_ttl / 4).max(Duration::from_secs(60));
        let key = (ns.to_owned(), cluster.to_owned());
        {
            let mut cleaned = self.cleaned.lock().unwrap_or_else(|e| e.into_inner());
            if cleaned.get(&key).is_some_and(|t| t.elapsed() < every) {
                return;
            }
            cleaned.insert(key, Instant::now());
        }
        let Ok(Some(child)) = ctx.children.get_opt(ns, cluster).await else {
            return;
        };
        match tokens::delete_expired(&child, jiff::Timestamp::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cluster, deleted = n, "expired bootstrap tokens deleted"),
            Err(e) => {
                tracing::warn!(cluster, error = %e, "could not delete expired bootstrap tokens")
            }
        }
    }

    /// A deleted config's tokens are deleted (best effort: they expire anyway).
    async fn revoke(&self, ctx: &Context, job: &Job) {
        let (Some(ns), Some(cluster)) = (job.object.namespace.as_deref(), job.cluster.as_deref())
        else {
            return;
        };
        let Ok(Some(child)) = ctx.children.get_opt(ns, cluster).await else {
            return;
        };
        match tokens::revoke(&child, &job.object.uid).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(revoked = n, "the deleted config's bootstrap tokens deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete the deleted config's tokens"),
        }
    }

    /// Writes the failure into the conditions and an Event (best effort).
    async fn report_failure(
        &self,
        ctx: &Context,
        api: &Api<DynamicObject>,
        config: &Config,
        e: &HandlerError,
    ) {
        let (reason, message) = match e {
            HandlerError::Conflict(_) => return,
            HandlerError::BadInput { field, message }
            | HandlerError::Unresolved { field, message } => (
                plan::REASON_GENERATION_FAILED,
                format!("{field}: {message}"),
            ),
            other => (plan::REASON_INTERNAL_ERROR, other.to_string()),
        };
        tracing::warn!(reason, %message, "bootstrap data not generated");
        let written = self
            .write_status(api, config, |st, g, now| {
                plan::set_data_secret_conditions(
                    &mut st.conditions,
                    ConditionStatus::False,
                    reason,
                    &message,
                    g,
                    now,
                )
            })
            .await;
        if let Err(w) = written {
            tracing::debug!(error = %w, "could not record the failure in the status");
        }
        ctx.event(
            Event {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(message.chars().take(1024).collect()),
                action: "Generate".into(),
                secondary: None,
            },
            &config.object_ref(),
        )
        .await;
    }

    /// Read-modify-write of the status ([`super::status`]): `mutate` gets
    /// the current status, generation and time and says whether it changed
    /// anything.
    async fn write_status<F>(
        &self,
        api: &Api<DynamicObject>,
        config: &Config,
        mutate: F,
    ) -> Result<(), HandlerError>
    where
        F: Fn(&mut BootstrapConfigStatus, Option<i64>, &str) -> bool,
    {
        let now = now_rfc3339();
        let what = format!("{} {}/{}", config.kind, config.namespace, config.name);
        super::status::read_modify_write(
            api,
            &config.name,
            &config.uid,
            crate::FIELD_MANAGER,
            Some(&config.raw),
            &what,
            |obj| {
                let mut status: BootstrapConfigStatus = match obj.data.get("status") {
                    None | Some(serde_json::Value::Null) => BootstrapConfigStatus::default(),
                    Some(v) => serde_json::from_value(v.clone())
                        .map_err(|e| HandlerError::bad_input("status", e.to_string()))?,
                };
                if !mutate(&mut status, obj.metadata.generation, &now) {
                    return Ok(None);
                }
                serde_json::to_value(&status)
                    .map(Some)
                    .map_err(|e| HandlerError::Panicked(format!("status does not serialize: {e}")))
            },
        )
        .await?;
        Ok(())
    }
}

fn has_node(machine: &Machine) -> bool {
    machine
        .status
        .as_ref()
        .is_some_and(|s| s.node_ref.is_some())
}

fn kubeconfig_wait(ns: &str, cluster: &str) -> Wait {
    Wait {
        reason: plan::REASON_WAITING_FOR_KUBECONFIG,
        message: format!(
            "Secret {ns}/{} does not exist yet",
            crate::children::secret_name(cluster)
        ),
        fallback: plan::WATCHED_WAIT,
    }
}
