//! [`Context`]: what production handlers share: the management cluster's
//! client, child cluster clients, an event recorder, the field manager,
//! and the API resources of drover's kinds.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use drover_shared::jobs::ObjectRef;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{Event, Recorder, Reporter};

use crate::HandlerError;
use crate::children::ChildClients;

/// The field manager of every drover write.
pub const FIELD_MANAGER: &str = "drover";

/// How long a cached child client is trusted before its Secret's
/// resourceVersion is checked again.
pub const CHILD_CLIENT_TTL: Duration = Duration::from_secs(30);

/// What production handlers get with every job.
pub struct Context {
    /// The management cluster.
    pub client: Client,
    /// Clients for child clusters, from their `<cluster>-kubeconfig` Secrets.
    pub children: ChildClients,
    /// Emits Kubernetes Events about objects.
    pub recorder: Recorder,
    /// The field manager name for writes: [`FIELD_MANAGER`].
    pub field_manager: &'static str,
}

impl Context {
    /// A context on the management cluster's `client`.
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            children: ChildClients::new(client.clone(), CHILD_CLIENT_TTL),
            client,
            field_manager: FIELD_MANAGER,
        }
    }

    /// The dynamic API of the job's object and its resource (plural and
    /// scope from drover's CRDs). An apiVersion/kind no CRD serves, or a
    /// missing namespace for a namespaced kind, is bad input.
    pub fn api_for(
        &self,
        object: &ObjectRef,
    ) -> Result<(Api<DynamicObject>, ApiResource), HandlerError> {
        let (ar, namespaced) = resource_for(object)?;
        let api = if namespaced {
            let ns = object.namespace.as_deref().ok_or_else(|| {
                HandlerError::bad_input(
                    "object.namespace",
                    format!(
                        "{} is namespaced but the job names no namespace",
                        object.kind
                    ),
                )
            })?;
            Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        Ok((api, ar))
    }

    /// Emits an Event about `regarding`. A failure is logged, not returned:
    /// Events are best effort.
    pub async fn event(&self, event: Event, regarding: &ObjectReference) {
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, reason = %event.reason, "could not emit an Event");
        }
    }
}

/// (apiVersion, kind) → (resource, namespaced), for every kind drover
/// knows. From the typed kinds, not the generated CRDs: generating every
/// schema takes about a second, which stalled the first jobs.
static RESOURCES: LazyLock<HashMap<(String, String), (ApiResource, bool)>> = LazyLock::new(|| {
    drover_shared::crds::served_kinds()
        .into_iter()
        .map(|k| {
            let gvk = GroupVersionKind::gvk(&k.group, &k.version, &k.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &k.plural);
            ((k.api_version, k.kind), (ar, k.namespaced))
        })
        .collect()
});

/// The resource of `object`'s apiVersion and kind.
pub fn resource_for(object: &ObjectRef) -> Result<(ApiResource, bool), HandlerError> {
    RESOURCES
        .get(&(object.api_version.clone(), object.kind.clone()))
        .cloned()
        .ok_or_else(|| {
            HandlerError::bad_input(
                "object.apiVersion/kind",
                format!(
                    "no CRD drover knows serves {} {}",
                    object.api_version, object.kind
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(api_version: &str, kind: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some("default".into()),
            name: "n".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn plurals_and_scope_come_from_the_crds() {
        let (ar, namespaced) = resource_for(&obj(
            "bootstrap.cluster.x-k8s.io/v1beta2",
            "K0sWorkerConfig",
        ))
        .unwrap();
        assert_eq!(ar.plural, "k0sworkerconfigs");
        assert!(namespaced);
        let (ar, _) = resource_for(&obj("cluster.x-k8s.io/v1beta2", "Machine")).unwrap();
        assert_eq!(ar.plural, "machines");
    }

    #[test]
    fn unknown_kinds_are_bad_input_naming_the_field() {
        let e = resource_for(&obj("example.com/v1", "Widget")).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("object.apiVersion/kind"), "{e}");
    }
}
