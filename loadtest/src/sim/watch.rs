//! WATCH: newline-delimited JSON events for one resource, resumed from a
//! resourceVersion, with bookmarks, `timeoutSeconds`, streaming lists
//! (`sendInitialEvents`) and 410 Gone once the resume point has left the
//! retained history.
//!
//! A watch subscribes to the cluster's broadcast *before* it reads the
//! store, so no event falls between the initial state and the live stream;
//! events at or below the initial resourceVersion are skipped. A watcher
//! that falls behind the broadcast re-reads the store's history, and gets
//! 410 if that is gone too, as a slow client of a real apiserver would.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::cluster::{Cluster, ListQuery, Target};
use super::error::ApiError;
use super::store::{EventType, WatchEvent};

/// Parameters of one watch.
#[derive(Clone, Debug)]
pub struct WatchParams {
    /// Selectors (limit and continue are ignored).
    pub query: ListQuery,
    /// `resourceVersion`; `None` or `0` start with the current state as ADDED events.
    pub resource_version: Option<u64>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`, or the server's default.
    pub timeout: Duration,
    /// How often to send a bookmark.
    pub bookmark_interval: Duration,
    /// Close the stream after this long (fault injection: dropped watches).
    pub drop_after: Option<Duration>,
}

/// How event objects are rendered for this client: `None` sends the stored
/// JSON unchanged (serialized once per event, shared by every watcher).
pub type Render = Arc<dyn Fn(&Target, &Value) -> Option<Value> + Send + Sync>;

/// Starts a watch; frames arrive on the returned channel until the watch
/// ends (timeout, 410, client gone).
pub fn start(
    cluster: Arc<Cluster>,
    target: Target,
    params: WatchParams,
    render: Render,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let _ = run(cluster, target, params, render, tx).await;
    });
    rx
}

struct Closed;

/// One watch line: `{"type":T,"object":OBJ}\n` around already-serialized object bytes.
fn line(ty: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

async fn run(
    cluster: Arc<Cluster>,
    t: Target,
    p: WatchParams,
    render: Render,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), Closed> {
    let send_bytes = |b: Bytes| {
        let tx = tx.clone();
        async move { tx.send(b).await.map_err(|_| Closed) }
    };
    let send =
        |ty: &str, obj: Value| send_bytes(line(ty, &serde_json::to_vec(&obj).unwrap_or_default()));
    // An object from the store or an event, rendered for this client.
    let encode = |ty: &str, obj: &Value, cached: Option<&WatchEvent>| match render(&t, obj) {
        Some(v) => line(ty, &serde_json::to_vec(&v).unwrap_or_default()),
        None => match cached {
            Some(ev) => line(ty, &ev.object_json()),
            None => line(ty, &serde_json::to_vec(obj).unwrap_or_default()),
        },
    };
    let mut sub = cluster.subscribe();
    let res = t.info.resource();
    let matches = |ev: &WatchEvent| -> Option<&'static str> {
        if ev.resource != res {
            return None;
        }
        if let Some(ns) = &t.namespace
            && ev.namespace.as_deref() != Some(ns.as_str())
        {
            return None;
        }
        let sel = |o: &Value| {
            p.query
                .labels
                .matches(o.pointer("/metadata/labels").and_then(Value::as_object))
                && p.query.fields.matches(o)
        };
        let now = sel(&ev.object);
        let before = ev.prev.as_deref().map(sel);
        let ty = match (ev.kind, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Deleted, _, true) => "DELETED",
            (EventType::Modified, Some(true) | None, true) => "MODIFIED",
            (EventType::Modified, Some(false), true) => "ADDED",
            (EventType::Modified, Some(true), false) => "DELETED",
            _ => return None,
        };
        Some(ty)
    };
    // Initial state, read under the lock after subscribing.
    let initial: Result<(Vec<Bytes>, u64), ApiError> = {
        let st = cluster.lock();
        let cur = st.store.resource_version();
        match (p.send_initial_events, p.resource_version) {
            (true, _) | (false, None | Some(0)) => st
                .store
                .list(
                    &res,
                    t.namespace.as_deref(),
                    &p.query.labels,
                    &p.query.fields,
                    None,
                    None,
                )
                .map(|page| {
                    (
                        page.items
                            .iter()
                            .map(|o| encode("ADDED", o, None))
                            .collect(),
                        cur,
                    )
                }),
            (false, Some(rv)) => st.store.events_since(rv).map(|evs| {
                let lines = evs
                    .iter()
                    .filter_map(|ev| matches(ev).map(|ty| encode(ty, &ev.object, Some(ev))))
                    .collect();
                (lines, cur)
            }),
        }
    };
    let (events, mut seen) = match initial {
        Ok(x) => x,
        Err(e) => return send("ERROR", e.to_status()).await,
    };
    for l in events {
        send_bytes(l).await?;
    }
    let bookmark = |rv: u64, end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"apiVersion": t.info.api_version(), "kind": t.info.kind, "metadata": meta})
    };
    if p.send_initial_events && p.bookmarks {
        send("BOOKMARK", bookmark(seen, true)).await?;
    }
    let deadline =
        tokio::time::Instant::now() + p.drop_after.map_or(p.timeout, |d| d.min(p.timeout));
    let mut ticker = tokio::time::interval(p.bookmark_interval);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = tx.closed() => return Err(Closed),
            _ = ticker.tick(), if p.bookmarks => send("BOOKMARK", bookmark(seen, false)).await?,
            ev = sub.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= seen {
                        continue;
                    }
                    seen = ev.rv;
                    if let Some(ty) = matches(&ev) {
                        send_bytes(encode(ty, &ev.object, Some(&ev))).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let caught_up = cluster.lock().store.events_since(seen);
                    match caught_up {
                        Ok(evs) => {
                            for ev in evs {
                                seen = seen.max(ev.rv);
                                if let Some(ty) = matches(&ev) {
                                    send_bytes(encode(ty, &ev.object, Some(&ev))).await?;
                                }
                            }
                        }
                        Err(e) => return send("ERROR", e.to_status()).await,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
