//! drover's telemetry: logs, traces, metrics and health, the same for the
//! watcher and the workers.
//!
//! # Layout
//!
//! - [`init`]: installs the global `tracing` subscriber (text or JSON logs)
//!   with an OpenTelemetry layer; OTLP export only when an endpoint is set.
//! - [`trace`]: W3C trace context in and out of a [`Job`], so one trace
//!   follows a job from the watch event to the handler's writes.
//! - [`health`]: named readiness checks behind `/readyz`.
//! - [`server`]: the HTTP endpoint: `/metrics` (Prometheus text),
//!   `/healthz`, `/readyz`.
//! - [`error`]: this crate's error type.
//!
//! Metrics themselves are `prometheus-client` families that each crate
//! registers in one [`Registry`] before serving it.
//!
//! [`Job`]: drover_shared::jobs::Job

pub mod error;
pub mod health;
pub mod server;
pub mod trace;

mod setup;

pub use error::TelemetryError;
pub use health::{Health, HealthCheck};
pub use prometheus_client::registry::Registry;
pub use server::{TelemetryServer, serve};
pub use setup::{LogFormat, TelemetryConfig, TelemetryGuard, init};
