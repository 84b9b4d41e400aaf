//! Finding where a referenced kind is served, as CAPI core does: by group
//! and kind, through the CRD, preferring the version named by the CRD's
//! `cluster.x-k8s.io/v1beta2` (else `v1beta1`) contract label and falling
//! back to the storage version.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::CapiSimError;

/// Group and kind to [`ApiResource`], cached; drover's own kinds need no
/// request at all. A kind no CRD serves is remembered for [`MISS_TTL`]:
/// listing every CRD (and their schemas) per reconcile of each Machine
/// that names one cost most of the simulation's CPU.
pub(crate) struct Kinds {
    client: kube::Client,
    cache: Mutex<HashMap<(String, String), ApiResource>>,
    misses: Mutex<HashMap<(String, String), std::time::Instant>>,
}

/// How long "no CRD serves this kind" is believed.
const MISS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl Kinds {
    pub(crate) fn new(client: kube::Client) -> Self {
        let mut cache = HashMap::new();
        for s in drover_shared::crds::served_kinds() {
            let gvk = GroupVersionKind::gvk(&s.group, &s.version, &s.kind);
            cache.insert(
                (s.group.clone(), s.kind.clone()),
                ApiResource::from_gvk_with_plural(&gvk, &s.plural),
            );
        }
        Self {
            client,
            cache: Mutex::new(cache),
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// The resource of `group`/`kind`, or `None` if no CRD serves it.
    pub(crate) async fn resolve(
        &self,
        group: &str,
        kind: &str,
    ) -> Result<Option<ApiResource>, CapiSimError> {
        let k = (group.to_owned(), kind.to_owned());
        if let Some(ar) = self.cache.lock().expect("kinds lock").get(&k) {
            return Ok(Some(ar.clone()));
        }
        if self
            .misses
            .lock()
            .expect("kinds lock")
            .get(&k)
            .is_some_and(|t| t.elapsed() < MISS_TTL)
        {
            return Ok(None);
        }
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let list = crds.list(&ListParams::default()).await?;
        let Some(crd) = list
            .items
            .into_iter()
            .find(|c| c.spec.group == group && c.spec.names.kind == kind)
        else {
            self.misses
                .lock()
                .expect("kinds lock")
                .insert(k, std::time::Instant::now());
            return Ok(None);
        };
        let Some(version) = contract_version(&crd) else {
            return Ok(None);
        };
        let gvk = GroupVersionKind::gvk(group, &version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
        self.cache.lock().expect("kinds lock").insert(k, ar.clone());
        Ok(Some(ar))
    }
}

/// The version CAPI core would talk to: the last of the `_`-separated
/// versions in the newest contract label that is served, else the storage version.
fn contract_version(crd: &CustomResourceDefinition) -> Option<String> {
    let served: Vec<&str> = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.as_str())
        .collect();
    let labels = crd.metadata.labels.clone().unwrap_or_default();
    for contract in ["cluster.x-k8s.io/v1beta2", "cluster.x-k8s.io/v1beta1"] {
        if let Some(v) = labels.get(contract)
            && let Some(best) = v.split('_').rev().find(|v| served.contains(v))
        {
            return Some(best.to_owned());
        }
    }
    crd.spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
        .map(|v| v.name.clone())
}
