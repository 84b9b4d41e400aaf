//! drover's simulated Kubernetes API server (kube-sim), simulated CAPI core
//! and load tests.
//!
//! Not written yet: the kube-sim issue builds it. The crate exists so the
//! workspace has its final shape; it exports nothing.
