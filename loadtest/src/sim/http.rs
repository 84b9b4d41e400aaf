//! The HTTP face of a simulated cluster: paths, query parameters, content
//! types and status codes as a real apiserver uses them, plus discovery and
//! `kubectl get`'s Table output.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

use super::cluster::{
    Cluster, DeleteOptions, ListQuery, ObjectList, PatchType, Propagation, Target, WriteOptions,
    get_path,
};
use super::discovery;
use super::error::ApiError;
use super::faults::{Fault, Faults};
use super::selector::{FieldSelector, LabelSelector};
use super::watch::{self, Render, WatchParams};

/// A response body: whole, or streamed for watches.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the apiserver's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Per-server settings the handler needs.
#[derive(Clone)]
pub struct Handler {
    /// The cluster served.
    pub cluster: Arc<Cluster>,
    /// Bearer tokens accepted (TLS mode); empty means no token auth.
    pub tokens: Arc<Vec<String>>,
    /// Whether requests must authenticate (TLS mode).
    pub require_auth: bool,
    /// Fault injection.
    pub faults: Arc<Faults>,
    /// How often watches get a bookmark.
    pub bookmark_interval: Duration,
    /// The sim this cluster belongs to, for `/kube-sim/v1/clusters`.
    pub(crate) sim: std::sync::Weak<super::server::SimInner>,
}

impl Handler {
    /// Serves one request. `client_cert` says whether the TLS client
    /// presented a certificate the cluster CA signed.
    pub async fn serve(&self, req: Request<Incoming>, client_cert: bool) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
            return text(StatusCode::OK, "ok");
        }
        if self.require_auth && !client_cert && !self.bearer_ok(&req) {
            return error(&ApiError::unauthorized());
        }
        // The sim's own control paths are never faulted, so faults can be lifted.
        let fault = if path.starts_with("/kube-sim/") {
            Fault::None
        } else {
            self.faults.before_request(!is_watch(&req)).await
        };
        match fault {
            Fault::None => {}
            Fault::Error(e) => {
                let mut r = error(&e);
                if e.code == 429 {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                }
                return r;
            }
        }
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => error(&e),
        }
    }

    fn bearer_ok(&self, req: &Request<Incoming>) -> bool {
        let Some(auth) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
        else {
            return false;
        };
        auth.strip_prefix("Bearer ")
            .is_some_and(|t| self.tokens.iter().any(|k| k == t))
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let reg = || self.cluster.registry();
        if req.method() == Method::GET {
            let doc = match segs.as_slice() {
                [] => Some(discovery::root_paths(&reg())),
                ["version"] => Some(discovery::version()),
                ["api"] => Some(discovery::core_versions()),
                ["apis"] => Some(discovery::group_list(&reg())),
                ["api", "v1"] => Some(discovery::resource_list(&reg(), "", "v1")?),
                ["apis", g] => Some(discovery::group(&reg(), g)?),
                ["apis", g, v] => Some(discovery::resource_list(&reg(), g, v)?),
                ["openapi", "v3"] => Some(discovery::openapi_v3_root(&reg())),
                ["openapi", "v3", "api", "v1"] => {
                    Some(discovery::openapi_v3_group_version(&reg(), "", "v1")?)
                }
                ["openapi", "v3", "apis", g, v] => {
                    Some(discovery::openapi_v3_group_version(&reg(), g, v)?)
                }
                ["openapi", ..] => return Err(ApiError::not_found_path()),
                _ => None,
            };
            if let Some(doc) = doc {
                return Ok(json_response(StatusCode::OK, &doc));
            }
        }
        if let ["kube-sim", "v1", "faults"] = segs.as_slice() {
            let method = req.method().clone();
            let body = if method == Method::PUT {
                read_json(req, "application/json", false).await?
            } else {
                Value::Null
            };
            return self.faults_api(&method, &body);
        }
        if let ["kube-sim", "v1", "clusters", rest @ ..] = segs.as_slice() {
            let method = req.method().clone();
            let name = rest.first().map(|s| (*s).to_owned());
            let body = if method == Method::POST {
                read_json(req, "application/json", false).await?
            } else {
                Value::Null
            };
            return self.clusters_api(&method, name.as_deref(), &body).await;
        }
        let (group, version, rest) = match segs.as_slice() {
            ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
            ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
            _ => return Err(ApiError::not_found_path()),
        };
        let target = self.cluster.resolve(group, version, rest)?;
        let query = Query::parse(req.uri().query().unwrap_or_default());
        let accept = Accept::parse(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default(),
        )?;
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let method = req.method().clone();
        let write = || -> Result<WriteOptions, ApiError> {
            Ok(WriteOptions {
                dry_run: query.dry_run()?,
                field_manager: query.get("fieldManager").map(str::to_owned),
                force: query.get("force") == Some("true"),
                user_agent: user_agent.clone(),
                strict: query.get("fieldValidation") == Some("Strict"),
            })
        };
        let c = &self.cluster;
        match method {
            Method::GET if target.name.is_none() || query.is_watch() => {
                let q = list_query(&target, &query)?;
                if query.is_watch() {
                    return self.watch(target, q, &query, accept);
                }
                let list = c.list(&target, &q)?;
                Ok(accept.respond_list(&target, &list))
            }
            Method::GET => {
                let obj = c.get(&target)?;
                Ok(accept.respond_one(StatusCode::OK, &target, &obj))
            }
            Method::POST if target.name.is_none() => {
                let body = read_json(req, &content_type, false).await?;
                let obj = c.create(&target, body, &write()?)?;
                Ok(accept.respond_one(StatusCode::CREATED, &target, &obj))
            }
            Method::PUT if target.name.is_some() => {
                let body = read_json(req, &content_type, false).await?;
                let obj = c.replace(&target, body, &write()?)?;
                Ok(accept.respond_one(StatusCode::OK, &target, &obj))
            }
            Method::PATCH if target.name.is_some() => {
                let ty = match content_type.as_str() {
                    "application/merge-patch+json" => PatchType::Merge,
                    "application/json-patch+json" => PatchType::Json,
                    "application/strategic-merge-patch+json" => PatchType::Strategic,
                    "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                        PatchType::Apply
                    }
                    other => {
                        return Err(ApiError::unsupported_media_type(format!(
                            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                        )));
                    }
                };
                let body = read_json(req, &content_type, ty == PatchType::Apply).await?;
                let (obj, created) = c.patch(&target, ty, body, &write()?)?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(accept.respond_one(code, &target, &obj))
            }
            Method::DELETE => {
                let body = read_json(req, &content_type, false)
                    .await
                    .unwrap_or(Value::Null);
                let opts = delete_options(&body, &query)?;
                if target.name.is_none() {
                    let q = list_query(&target, &query)?;
                    let list = c.delete_collection(&target, &q, &opts)?;
                    return Ok(json_response(StatusCode::OK, &list));
                }
                let obj = c.delete(&target, &opts)?;
                Ok(json_response(StatusCode::OK, &*obj))
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    /// `/kube-sim/v1/faults`: this cluster's fault injection, for load tests
    /// that run the sim as a separate process. PUT sets the fields given
    /// (`latencyMs`, `errorRate`, `throttleRate`, `watchDropAfterMs` (0: off),
    /// `historyLimit`, `expireHistory: true`); GET reads them.
    fn faults_api(&self, method: &Method, body: &Value) -> Result<Response<Body>, ApiError> {
        if method == Method::PUT {
            let num = |k: &str| body.get(k).and_then(Value::as_f64);
            let bad = |k: &str| {
                ApiError::invalid(
                    "Faults",
                    "",
                    vec![(k.into(), "Invalid value: must be a number in range".into())],
                )
            };
            if let Some(ms) = num("latencyMs") {
                if ms < 0.0 {
                    return Err(bad("latencyMs"));
                }
                self.faults
                    .set_latency(Duration::from_secs_f64(ms / 1000.0));
            }
            for (k, set) in [
                ("errorRate", Faults::set_error_rate as fn(&Faults, f64)),
                ("throttleRate", Faults::set_throttle_rate),
            ] {
                if let Some(r) = num(k) {
                    if !(0.0..=1.0).contains(&r) {
                        return Err(bad(k));
                    }
                    set(&self.faults, r);
                }
            }
            if let Some(ms) = num("watchDropAfterMs") {
                self.faults
                    .set_watch_drop_after((ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0)));
            }
            if let Some(n) = body.get("historyLimit").and_then(Value::as_u64) {
                self.cluster
                    .set_history_limit(usize::try_from(n).unwrap_or(usize::MAX));
            }
            if body.get("expireHistory") == Some(&Value::Bool(true)) {
                self.cluster.expire_history();
            }
        } else if method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        Ok(json_response(StatusCode::OK, &self.faults.describe()))
    }

    /// `/kube-sim/v1/clusters[/{name}]`: list, create (`{"name": ...}`),
    /// read (with the kubeconfig) and delete clusters at run time.
    async fn clusters_api(
        &self,
        method: &Method,
        name: Option<&str>,
        body: &Value,
    ) -> Result<Response<Body>, ApiError> {
        let sim = self
            .sim
            .upgrade()
            .ok_or_else(|| ApiError::internal("the sim is shutting down"))?;
        let describe = |h: &super::server::ClusterHandle, kubeconfig: bool| {
            let mut v = json!({"name": h.name, "url": h.url});
            if kubeconfig {
                v["kubeconfig"] = h.kubeconfig.clone().into();
            }
            v
        };
        let sim_error = |e: super::server::SimError| match e {
            super::server::SimError::Exists(n) => ApiError::already_exists("clusters.kube-sim", &n),
            super::server::SimError::NoSuchCluster(n) => {
                ApiError::not_found("clusters.kube-sim", &n)
            }
            super::server::SimError::InvalidName(n) => ApiError::invalid(
                "Cluster",
                &n,
                vec![(
                    "name".into(),
                    format!("Invalid value: {n:?}: must be a lowercase RFC 1123 subdomain"),
                )],
            ),
            other => ApiError::internal(other.to_string()),
        };
        match (method, name) {
            (&Method::GET, None) => {
                let list: Vec<Value> = sim
                    .names()
                    .iter()
                    .filter_map(|n| sim.cluster(n))
                    .map(|h| describe(&h, false))
                    .collect();
                Ok(json_response(StatusCode::OK, &json!({"clusters": list})))
            }
            (&Method::POST, None) => {
                let name = body["name"].as_str().ok_or_else(|| {
                    ApiError::invalid(
                        "Cluster",
                        "",
                        vec![("name".into(), "Required value".into())],
                    )
                })?;
                let h = sim.add_cluster(name, None).map_err(sim_error)?;
                Ok(json_response(StatusCode::CREATED, &describe(&h, true)))
            }
            (&Method::GET, Some(n)) => {
                let h = sim
                    .cluster(n)
                    .ok_or_else(|| ApiError::not_found("clusters.kube-sim", n))?;
                Ok(json_response(StatusCode::OK, &describe(&h, true)))
            }
            (&Method::DELETE, Some(n)) => {
                sim.remove_cluster(n).map_err(sim_error)?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"name": n, "deleted": true}),
                ))
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    fn watch(
        &self,
        target: Target,
        q: ListQuery,
        query: &Query,
        accept: Accept,
    ) -> Result<Response<Body>, ApiError> {
        let rv =
            match query.get("resourceVersion").filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {s:?}"))
                })?),
            };
        let send_initial = query.get("sendInitialEvents") == Some("true");
        let bookmarks = query.get("allowWatchBookmarks") == Some("true");
        if send_initial && !bookmarks {
            return Err(ApiError::invalid_message(
                "sendInitialEvents: Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true",
            ));
        }
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);
        let params = WatchParams {
            query: q,
            resource_version: rv,
            send_initial_events: send_initial,
            bookmarks,
            timeout,
            bookmark_interval: self.bookmark_interval,
            drop_after: self.faults.watch_drop_after(),
        };
        let render: Render = Arc::new(move |t: &Target, obj: &Value| accept.render_event(t, obj));
        let rx = watch::start(self.cluster.clone(), target, params, render);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let body = BoxBody::new(StreamBody::new(stream));
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(body)
            .expect("static response parts are valid"))
    }
}

fn is_watch(req: &Request<Incoming>) -> bool {
    Query::parse(req.uri().query().unwrap_or_default()).is_watch()
}

fn list_query(t: &Target, q: &Query) -> Result<ListQuery, ApiError> {
    let extra: &[&str] = match (t.info.group.as_str(), t.info.kind.as_str()) {
        ("", "Pod") => &["spec.nodeName", "status.phase"],
        ("", "Secret") => &["type"],
        // events.k8s.io selectors are rewritten to these core fields below.
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "regarding.kind",
            "regarding.name",
            "reason",
            "type",
        ],
        ("", "Node") => &["spec.unschedulable"],
        _ => &[],
    };
    Ok(ListQuery {
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
        fields: {
            let raw = q.get("fieldSelector").unwrap_or_default();
            if super::events::is_view(&t.info.group, &t.info.plural) {
                FieldSelector::parse(&super::events::field_selector_to_core(raw), extra)?
            } else {
                FieldSelector::parse(raw, extra)?
            }
        },
        limit: q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0),
        continue_token: q.get("continue").map(str::to_owned),
    })
}

fn delete_options(body: &Value, q: &Query) -> Result<DeleteOptions, ApiError> {
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| q.get("propagationPolicy"));
    let propagation = match policy {
        None => match body.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Propagation::Orphan,
            _ => Propagation::Background,
        },
        Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::invalid_message(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let dry = match body.get("dryRun").and_then(Value::as_array) {
        Some(list) => list.iter().any(|v| v == "All"),
        None => q.dry_run()?,
    };
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run: dry,
    })
}

async fn read_json(
    req: Request<Incoming>,
    content_type: &str,
    yaml_ok: bool,
) -> Result<Value, ApiError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!("request body: {e}"),
            details: None,
        })?
        .to_bytes();
    if body.is_empty() {
        return Ok(Value::Null);
    }
    if content_type == "application/vnd.kubernetes.protobuf" {
        return super::protobuf::decode(&body).map_err(|e| match e {
            super::protobuf::ProtobufError::Unsupported(_) => {
                ApiError::unsupported_media_type(e.to_string())
            }
            super::protobuf::ProtobufError::Malformed(_) => ApiError::bad_request(e.to_string()),
        });
    }
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - kube-sim accepts JSON only, not {content_type}"
        )));
    }
    match serde_json::from_slice(&body) {
        Ok(v) => Ok(v),
        Err(e) if yaml_ok || content_type.contains("yaml") => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "the object provided is unrecognized: couldn't decode the body as JSON: {e}"
        ))),
    }
}

/// Decoded query parameters.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=b&c=d`, percent- and plus-decoding.
    pub fn parse(q: &str) -> Self {
        Self(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn is_watch(&self) -> bool {
        matches!(self.get("watch"), Some("true" | "1"))
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::invalid_message(format!(
                "dryRun: Unsupported value: \"{v}\": supported values: \"All\""
            ))),
        }
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What representation the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Plain JSON objects.
    Json,
    /// `as=Table;g=meta.k8s.io` (kubectl get).
    Table,
    /// `as=PartialObjectMetadata[List]` (metadata-only clients).
    Metadata,
}

impl Accept {
    /// Picks the first representation in the header the sim can produce.
    pub fn parse(header: &str) -> Result<Self, ApiError> {
        if header.is_empty() {
            return Ok(Self::Json);
        }
        for part in header.split(',') {
            let part = part.trim();
            let media = part.split(';').next().unwrap_or_default().trim();
            if !matches!(media, "application/json" | "*/*" | "application/*") {
                continue;
            }
            if part.contains("as=Table") {
                return Ok(Self::Table);
            }
            if part.contains("as=PartialObjectMetadata") {
                return Ok(Self::Metadata);
            }
            if !part.contains("as=") {
                return Ok(Self::Json);
            }
        }
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json (with as=Table or as=PartialObjectMetadata); asked for {header:?}"
        )))
    }

    fn respond_one(self, code: StatusCode, t: &Target, obj: &Arc<Value>) -> Response<Body> {
        match self {
            Self::Json => json_response(code, &**obj),
            Self::Metadata if obj["kind"] != "Scale" => json_response(code, &partial(obj)),
            Self::Metadata => json_response(code, &**obj),
            Self::Table => json_response(code, &table(t, std::slice::from_ref(obj), None)),
        }
    }

    fn respond_list(self, t: &Target, list: &ObjectList) -> Response<Body> {
        match self {
            Self::Json => json_response(StatusCode::OK, list),
            Self::Metadata => json_response(
                StatusCode::OK,
                &json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadataList",
                    "metadata": list.metadata(),
                    "items": list.items.iter().map(|o| partial(o)).collect::<Vec<_>>(),
                }),
            ),
            Self::Table => json_response(
                StatusCode::OK,
                &table(t, &list.items, Some(&list.metadata())),
            ),
        }
    }

    /// An event's object for this client; `None` means the stored JSON as
    /// is, which watches serialize once and share.
    fn render_event(self, t: &Target, obj: &Value) -> Option<Value> {
        // Bookmarks stay as they are (kind + resourceVersion only).
        obj.pointer("/metadata/uid")?;
        match self {
            Self::Json if super::events::is_view(&t.info.group, &t.info.plural) => {
                Some(super::events::from_core(obj))
            }
            Self::Json if obj["apiVersion"].as_str() == Some(t.info.api_version().as_str()) => None,
            Self::Json => {
                let mut v = obj.clone();
                v["apiVersion"] = t.info.api_version().into();
                Some(v)
            }
            Self::Metadata => Some(partial(obj)),
            Self::Table => Some(table(t, &[Arc::new(obj.clone())], None)),
        }
    }
}

fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

/// A `meta.k8s.io/v1` Table: Name, the CRD's printer columns (or Age).
fn table(t: &Target, items: &[Arc<Value>], list_meta: Option<&Value>) -> Value {
    let cols = &t.info.printer_columns;
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    if cols.is_empty() {
        defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp", "priority": 0}));
    }
    for c in cols {
        defs.push(
            json!({"name": c.name, "type": c.ty, "format": "", "description": "", "priority": 0}),
        );
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            if cols.is_empty() {
                cells.push(age(o["metadata"]["creationTimestamp"].as_str()).into());
            }
            for c in cols {
                let v = json_path(o, &c.json_path).unwrap_or(Value::Null);
                cells.push(match (c.ty.as_str(), &v) {
                    ("date", Value::String(s)) => age(Some(s)).into(),
                    _ => v,
                });
            }
            json!({"cells": cells, "object": partial(o)})
        })
        .collect();
    let mut tbl = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": defs,
        "rows": rows,
    });
    if let Some(m) = list_meta {
        tbl["metadata"] = m.clone();
    } else if let Some(rv) = items
        .first()
        .and_then(|o| o.pointer("/metadata/resourceVersion"))
    {
        tbl["metadata"] = json!({"resourceVersion": rv});
    }
    tbl
}

/// kubectl's short age (`5s`, `3m`, `2h`, `4d`).
fn age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The JSONPath subset printer columns use: `.a.b`, `.a[0].b`,
/// `.a[?(@.type=="Ready")].status`.
fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj.clone();
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = after[end + 1..].trim_start_matches('.');
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|e| get_path(e, field.trim()).and_then(Value::as_str) == Some(want))?
                    .clone();
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?.clone();
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?.clone();
        rest = rest[end..].trim_start_matches('.');
    }
    Some(cur)
}

fn json_response<T: serde::Serialize + ?Sized>(code: StatusCode, v: &T) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("static response parts are valid")
}

fn text(code: StatusCode, s: &'static str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(s.as_bytes().to_vec()))
        .expect("static response parts are valid")
}

/// An error as a `metav1.Status` response.
pub fn error(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

fn full(bytes: Vec<u8>) -> Body {
    BoxBody::new(Full::new(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q =
            Query::parse("labelSelector=a%3Db%2Cc+in+(x)&watch=1&fieldSelector=metadata.name%3Dx");
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=x"));
        assert!(q.is_watch());
        assert_eq!(Query::parse("a=%").get("a"), Some("%"));
    }

    #[test]
    fn accept_headers() {
        assert_eq!(Accept::parse("").unwrap(), Accept::Json);
        assert_eq!(
            Accept::parse("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").unwrap(),
            Accept::Table
        );
        assert_eq!(
            Accept::parse("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
                .unwrap(),
            Accept::Metadata
        );
        assert_eq!(
            Accept::parse("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Accept::Json
        );
        assert_eq!(
            Accept::parse("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn printer_column_paths() {
        let o = json!({"status": {"ready": true, "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}], "addresses": [{"address": "10.0.0.1"}]}});
        assert_eq!(json_path(&o, ".status.ready"), Some(json!(true)));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(
            json_path(&o, ".status.addresses[0].address"),
            Some(json!("10.0.0.1"))
        );
        assert_eq!(json_path(&o, ".status.missing"), None);
    }
}
