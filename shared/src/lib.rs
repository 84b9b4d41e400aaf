//! drover's shared types, without I/O.
//!
//! Everything here is pure: no network, no files, no clock unless passed in.
//! The watcher, the workers and the simulated API server all build on it.
//!
//! # Layout
//!
//! - [`api`]: the k0smotron v1beta2 kinds (bootstrap, control plane,
//!   infrastructure, standalone) and the CAPI core types drover reads.
//! - [`crds`]: the CustomResourceDefinitions generated from those types.
//! - [`structural`]: OpenAPI v3 structural-schema validation, defaulting and
//!   pruning, as an API server applies them to custom resources.
//! - [`conditions`], [`paused`], [`owners`]: the small helpers every provider
//!   shares (conditions, the pause check, owner references).
//! - [`jobs`]: the jobs the watcher queues for the workers, and their subjects.
//! - [`manifests`]: parsing manifests and admitting them against the CRDs.
//! - [`labels`]: label, annotation and finalizer names.
//! - [`error`]: this crate's error type.

pub mod api;
pub mod conditions;
pub mod crds;
pub mod error;
pub mod jobs;
pub mod labels;
pub mod manifests;
pub mod owners;
pub mod paused;
pub mod structural;

pub use error::Error;
