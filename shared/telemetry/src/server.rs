//! The telemetry endpoint: `/metrics` (Prometheus text format),
//! `/healthz` (the process serves) and `/readyz` (every [`Health`] check
//! is ready; otherwise 503 naming those that are not).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Health, TelemetryError};

/// The Prometheus text-format content type.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running endpoint.
pub struct TelemetryServer {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    /// Ends when `shutdown` is cancelled.
    pub task: tokio::task::JoinHandle<()>,
}

/// Listens on `addr` and serves until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
    shutdown: CancellationToken,
) -> Result<TelemetryServer, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "telemetry endpoint: accept failed");
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let reply = answer(&req, &registry, &health);
                    async move { Ok::<_, Infallible>(reply) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(TelemetryServer { addr, task })
}

fn answer(req: &Request<Incoming>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (StatusCode::OK, METRICS_TYPE, text),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding metrics: {e}\n"),
                ),
            }
        }
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match health.ready() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".into()),
            Err(waiting) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {}\n", waiting.join(", ")),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("drover_test_events", "events", c.clone());
        c.inc_by(3);
        let health = Health::new();
        let queue = health.check("queue");
        let stop = CancellationToken::new();
        let srv = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(registry),
            health,
            stop.clone(),
        )
        .await
        .unwrap();
        let m = get(srv.addr, "/metrics").await;
        assert!(m.contains("drover_test_events_total 3"), "{m}");
        assert!(get(srv.addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let r = get(srv.addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("not ready: queue"),
            "{r}"
        );
        queue.set_ready(true);
        assert!(get(srv.addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(srv.addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        srv.task.await.unwrap();
    }
}
