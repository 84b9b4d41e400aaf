//! drover's simulated Kubernetes API server (kube-sim), simulated CAPI core
//! and load tests.
//!
//! # Layout
//!
//! - [`sim`]: kube-sim. Pure parts first ([`sim::store`], [`sim::selector`],
//!   [`sim::patch`], [`sim::apply`], [`sim::admission`], [`sim::resources`],
//!   [`sim::protobuf`], [`sim::error`]), then [`sim::cluster`] (the REST
//!   verbs behind one lock per cluster), [`sim::watch`], the simulated
//!   controllers ([`sim::controllers`]: garbage collector and namespaces;
//!   [`sim::workloads`]: StatefulSets, Deployments, PVCs, load balancers;
//!   [`sim::hosted`]: child clusters for hosted control planes), and the I/O:
//!   [`sim::http`], [`sim::discovery`], [`sim::tls`], [`sim::kubeconfig`],
//!   [`sim::server`] (many clusters per process, one port each) and
//!   [`sim::faults`].
//! - [`capi`]: the simulated CAPI core, for end-to-end tests, `drover up` and load tests.
//! - [`children`]: a stand-in for the control-plane providers: a child
//!   cluster, CA and kubeconfig Secret per CAPI Cluster.
//! - [`stack`]: all of drover in one process on kube-sim (`drover up`,
//!   `drover loadtest bootstrap`, the bootstrap end-to-end test), fleets
//!   and manifests to feed it.
//! - [`bench`](mod@bench): `drover sim bench`.
//! - [`queue`]: `drover loadtest queue`.
//! - [`bootstrap`](mod@bootstrap): `drover loadtest bootstrap`, the bootstrap
//!   provider end to end in one process on the [`stack`].
//! - [`pipeline`]: `drover loadtest pipeline`, the whole pipeline as real
//!   processes (kube-sim, nats-server, a watcher, W workers).
//! - [`procs`]: spawning, sampling (`/proc`) and stopping those processes.
//! - [`chart`]: SVG bar charts beside JSON reports.

pub mod bench;
pub mod bootstrap;
pub mod capi;
pub mod chart;
pub mod children;
pub mod pipeline;
pub mod procs;
pub mod queue;
pub mod sim;
pub mod stack;
