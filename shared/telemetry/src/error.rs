//! Errors of telemetry setup and the metrics endpoint.

/// What can go wrong setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber was already installed (only one per process).
    #[error("a tracing subscriber is already installed: {0}")]
    Subscriber(String),
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("OTLP exporter for {endpoint}: {message}")]
    Otlp {
        /// The configured endpoint.
        endpoint: String,
        /// What the exporter said.
        message: String,
    },
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
