//! The API types: every k0smotron v1beta2 kind, grouped as k0smotron groups
//! them, plus the CAPI core types drover reads.
//!
//! Field names, JSON names, enums and defaults follow k0smotron's v1beta2 API
//! so existing manifests work unchanged. Deliberate differences are listed in
//! `schemas/README.md`.

pub mod bootstrap;
pub mod capi;
pub mod common;
pub mod controlplane;
pub mod infrastructure;
pub mod k0smotron;
pub(crate) mod schema_helpers;
