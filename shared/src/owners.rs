//! Owner references: building them and finding owners by group and kind.
//!
//! CAPI matches owners by group and kind, not by version, so an owner
//! written by an older API version is still found.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

/// A controller owner reference to `owner` (`controller` and
/// `blockOwnerDeletion` true). `None` if the owner has no name or uid yet.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// The group of an `apiVersion` (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The first owner of `meta` with this group and kind.
pub fn find_owner<'a>(meta: &'a ObjectMeta, group: &str, kind: &str) -> Option<&'a OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.kind == kind && group_of(&o.api_version) == group)
}

/// The controller owner of `meta`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::bootstrap::K0sWorkerConfig;

    #[test]
    fn finds_owner_regardless_of_version() {
        let meta = ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "cluster.x-k8s.io/v1beta1".into(),
                kind: "Machine".into(),
                name: "m1".into(),
                uid: "u1".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            find_owner(&meta, "cluster.x-k8s.io", "Machine").map(|o| o.name.as_str()),
            Some("m1")
        );
        assert!(find_owner(&meta, "cluster.x-k8s.io", "MachinePool").is_none());
        assert_eq!(controller_of(&meta).map(|o| o.uid.as_str()), Some("u1"));
        assert_eq!(group_of("v1"), "");
    }

    #[test]
    fn controller_ref_needs_uid() {
        let mut cfg = K0sWorkerConfig::new("w", Default::default());
        assert!(controller_ref(&cfg).is_none());
        cfg.metadata.uid = Some("abc".into());
        let r = controller_ref(&cfg).unwrap();
        assert_eq!(r.api_version, "bootstrap.cluster.x-k8s.io/v1beta2");
        assert_eq!(r.kind, "K0sWorkerConfig");
        assert_eq!(r.controller, Some(true));
    }
}
