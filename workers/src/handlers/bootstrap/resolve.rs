//! Reads what a config references in the management cluster, in the
//! Cluster's namespace: `contentFrom` and custom user data (Secret and
//! ConfigMap keys), the cluster CA and certificates (`<cluster>-ca`,
//! `-sa`, `-proxy`, `-etcd`, keys `tls.crt`/`tls.key`), the ingress HAProxy
//! certificate and the FRP token.
//!
//! A reference to something missing is [`HandlerError::Unresolved`]
//! (bounded retries, then a dead letter); a malformed spec is
//! [`HandlerError::BadInput`]. Cluster certificates that the control-plane
//! provider has not written yet are a [`Wait`].

use drover_render::{CapiCertificates, KeyPairPem, UserFile, resolve_user_files};
use drover_shared::api::bootstrap::{ContentSource, File};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::Api;

use super::plan::{REASON_WAITING_FOR_CERTIFICATES, WATCHED_WAIT, Wait};
use crate::HandlerError;

/// One key of a Secret or ConfigMap: its text, or why there is none.
async fn source_text(
    client: &Client,
    namespace: &str,
    src: &ContentSource,
) -> Result<Result<String, String>, HandlerError> {
    if let Some(r) = &src.secret_ref {
        let Some(s) = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await?
        else {
            return Ok(Err(format!("secret \"{}\" not found", r.name)));
        };
        return Ok(match s.data.as_ref().and_then(|d| d.get(&r.key)) {
            None => Err(format!(
                "key \"{}\" not found in secret \"{}\"",
                r.key, r.name
            )),
            Some(v) => String::from_utf8(v.0.clone())
                .map_err(|_| format!("key \"{}\" of secret \"{}\" is not UTF-8", r.key, r.name)),
        });
    }
    if let Some(r) = &src.config_map_ref {
        let Some(cm) = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await?
        else {
            return Ok(Err(format!("configmap \"{}\" not found", r.name)));
        };
        return Ok(match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(v.clone()),
            None => Err(format!(
                "key \"{}\" not found in configmap \"{}\"",
                r.key, r.name
            )),
        });
    }
    Ok(Err("no source specified (secretRef or configMapRef)".into()))
}

/// `spec.files` with every `contentFrom` read.
pub async fn files(
    client: &Client,
    namespace: &str,
    files: &[File],
) -> Result<Vec<UserFile>, HandlerError> {
    let mut fetched = Vec::with_capacity(files.len());
    for f in files {
        fetched.push(match &f.content_from {
            Some(src) if f.content.is_empty() => Some(source_text(client, namespace, src).await?),
            _ => None,
        });
    }
    let mut unresolved = None;
    let out = resolve_user_files(files, |i, _| match &fetched[i] {
        Some(Ok(text)) => Ok(text.clone()),
        Some(Err(reason)) => {
            unresolved = Some(i);
            Err(reason.clone())
        }
        None => Err("no source specified (secretRef or configMapRef)".into()),
    });
    match out {
        Ok(files) => Ok(files),
        Err(drover_render::RenderError::FileContent { field, reason }) if unresolved.is_some() => {
            Err(HandlerError::Unresolved {
                field,
                message: reason,
            })
        }
        Err(e) => Err(super::render_error(e)),
    }
}

/// `spec.provisioner.customUserDataRef`, read.
pub async fn custom_user_data(
    client: &Client,
    namespace: &str,
    src: Option<&ContentSource>,
) -> Result<Option<String>, HandlerError> {
    let Some(src) = src else { return Ok(None) };
    const FIELD: &str = "spec.provisioner.customUserDataRef";
    if src.secret_ref.is_some() == src.config_map_ref.is_some() {
        return Err(HandlerError::bad_input(
            FIELD,
            "set exactly one of secretRef and configMapRef",
        ));
    }
    match source_text(client, namespace, src).await? {
        Ok(text) => Ok(Some(text)),
        Err(message) => Err(HandlerError::Unresolved {
            field: FIELD.into(),
            message,
        }),
    }
}

/// A Secret's keys as text; `None` when the Secret does not exist.
async fn secret_texts(
    client: &Client,
    namespace: &str,
    name: &str,
    keys: &[&str],
) -> Result<Option<Vec<String>>, HandlerError> {
    let Some(s) = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let data = s.data.unwrap_or_default();
    keys.iter()
        .map(|k| match data.get(*k) {
            Some(v) => String::from_utf8(v.0.clone()).map_err(|_| {
                HandlerError::bad_input(
                    format!("Secret {namespace}/{name} .data.{k}"),
                    "not UTF-8 PEM",
                )
            }),
            None => Ok(String::new()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn waiting_for(namespace: &str, name: &str) -> Wait {
    Wait {
        reason: REASON_WAITING_FOR_CERTIFICATES,
        message: format!("Secret {namespace}/{name} does not exist yet"),
        fallback: WATCHED_WAIT,
    }
}

/// The cluster CA certificate (`<cluster>-ca` `tls.crt`).
pub async fn ca_cert(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Result<Vec<u8>, Wait>, HandlerError> {
    let name = format!("{cluster}-ca");
    match secret_texts(client, namespace, &name, &["tls.crt"]).await? {
        Some(v) if !v[0].is_empty() => Ok(Ok(v[0].clone().into_bytes())),
        Some(_) => Err(HandlerError::bad_input(
            format!("Secret {namespace}/{name} .data.tls.crt"),
            "missing",
        )),
        None => Ok(Err(waiting_for(namespace, &name))),
    }
}

/// The CAPI certificates of the init controller: `<cluster>-ca` is
/// required, the service-account, front-proxy and etcd pairs are written
/// when they exist.
pub async fn capi_certificates(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Result<CapiCertificates, Wait>, HandlerError> {
    let pair = |v: Option<Vec<String>>| {
        v.filter(|v| !v[0].is_empty()).map(|mut v| KeyPairPem {
            key: v.pop().unwrap_or_default(),
            cert: v.pop().unwrap_or_default(),
        })
    };
    let keys = ["tls.crt", "tls.key"];
    let ca_name = format!("{cluster}-ca");
    let Some(ca) = pair(secret_texts(client, namespace, &ca_name, &keys).await?) else {
        return Ok(Err(waiting_for(namespace, &ca_name)));
    };
    Ok(Ok(CapiCertificates {
        ca: Some(ca),
        service_account: pair(
            secret_texts(client, namespace, &format!("{cluster}-sa"), &keys).await?,
        ),
        front_proxy_ca: pair(
            secret_texts(client, namespace, &format!("{cluster}-proxy"), &keys).await?,
        ),
        etcd_ca: pair(secret_texts(client, namespace, &format!("{cluster}-etcd"), &keys).await?),
    }))
}

/// The ingress HAProxy server pair (`<cluster>-ingress-haproxy`).
pub async fn haproxy_pair(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Result<(String, String), Wait>, HandlerError> {
    let name = format!("{cluster}-ingress-haproxy");
    match secret_texts(client, namespace, &name, &["tls.crt", "tls.key"]).await? {
        Some(mut v) => {
            let key = v.pop().unwrap_or_default();
            let crt = v.pop().unwrap_or_default();
            Ok(Ok((crt, key)))
        }
        None => Ok(Err(waiting_for(namespace, &name))),
    }
}

/// The FRP token (`<cluster>-frp-token` `value`).
pub async fn frp_token(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Result<String, Wait>, HandlerError> {
    let name = format!("{cluster}-frp-token");
    match secret_texts(client, namespace, &name, &["value"]).await? {
        Some(mut v) => Ok(Ok(v.pop().unwrap_or_default())),
        None => Ok(Err(waiting_for(namespace, &name))),
    }
}
