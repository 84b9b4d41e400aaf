//! drover's simulated Kubernetes API server (kube-sim), simulated CAPI core
//! and load tests.
//!
//! # Layout
//!
//! - [`sim`]: kube-sim. So far its pure core: [`sim::store`] (objects,
//!   resourceVersions, generation rules, finalizers, paging, watch history
//!   with 410 Gone), [`sim::selector`] (label and field selectors) and
//!   [`sim::error`] (`metav1.Status` errors). The HTTP server, CRD admission,
//!   patches, discovery and the simulated controllers are not written yet.

pub mod sim;
