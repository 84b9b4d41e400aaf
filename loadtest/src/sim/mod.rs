//! kube-sim: a simulated Kubernetes API server.
//!
//! Pure parts, each testable alone: [`store`] (objects, resourceVersions,
//! generation, finalizers, paging, watch history with 410), [`selector`],
//! [`patch`] (merge, JSON and strategic patches), [`apply`] (field ownership
//! and server-side apply), [`admission`] (defaults and validation, CRD
//! schemas through `drover_shared::structural`), [`resources`] (built-in
//! kinds and installed CRDs) and [`error`] (`metav1.Status`).
//!
//! [`cluster`] puts them together behind one lock per simulated cluster;
//! [`watch`] streams its events. [`controllers`] (garbage collector,
//! namespaces), [`workloads`] (StatefulSets, Deployments, PVCs, load
//! balancers) and [`hosted`] (child clusters for hosted control planes) play
//! kube-controller-manager's and the infrastructure's parts. [`http`],
//! [`discovery`], [`tls`], [`kubeconfig`] and [`server`] serve it all over
//! HTTP(S), one port per cluster; [`faults`] injects failures.

pub mod admission;
pub mod apply;
pub mod cluster;
pub mod controllers;
pub mod discovery;
pub mod error;
pub mod events;
pub mod faults;
pub mod hosted;
pub mod http;
pub mod kubeconfig;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod tls;
pub mod watch;
pub mod workloads;

pub use server::{ClusterHandle, Sim, SimConfig, SimError};
