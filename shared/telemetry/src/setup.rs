//! Installing the global subscriber: logs plus the OpenTelemetry layer.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::TelemetryError;

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

/// What [`init`] sets up.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans (`drover-watcher`, `drover-worker`).
    pub service: String,
    /// Log format.
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint (`http://collector:4317`); `None`: no export.
    pub otlp_endpoint: Option<String>,
    /// The filter when `RUST_LOG` is not set (`None`: `info`).
    pub default_filter: Option<String>,
}

/// Keeps the tracer provider alive; flushes spans when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the process-wide subscriber: an `EnvFilter` (`RUST_LOG`,
/// default `info`), the log layer, and an OpenTelemetry layer. Spans get
/// trace ids even without an exporter, so context still propagates through
/// the queue; they are exported only with `otlp_endpoint`. Call inside a
/// tokio runtime (the exporter's channel needs one).
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(config.service.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Otlp {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("drover"));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.default_filter.as_deref().unwrap_or("info")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match config.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
