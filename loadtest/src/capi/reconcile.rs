//! The reconcilers: MachineDeployment, MachineSet, Machine and Cluster,
//! each reading fresh state and writing only what differs.

use std::time::Duration;

use base64::Engine;
use drover_shared::api::capi::{
    Cluster, GROUP as CAPI_GROUP, Machine, MachineDeployment, MachineSet,
};
use drover_shared::api::common::{Condition, ConditionStatus};
use drover_shared::{conditions, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::{Map, Value, json};

use super::{CONTROL_PLANE_INITIALIZED_ANNOTATION, CapiSimError, Ctx, FIELD_MANAGER, Key, KeyKind};

const LOG: &str = "drover_loadtest::capi";
/// CAPI's annotation marking a Machine to delete first on scale down.
const DELETE_MACHINE: &str = "cluster.x-k8s.io/delete-machine";
/// CAPI's label with the template hash of a MachineSet.
const TEMPLATE_HASH: &str = "machine-template-hash";

type Requeue = Option<Duration>;

pub(super) async fn reconcile(ctx: &Ctx, key: &Key) -> Result<Requeue, CapiSimError> {
    match key.kind {
        KeyKind::MachineDeployment => machine_deployment(ctx, key).await,
        KeyKind::MachineSet => machine_set(ctx, key).await,
        KeyKind::Machine => machine(ctx, key).await,
        KeyKind::Cluster => cluster(ctx, key).await,
    }
}

// ---------------------------------------------------------------- helpers

fn api(ctx: &Ctx, ar: &ApiResource, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, ar)
}

fn capi_api<K: kube::Resource<DynamicType = ()>>(ctx: &Ctx, ns: &str) -> Api<DynamicObject> {
    api(ctx, &ApiResource::erase::<K>(&()), ns)
}

fn pp() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn pv() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn is_deleting(o: &DynamicObject) -> bool {
    o.metadata.deletion_timestamp.is_some()
}

fn is_paused(o: &DynamicObject) -> bool {
    o.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::PAUSED))
}

fn name(o: &DynamicObject) -> &str {
    o.metadata.name.as_deref().unwrap_or_default()
}

fn str_at<'a>(o: &'a DynamicObject, ptr: &str) -> Option<&'a str> {
    o.data
        .pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn true_at(o: &DynamicObject, ptr: &str) -> bool {
    o.data.pointer(ptr).and_then(Value::as_bool) == Some(true)
}

/// A controller owner reference to `o` (which must carry apiVersion and kind).
fn controller_ref(o: &DynamicObject, ar: &ApiResource) -> Result<OwnerReference, CapiSimError> {
    let uid = o
        .metadata
        .uid
        .clone()
        .ok_or_else(|| CapiSimError::Invalid(format!("{} {} has no uid", ar.kind, name(o))))?;
    Ok(OwnerReference {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        name: name(o).to_owned(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn is_controlled_by(o: &DynamicObject, uid: &str) -> bool {
    o.metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// `GET`, with 404 as `None`.
async fn get_opt(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<DynamicObject>, CapiSimError> {
    Ok(api.get_opt(name).await?)
}

/// Merge patch of the main resource, guarded by `rv`.
async fn patch_main(
    api: &Api<DynamicObject>,
    name: &str,
    rv: Option<&str>,
    mut body: Value,
) -> Result<DynamicObject, CapiSimError> {
    if let Some(rv) = rv {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(api.patch(name, &pp(), &Patch::Merge(&body)).await?)
}

/// Merge patch of `/status`, guarded by `rv`.
async fn patch_status(
    api: &Api<DynamicObject>,
    name: &str,
    rv: Option<&str>,
    status: Value,
) -> Result<DynamicObject, CapiSimError> {
    let mut body = json!({ "status": status });
    if let Some(rv) = rv {
        body["metadata"] = json!({ "resourceVersion": rv });
    }
    Ok(api.patch_status(name, &pp(), &Patch::Merge(&body)).await?)
}

/// 32-bit FNV-1a, as CAPI's hashes use.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// The hash suffix of a MachineSet name: of the template, as CAPI's
/// `ComputeSpewHash` + `SafeEncodeString` (a different hash input, same shape).
fn template_hash(template: &Value) -> String {
    safe_encode(&fnv32a(template.to_string().as_bytes()).to_string())
}

/// Five random characters, as `names.SimpleNameGenerator`.
fn random_suffix() -> String {
    let u = uuid::Uuid::new_v4();
    u.as_bytes()
        .iter()
        .take(5)
        .map(|b| SAFE[usize::from(*b) % SAFE.len()] as char)
        .collect()
}

/// A label value for a name, as CAPI's `labels.MustFormatValue`: the name if
/// it fits in 63 characters, else `hash_<fnv32a, base64url>_z`.
pub(crate) fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let h = fnv32a(name.as_bytes()).to_be_bytes();
    format!(
        "hash_{}_z",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h)
    )
}

fn string_map(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn selector_string(match_labels: &Map<String, Value>) -> String {
    match_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `{apiGroup, kind, name}` reference at `ptr`, if it names a kind.
fn reference(v: &Value, ptr: &str) -> Option<(String, String, String)> {
    let r = v.pointer(ptr)?;
    let kind = r.get("kind")?.as_str().filter(|s| !s.is_empty())?;
    let group = r
        .get("apiGroup")
        .and_then(Value::as_str)
        .map(str::to_owned)
        // v1beta1-shaped refs carry apiVersion instead.
        .or_else(|| {
            r.get("apiVersion")
                .and_then(Value::as_str)
                .map(|av| drover_shared::owners::group_of(av).to_owned())
        })
        .unwrap_or_default();
    let name = r.get("name")?.as_str()?.to_owned();
    Some((group, kind.to_owned(), name))
}

// ----------------------------------------------------- MachineDeployment

async fn machine_deployment(ctx: &Ctx, key: &Key) -> Result<Requeue, CapiSimError> {
    let ns = key.namespace.as_str();
    let mds = capi_api::<MachineDeployment>(ctx, ns);
    let Some(md) = get_opt(&mds, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&md) || is_paused(&md) {
        return Ok(None);
    }
    let md_uid = md.metadata.uid.clone().unwrap_or_default();
    let cluster = str_at(&md, "/spec/clusterName")
        .ok_or_else(|| {
            CapiSimError::Invalid(format!(
                "MachineDeployment {ns}/{} has no spec.clusterName",
                key.name
            ))
        })?
        .to_owned();
    let replicas = md
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let md_label = label_value(&key.name);

    // What every MachineSet of this deployment carries.
    let mut match_labels = string_map(md.data.pointer("/spec/selector/matchLabels"));
    match_labels.insert(labels::CLUSTER_NAME.into(), json!(cluster));
    match_labels.insert(labels::MACHINE_DEPLOYMENT_NAME.into(), json!(md_label));
    let mut template = md
        .data
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    {
        let tl = template
            .as_object_mut()
            .ok_or_else(|| CapiSimError::Invalid("spec.template is not an object".into()))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let mut l = string_map(tl.get("labels"));
        for (k, v) in &match_labels {
            l.insert(k.clone(), v.clone());
        }
        tl["labels"] = Value::Object(l);
    }
    template["spec"]["clusterName"] = json!(cluster);

    let sets = capi_api::<MachineSet>(ctx, ns);
    let lp =
        ListParams::default().labels(&format!("{}={md_label}", labels::MACHINE_DEPLOYMENT_NAME));
    let mut owned: Vec<DynamicObject> = sets
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|s| is_controlled_by(s, &md_uid))
        .collect();
    owned.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| name(a).cmp(name(b)))
    });

    if owned.is_empty() {
        let ms_name = format!("{}-{}", key.name, template_hash(&template));
        let mut ms_labels = string_map(template.pointer("/metadata/labels"));
        ms_labels.insert(TEMPLATE_HASH.into(), json!(template_hash(&template)));
        let obj = json!({
            "apiVersion": ApiResource::erase::<MachineSet>(&()).api_version,
            "kind": "MachineSet",
            "metadata": {
                "name": ms_name,
                "namespace": ns,
                "labels": ms_labels,
                "ownerReferences": [controller_ref(&md, &ApiResource::erase::<MachineDeployment>(&()))?],
            },
            "spec": {
                "clusterName": cluster,
                "replicas": replicas,
                "selector": {"matchLabels": match_labels},
                "template": template,
            }
        });
        let obj: DynamicObject =
            serde_json::from_value(obj).map_err(|e| CapiSimError::Invalid(e.to_string()))?;
        match sets.create(&pv(), &obj).await {
            Ok(_) => {
                tracing::info!(target: LOG, namespace = ns, machine_deployment = %key.name, machine_set = %ms_name, replicas, "created MachineSet")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        // Its watch event brings us back for the status.
        return Ok(None);
    }

    // The oldest set takes every replica; others (not ours) scale to zero.
    let mut total = 0;
    for (i, ms) in owned.iter().enumerate() {
        let want = if i == 0 { replicas } else { 0 };
        let have = ms.data.pointer("/spec/replicas").and_then(Value::as_i64);
        let have_template = ms.data.pointer("/spec/template");
        let mut patch = json!({});
        if have != Some(want) {
            patch["spec"]["replicas"] = json!(want);
        }
        if i == 0 && !contains(have_template.unwrap_or(&Value::Null), &template) {
            patch["spec"]["template"] = template.clone();
        }
        if patch != json!({}) {
            patch_main(
                &sets,
                name(ms),
                ms.metadata.resource_version.as_deref(),
                patch,
            )
            .await?;
            tracing::info!(target: LOG, namespace = ns, machine_set = %name(ms), replicas = want, "updated MachineSet");
        }
        total += ms
            .data
            .pointer("/status/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    }
    let status = json!({"replicas": total, "selector": selector_string(&match_labels)});
    if !contains(md.data.get("status").unwrap_or(&Value::Null), &status) {
        patch_status(
            &mds,
            &key.name,
            md.metadata.resource_version.as_deref(),
            status,
        )
        .await?;
    }
    Ok(None)
}

/// Whether `have` already holds every field of `want` (what a merge patch
/// of `want` would leave unchanged). A missing field counts as holding
/// `null` and empty objects, which servers may prune, so that a pruned
/// field never makes the same patch go out on every reconcile.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => contains(hv, wv),
            None => is_empty(wv),
        }),
        _ => have == want,
    }
}

/// `null`, or an object with nothing but empty values.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        _ => false,
    }
}

// ------------------------------------------------------------ MachineSet

async fn machine_set(ctx: &Ctx, key: &Key) -> Result<Requeue, CapiSimError> {
    let ns = key.namespace.as_str();
    let sets = capi_api::<MachineSet>(ctx, ns);
    let Some(ms) = get_opt(&sets, &key.name).await? else {
        return Ok(None);
    };
    if is_deleting(&ms) || is_paused(&ms) {
        return Ok(None);
    }
    let uid = ms.metadata.uid.clone().unwrap_or_default();
    let replicas = ms
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let machines = capi_api::<Machine>(ctx, ns);
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        labels::MACHINE_SET_NAME,
        label_value(&key.name)
    ));
    let mut active: Vec<DynamicObject> = machines
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|m| is_controlled_by(m, &uid) && !is_deleting(m))
        .collect();
    let have = i64::try_from(active.len()).unwrap_or(i64::MAX);
    let mut count = have;
    if have < replicas {
        for _ in have..replicas {
            create_machine(ctx, &ms).await?;
            count += 1;
        }
    } else if have > replicas {
        // Marked first, then newest first.
        active.sort_by(|a, b| {
            let marked = |m: &DynamicObject| {
                m.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(DELETE_MACHINE))
            };
            marked(b)
                .cmp(&marked(a))
                .then_with(|| {
                    b.metadata
                        .creation_timestamp
                        .cmp(&a.metadata.creation_timestamp)
                })
                .then_with(|| name(b).cmp(name(a)))
        });
        let excess = usize::try_from(have - replicas).unwrap_or(0);
        for m in active.iter().take(excess) {
            match machines.delete(name(m), &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(target: LOG, namespace = ns, machine_set = %key.name, machine = %name(m), "deleted Machine (scale down)");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            count -= 1;
        }
    }
    let match_labels = string_map(ms.data.pointer("/spec/selector/matchLabels"));
    let status = json!({"replicas": count, "selector": selector_string(&match_labels)});
    if !contains(ms.data.get("status").unwrap_or(&Value::Null), &status) {
        patch_status(
            &sets,
            &key.name,
            ms.metadata.resource_version.as_deref(),
            status,
        )
        .await?;
    }
    Ok(None)
}

/// Creates one Machine of `ms`, cloning its bootstrap (and infrastructure)
/// templates first; on failure removes what it cloned.
async fn create_machine(ctx: &Ctx, ms: &DynamicObject) -> Result<(), CapiSimError> {
    let ns = ms.metadata.namespace.clone().unwrap_or_default();
    let ms_name = name(ms).to_owned();
    let cluster = str_at(ms, "/spec/clusterName")
        .ok_or_else(|| {
            CapiSimError::Invalid(format!("MachineSet {ns}/{ms_name} has no spec.clusterName"))
        })?
        .to_owned();
    let machine_name = format!("{ms_name}-{}", random_suffix());
    let owner = controller_ref(ms, &ApiResource::erase::<MachineSet>(&()))?;
    let template = ms
        .data
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["clusterName"] = json!(cluster);

    let mut clones: Vec<(ApiResource, String)> = Vec::new();
    let result = async {
        if let Some((group, kind, tname)) = reference(&spec, "/bootstrap/configRef") {
            let Some((r, ar)) = clone_template(ctx, &ns, &group, &kind, &tname, &machine_name, &cluster, &owner).await? else {
                return Err(CapiSimError::Invalid(format!(
                    "bootstrap template {kind}.{group} {ns}/{tname} of MachineSet {ms_name} not found"
                )));
            };
            clones.push((ar, machine_name.clone()));
            spec["bootstrap"]["configRef"] = r;
        }
        if let Some((group, kind, tname)) = reference(&spec, "/infrastructureRef")
            && kind.ends_with("Template")
                && let Some((r, ar)) = clone_template(ctx, &ns, &group, &kind, &tname, &machine_name, &cluster, &owner).await? {
                    clones.push((ar, machine_name.clone()));
                    spec["infrastructureRef"] = r;
                }
        let mut mlabels = string_map(template.pointer("/metadata/labels"));
        mlabels.insert(labels::CLUSTER_NAME.into(), json!(cluster));
        mlabels.insert(labels::MACHINE_SET_NAME.into(), json!(label_value(&ms_name)));
        if let Some(md) = ms.metadata.labels.as_ref().and_then(|l| l.get(labels::MACHINE_DEPLOYMENT_NAME)) {
            mlabels.insert(labels::MACHINE_DEPLOYMENT_NAME.into(), json!(md));
        }
        let annotations = string_map(template.pointer("/metadata/annotations"));
        let obj = json!({
            "apiVersion": ApiResource::erase::<Machine>(&()).api_version,
            "kind": "Machine",
            "metadata": {
                "name": machine_name,
                "namespace": ns,
                "labels": mlabels,
                "annotations": annotations,
                "ownerReferences": [owner],
            },
            "spec": spec,
        });
        let obj: DynamicObject = serde_json::from_value(obj).map_err(|e| CapiSimError::Invalid(e.to_string()))?;
        capi_api::<Machine>(ctx, &ns).create(&pv(), &obj).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: LOG, namespace = %ns, machine_set = %ms_name, machine = %machine_name, "created Machine");
            Ok(())
        }
        Err(e) => {
            for (ar, n) in clones {
                let _ = api(ctx, &ar, &ns)
                    .delete(&n, &DeleteParams::background())
                    .await;
            }
            Err(e)
        }
    }
}

/// Clones `kind` (a `*Template` of `group`) named `tname` into its
/// non-template kind named `new_name`, as CAPI's `external.CreateFromTemplate`.
/// `None` if the template, or the kind it makes, is not there.
#[allow(clippy::too_many_arguments)]
async fn clone_template(
    ctx: &Ctx,
    ns: &str,
    group: &str,
    kind: &str,
    tname: &str,
    new_name: &str,
    cluster: &str,
    owner: &OwnerReference,
) -> Result<Option<(Value, ApiResource)>, CapiSimError> {
    let Some(target_kind) = kind.strip_suffix("Template") else {
        return Ok(None);
    };
    let Some(tar) = ctx.kinds.resolve(group, kind).await? else {
        return Ok(None);
    };
    let Some(tmpl) = get_opt(&api(ctx, &tar, ns), tname).await? else {
        return Ok(None);
    };
    let Some(ar) = ctx.kinds.resolve(group, target_kind).await? else {
        return Ok(None);
    };
    let spec = tmpl
        .data
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut l = string_map(tmpl.data.pointer("/spec/template/metadata/labels"));
    l.insert(labels::CLUSTER_NAME.into(), json!(cluster));
    let mut a = string_map(tmpl.data.pointer("/spec/template/metadata/annotations"));
    a.insert(labels::CLONED_FROM_NAME.into(), json!(tname));
    a.insert(
        labels::CLONED_FROM_GROUPKIND.into(),
        json!(format!("{kind}.{group}")),
    );
    let obj = json!({
        "apiVersion": ar.api_version,
        "kind": target_kind,
        "metadata": {
            "name": new_name,
            "namespace": ns,
            "labels": l,
            "annotations": a,
            "ownerReferences": [owner],
        },
        "spec": spec,
    });
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| CapiSimError::Invalid(e.to_string()))?;
    match api(ctx, &ar, ns).create(&pv(), &obj).await {
        Ok(_) => {
            tracing::debug!(target: LOG, namespace = ns, template = tname, kind = target_kind, name = new_name, "cloned from template");
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Some((
        json!({"apiGroup": group, "kind": target_kind, "name": new_name}),
        ar,
    )))
}

// --------------------------------------------------------------- Machine

async fn machine(ctx: &Ctx, key: &Key) -> Result<Requeue, CapiSimError> {
    let ns = key.namespace.as_str();
    let machines = capi_api::<Machine>(ctx, ns);
    let Some(m) = get_opt(&machines, &key.name).await? else {
        return Ok(None);
    };
    if is_paused(&m) {
        return Ok(None);
    }
    let mut requeue: Requeue = None;
    let mut spec_patch = json!({});
    let mut status = json!({});
    let cluster = str_at(&m, "/spec/clusterName")
        .unwrap_or_default()
        .to_owned();
    let machine_ref = controller_ref(&m, &ApiResource::erase::<Machine>(&()))?;
    let deleting = is_deleting(&m);

    // Bootstrap.
    let mut bootstrap_ready = true_at(&m, "/status/initialization/bootstrapDataSecretCreated");
    if let Some((group, kind, cname)) = reference(&m.data, "/spec/bootstrap/configRef") {
        match ctx.kinds.resolve(&group, &kind).await? {
            None => requeue = Some(ctx.config.poll_interval),
            Some(ar) => {
                let configs = api(ctx, &ar, ns);
                match get_opt(&configs, &cname).await? {
                    None => requeue = Some(ctx.config.poll_interval),
                    Some(cfg) if !deleting => {
                        adopt(&configs, &cfg, &machine_ref, &cluster).await?;
                        let created = true_at(&cfg, "/status/initialization/dataSecretCreated")
                            || true_at(&cfg, "/status/ready");
                        if let (true, Some(secret)) =
                            (created, str_at(&cfg, "/status/dataSecretName"))
                        {
                            if str_at(&m, "/spec/bootstrap/dataSecretName") != Some(secret) {
                                spec_patch["spec"]["bootstrap"]["dataSecretName"] = json!(secret);
                                tracing::info!(target: LOG, namespace = ns, machine = %key.name, secret, "bootstrap data secret set");
                            }
                            if !bootstrap_ready {
                                status["initialization"]["bootstrapDataSecretCreated"] =
                                    json!(true);
                                bootstrap_ready = true;
                            }
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    } else if str_at(&m, "/spec/bootstrap/dataSecretName").is_some() && !bootstrap_ready {
        status["initialization"]["bootstrapDataSecretCreated"] = json!(true);
        bootstrap_ready = true;
    }

    // Infrastructure.
    let mut infra_ready = true_at(&m, "/status/initialization/infrastructureProvisioned");
    if let Some((group, kind, iname)) = reference(&m.data, "/spec/infrastructureRef")
        && !kind.ends_with("Template")
        && let Some(ar) = ctx.kinds.resolve(&group, &kind).await?
    {
        let infras = api(ctx, &ar, ns);
        match get_opt(&infras, &iname).await? {
            None => {
                if !infra_ready {
                    requeue = Some(ctx.config.poll_interval);
                }
            }
            Some(inf) if !deleting => {
                adopt(&infras, &inf, &machine_ref, &cluster).await?;
                let provisioned = true_at(&inf, "/status/initialization/provisioned")
                    || true_at(&inf, "/status/ready");
                let provider_id = str_at(&inf, "/spec/providerID");
                if provisioned && provider_id.is_some() {
                    if str_at(&m, "/spec/providerID") != provider_id {
                        spec_patch["spec"]["providerID"] = json!(provider_id);
                    }
                    if let Some(addrs) = inf.data.pointer("/status/addresses")
                        && m.data.pointer("/status/addresses") != Some(addrs)
                    {
                        status["addresses"] = addrs.clone();
                    }
                    if !infra_ready {
                        status["initialization"]["infrastructureProvisioned"] = json!(true);
                        infra_ready = true;
                    }
                } else if !infra_ready
                    && !ctx
                        .config
                        .watched_kinds
                        .contains(&(group.clone(), kind.clone()))
                {
                    requeue = Some(ctx.config.poll_interval);
                }
            }
            Some(_) => {}
        }
    }

    let phase = if deleting {
        "Deleting"
    } else if m
        .data
        .pointer("/status/nodeRef")
        .is_some_and(|v| !v.is_null())
    {
        "Running"
    } else if infra_ready {
        "Provisioned"
    } else if bootstrap_ready {
        "Provisioning"
    } else {
        "Pending"
    };
    if str_at(&m, "/status/phase") != Some(phase) {
        status["phase"] = json!(phase);
    }

    let mut rv = m.metadata.resource_version.clone();
    if spec_patch != json!({}) {
        let updated = patch_main(&machines, &key.name, rv.as_deref(), spec_patch).await?;
        rv = updated.metadata.resource_version;
    }
    if status != json!({}) {
        patch_status(&machines, &key.name, rv.as_deref(), status).await?;
    }
    Ok(requeue)
}

/// Gives `o` a controller ownerReference to the Machine (dropping the
/// "on-create" MachineSet and control-plane owners) and the cluster-name label.
async fn adopt(
    api: &Api<DynamicObject>,
    o: &DynamicObject,
    machine: &OwnerReference,
    cluster: &str,
) -> Result<(), CapiSimError> {
    let refs = o.metadata.owner_references.clone().unwrap_or_default();
    let mut new: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| {
            let g = drover_shared::owners::group_of(&r.api_version);
            let on_create =
                (g == CAPI_GROUP && r.kind == "MachineSet") || g == "controlplane.cluster.x-k8s.io";
            r.uid == machine.uid || !(on_create && r.controller == Some(true))
        })
        .cloned()
        .collect();
    if !new
        .iter()
        .any(|r| r.uid == machine.uid && r.controller == Some(true))
    {
        if let Some(other) = new
            .iter()
            .find(|r| r.controller == Some(true) && r.uid != machine.uid)
        {
            tracing::warn!(
                target: LOG, object = %name(o), controller = %other.name,
                machine = %machine.name, "referenced object is controlled by someone else; not adopting"
            );
            return Ok(());
        }
        new.retain(|r| r.uid != machine.uid);
        new.push(machine.clone());
    }
    let has_label = o
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::CLUSTER_NAME))
        .is_some_and(|v| v == cluster);
    if new == refs && (has_label || cluster.is_empty()) {
        return Ok(());
    }
    let mut body = json!({"metadata": {"ownerReferences": new}});
    if !cluster.is_empty() {
        body["metadata"]["labels"] = json!({ labels::CLUSTER_NAME: cluster });
    }
    patch_main(api, name(o), o.metadata.resource_version.as_deref(), body).await?;
    tracing::info!(target: LOG, object = %name(o), machine = %machine.name, "owner reference and cluster-name label set");
    Ok(())
}

// --------------------------------------------------------------- Cluster

async fn cluster(ctx: &Ctx, key: &Key) -> Result<Requeue, CapiSimError> {
    let ns = key.namespace.as_str();
    let clusters = capi_api::<Cluster>(ctx, ns);
    let Some(c) = get_opt(&clusters, &key.name).await? else {
        return Ok(None);
    };
    if is_paused(&c) || true_at(&c, "/spec/paused") {
        return Ok(None);
    }
    let mut requeue: Requeue = None;
    let was_infra = true_at(&c, "/status/initialization/infrastructureProvisioned");
    let was_cp = true_at(&c, "/status/initialization/controlPlaneInitialized");
    let has_endpoint = str_at(&c, "/spec/controlPlaneEndpoint/host").is_some()
        && c.data
            .pointer("/spec/controlPlaneEndpoint/port")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            != 0;
    let mut endpoint: Option<Value> = None;

    // Infrastructure.
    let infra_ref = reference(&c.data, "/spec/infrastructureRef");
    let mut infra = was_infra;
    if let Some((group, kind, iname)) = &infra_ref {
        if let Some(obj) = get_ref(ctx, ns, group, kind, iname).await? {
            let provisioned = true_at(&obj, "/status/initialization/provisioned")
                || true_at(&obj, "/status/ready");
            infra |= provisioned;
            if provisioned {
                endpoint = endpoint.or_else(|| valid_endpoint(&obj));
            }
        }
        if !infra
            && !ctx
                .config
                .watched_kinds
                .contains(&(group.clone(), kind.clone()))
        {
            requeue = Some(ctx.config.poll_interval);
        }
    } else {
        infra = true;
    }

    // Control plane.
    let cp_ref = reference(&c.data, "/spec/controlPlaneRef");
    let mut reported = false;
    if let Some((group, kind, cname)) = &cp_ref {
        if let Some(obj) = get_ref(ctx, ns, group, kind, cname).await? {
            reported = true_at(&obj, "/status/initialization/controlPlaneInitialized")
                || true_at(&obj, "/status/initialized");
            endpoint = valid_endpoint(&obj).or(endpoint);
        }
        if !reported
            && !was_cp
            && !ctx
                .config
                .watched_kinds
                .contains(&(group.clone(), kind.clone()))
        {
            requeue = Some(ctx.config.poll_interval);
        }
    }
    let override_ = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTROL_PLANE_INITIALIZED_ANNOTATION))
        .map(|v| v.eq_ignore_ascii_case("true"));
    let marked = override_.unwrap_or(ctx.config.mark_control_plane_initialized);
    let cp = was_cp || reported || marked;

    // Endpoint.
    if !has_endpoint {
        endpoint = endpoint.or_else(|| {
            ctx.config
                .control_plane_endpoint
                .as_ref()
                .filter(|e| e.is_valid())
                .map(|e| json!({"host": e.host, "port": e.port}))
        });
        if let Some(ep) = &endpoint {
            let updated = patch_main(
                &clusters,
                &key.name,
                c.metadata.resource_version.as_deref(),
                json!({"spec": {"controlPlaneEndpoint": ep}}),
            )
            .await?;
            tracing::info!(target: LOG, namespace = ns, cluster = %key.name, endpoint = %ep, "control plane endpoint set");
            // The watch event brings the status pass with the new version.
            let _ = updated;
            return Ok(Some(Duration::ZERO));
        }
    }

    // Status.
    let generation = c.metadata.generation;
    let mut conds: Vec<Condition> = c
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let now = now();
    let infra_cond = if infra {
        conditions::new(
            conditions::INFRASTRUCTURE_READY,
            ConditionStatus::True,
            "Ready",
            "",
            generation,
        )
    } else {
        conditions::new(
            conditions::INFRASTRUCTURE_READY,
            ConditionStatus::False,
            "NotReady",
            "waiting for the infrastructure to be provisioned",
            generation,
        )
    };
    let cp_cond = if cp {
        conditions::new(
            conditions::CONTROL_PLANE_INITIALIZED,
            ConditionStatus::True,
            "Initialized",
            "",
            generation,
        )
    } else if override_ == Some(false) {
        conditions::new(
            conditions::CONTROL_PLANE_INITIALIZED,
            ConditionStatus::False,
            "NotInitialized",
            format!("held back by annotation {CONTROL_PLANE_INITIALIZED_ANNOTATION}"),
            generation,
        )
    } else {
        conditions::new(
            conditions::CONTROL_PLANE_INITIALIZED,
            ConditionStatus::False,
            "NotInitialized",
            "waiting for the control plane to be initialized",
            generation,
        )
    };
    let mut changed = conditions::set(&mut conds, infra_cond, &now);
    changed |= conditions::set(&mut conds, cp_cond, &now);
    let phase = if is_deleting(&c) {
        "Deleting"
    } else if infra && has_endpoint {
        "Provisioned"
    } else if infra_ref.is_some() || cp_ref.is_some() {
        "Provisioning"
    } else {
        "Pending"
    };
    let mut status = json!({});
    if infra != was_infra || cp != was_cp || c.data.pointer("/status/initialization").is_none() {
        status["initialization"] =
            json!({"infrastructureProvisioned": infra, "controlPlaneInitialized": cp});
    }
    if changed {
        status["conditions"] =
            serde_json::to_value(&conds).map_err(|e| CapiSimError::Invalid(e.to_string()))?;
    }
    if str_at(&c, "/status/phase") != Some(phase) {
        status["phase"] = json!(phase);
    }
    if status != json!({}) {
        patch_status(
            &clusters,
            &key.name,
            c.metadata.resource_version.as_deref(),
            status,
        )
        .await?;
        if cp && !was_cp {
            tracing::info!(target: LOG, namespace = ns, cluster = %key.name, reported, "control plane initialized");
        }
        if infra && !was_infra {
            tracing::info!(target: LOG, namespace = ns, cluster = %key.name, "infrastructure provisioned");
        }
    }
    Ok(requeue)
}

async fn get_ref(
    ctx: &Ctx,
    ns: &str,
    group: &str,
    kind: &str,
    name: &str,
) -> Result<Option<DynamicObject>, CapiSimError> {
    match ctx.kinds.resolve(group, kind).await? {
        Some(ar) => get_opt(&api(ctx, &ar, ns), name).await,
        None => Ok(None),
    }
}

fn valid_endpoint(o: &DynamicObject) -> Option<Value> {
    let host = str_at(o, "/spec/controlPlaneEndpoint/host")?;
    let port = o
        .data
        .pointer("/spec/controlPlaneEndpoint/port")
        .and_then(Value::as_i64)?;
    (port != 0).then(|| json!({"host": host, "port": port}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_fit() {
        assert_eq!(label_value("md-1"), "md-1");
        let long = "x".repeat(80);
        let v = label_value(&long);
        assert!(
            v.len() <= 63 && v.starts_with("hash_") && v.ends_with("_z"),
            "{v}"
        );
        assert_eq!(v, label_value(&long), "deterministic");
    }

    #[test]
    fn template_hash_is_stable_and_safe() {
        let a = template_hash(&json!({"spec": {"version": "v1.33.1"}}));
        assert_eq!(a, template_hash(&json!({"spec": {"version": "v1.33.1"}})));
        assert_ne!(a, template_hash(&json!({"spec": {"version": "v1.34.0"}})));
        assert!(a.bytes().all(|b| SAFE.contains(&b)));
    }

    #[test]
    fn contains_is_merge_patch_noop() {
        let have = json!({"a": 1, "b": {"c": 2, "d": 3}});
        assert!(contains(&have, &json!({"b": {"c": 2}})));
        assert!(!contains(&have, &json!({"b": {"c": 3}})));
        assert!(contains(&have, &json!({"x": null})));
        assert!(
            contains(&have, &json!({"x": {"y": {}}})),
            "pruned empty objects"
        );
        assert!(!contains(&have, &json!({"x": {"y": 1}})));
        assert!(!contains(&have, &json!({"a": null})));
    }

    #[test]
    fn references_accept_both_shapes() {
        let v = json!({"r": {"apiGroup": "g.io", "kind": "K", "name": "n"},
                       "o": {"apiVersion": "g.io/v1beta1", "kind": "K", "name": "n"}});
        assert_eq!(
            reference(&v, "/r"),
            Some(("g.io".into(), "K".into(), "n".into()))
        );
        assert_eq!(
            reference(&v, "/o"),
            Some(("g.io".into(), "K".into(), "n".into()))
        );
        assert_eq!(reference(&v, "/missing"), None);
    }
}
