//! Bootstrap tokens in the child cluster: minted once per config (a retry
//! finds the one already minted through its config-uid label instead of
//! leaking another), kept alive while the Machine has not joined, revoked
//! when the config is deleted, and deleted once expired (k0smotron never
//! deletes its tokens).

use std::collections::BTreeMap;
use std::time::Duration;

use drover_render::token::{BOOTSTRAP_TOKEN_NAMESPACE, BOOTSTRAP_TOKEN_SECRET_TYPE};
use drover_render::{BootstrapToken, TokenRole};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use super::plan::{self, MANAGED_BY, MANAGED_BY_LABEL, TOKEN_CONFIG_LABEL, TOKEN_CONFIG_UID_LABEL};
use crate::HandlerError;

/// A token Secret found in the child cluster.
struct Found {
    name: String,
    token: BootstrapToken,
    expiration: String,
}

fn api(child: &Client) -> Api<Secret> {
    Api::namespaced(child.clone(), BOOTSTRAP_TOKEN_NAMESPACE)
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref()?;
    let v = data.get(key)?;
    String::from_utf8(v.0.clone()).ok()
}

fn parse(secret: &Secret) -> Option<Found> {
    Some(Found {
        name: secret.metadata.name.clone()?,
        token: BootstrapToken {
            id: text(secret, "token-id")?,
            secret: text(secret, "token-secret")?,
        },
        expiration: text(secret, "expiration").unwrap_or_default(),
    })
}

async fn minted_for(child: &Client, config_uid: &str) -> Result<Vec<Found>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{TOKEN_CONFIG_UID_LABEL}={config_uid}"));
    Ok(api(child)
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(parse)
        .collect())
}

async fn set_expiration(child: &Client, name: &str, expiration: &str) -> Result<(), kube::Error> {
    let patch = json!({"data": {"expiration": ByteString(expiration.as_bytes().to_vec())}});
    api(child)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The config's token that is still valid, with its expiration, pushed
/// out first when a third of its lifetime has passed; `None` if it has none.
async fn valid(
    child: &Client,
    config_uid: &str,
    ttl: Duration,
    now: jiff::Timestamp,
) -> Result<Option<(BootstrapToken, String)>, HandlerError> {
    for found in minted_for(child, config_uid).await? {
        let Some(left) = plan::time_left(&found.expiration, now).filter(|l| !l.is_zero()) else {
            continue;
        };
        let mut expiration = found.expiration;
        if plan::needs_refresh(left, ttl) {
            expiration = plan::expiration(now, ttl);
            set_expiration(child, &found.name, &expiration).await?;
            tracing::debug!(token_id = %found.token.id, "token expiration pushed out");
        }
        return Ok(Some((found.token, expiration)));
    }
    Ok(None)
}

/// The token of the config with uid `config_uid`, with its expiration:
/// the one minted before if it is still valid (see [`valid`]), else a new one.
pub async fn ensure(
    child: &Client,
    config_uid: &str,
    config_label: Option<String>,
    role: TokenRole,
    ttl: Duration,
    now: jiff::Timestamp,
) -> Result<(BootstrapToken, String), HandlerError> {
    if let Some(t) = valid(child, config_uid, ttl, now).await? {
        tracing::debug!(token_id = %t.0.id, "reusing the token minted before");
        return Ok(t);
    }
    let expiration = plan::expiration(now, ttl);
    let token = mint(child, config_uid, config_label, role, &expiration).await?;
    Ok((token, expiration))
}

async fn mint(
    child: &Client,
    config_uid: &str,
    config_label: Option<String>,
    role: TokenRole,
    expiration: &str,
) -> Result<BootstrapToken, HandlerError> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes)
        .map_err(|e| HandlerError::Panicked(format!("no OS randomness: {e}")))?;
    let token = BootstrapToken::from_random(&bytes)
        .ok_or_else(|| HandlerError::Panicked("64 random bytes gave no token".into()))?;
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (TOKEN_CONFIG_UID_LABEL.to_owned(), config_uid.to_owned()),
    ]);
    if let Some(v) = config_label {
        labels.insert(TOKEN_CONFIG_LABEL.to_owned(), v);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(token.secret_name()),
            namespace: Some(BOOTSTRAP_TOKEN_NAMESPACE.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some(BOOTSTRAP_TOKEN_SECRET_TYPE.to_owned()),
        string_data: Some(token.secret_data(role, expiration)),
        ..Secret::default()
    };
    // An id collision (36^6 ids) is a 409 AlreadyExists: retried, with a
    // new id, like any conflict.
    api(child).create(&PostParams::default(), &secret).await?;
    tracing::info!(token_id = %token.id, expiration, "bootstrap token minted in the child cluster");
    Ok(token)
}

/// Keeps the config's token valid while its Machine has not joined.
/// Returns the token's expiration, `None` when no valid token exists.
pub async fn keep_alive(
    child: &Client,
    config_uid: &str,
    ttl: Duration,
    now: jiff::Timestamp,
) -> Result<Option<String>, HandlerError> {
    Ok(valid(child, config_uid, ttl, now).await?.map(|(_, e)| e))
}

/// Deletes the tokens minted for a config (it was deleted: its Machine
/// will not join with them).
pub async fn revoke(child: &Client, config_uid: &str) -> Result<usize, kube::Error> {
    let found = minted_for(child, config_uid).await?;
    for f in &found {
        delete(child, &f.name).await?;
    }
    Ok(found.len())
}

/// Deletes every expired token drover minted in the child cluster.
pub async fn delete_expired(child: &Client, now: jiff::Timestamp) -> Result<usize, kube::Error> {
    let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut deleted = 0;
    for s in api(child).list(&lp).await?.items {
        let Some(found) = parse(&s) else { continue };
        if plan::time_left(&found.expiration, now).is_some_and(|l| l.is_zero()) {
            delete(child, &found.name).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

async fn delete(child: &Client, name: &str) -> Result<(), kube::Error> {
    match api(child).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
