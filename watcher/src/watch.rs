//! Watch tasks: one kube-runtime `watcher` per kind, turning its events
//! into summaries for the dispatcher.
//!
//! The typed object lives only inside [`forward`]: it is summarized and
//! dropped at once (managedFields and all), so memory holds summaries only.

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt as _;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch_stream};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Input;
use crate::metrics::WatcherMetrics;
use crate::summary::{Interner, Summarize};

/// Runs the watch of `api` until `shutdown` or until the dispatcher is gone.
/// Sending waits while the dispatcher is busy: that is the backpressure.
pub(crate) async fn forward<K>(
    api: Api<K>,
    config: watcher::Config,
    interner: Arc<Interner>,
    inputs: mpsc::Sender<Input>,
    metrics: WatcherMetrics,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Summarize + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = K::KIND;
    let mut events = std::pin::pin!(watch_stream(api, config).default_backoff());
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        let input = match next {
            None => return,
            Some(Err(e)) => {
                metrics.event(kind, "error");
                tracing::warn!(kind = kind.label(), error = %e, "watch failed; retrying with backoff");
                continue;
            }
            Some(Ok(event)) => match event {
                Event::Init => Some(Input::Init(kind)),
                Event::InitDone => Some(Input::InitDone(kind)),
                Event::InitApply(obj) => {
                    obj.summarize(&interner).map(|(key, summary)| Input::Apply {
                        key,
                        summary,
                        listed: true,
                    })
                }
                Event::Apply(obj) => obj.summarize(&interner).map(|(key, summary)| Input::Apply {
                    key,
                    summary,
                    listed: false,
                }),
                Event::Delete(obj) => obj
                    .summarize(&interner)
                    .map(|(key, summary)| Input::Delete { key, summary }),
            },
        };
        let Some(input) = input else { continue };
        tokio::select! {
            () = shutdown.cancelled() => return,
            sent = inputs.send(input) => if sent.is_err() { return },
        }
    }
}
