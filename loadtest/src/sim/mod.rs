//! kube-sim: a simulated Kubernetes API server. This part holds its pure
//! core: the versioned object store with watch history, selectors and API
//! errors. The HTTP server on top comes next (see the kube-sim issue).

pub mod error;
pub mod selector;
pub mod store;
