//! The CAPI pause rule: `Cluster.spec.paused` or the `cluster.x-k8s.io/paused`
//! annotation (any value) on the object itself.

use std::collections::BTreeMap;

use crate::api::capi;

/// Why an object is paused, for the `Paused` condition's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseCause {
    /// `Cluster.spec.paused` is true.
    Cluster,
    /// The object carries the paused annotation.
    Annotation,
    /// Both.
    Both,
}

impl PauseCause {
    /// A message naming the cause(s), as CAPI's `Paused` condition does.
    pub fn message(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster spec.paused is set to true",
            Self::Annotation => "Object has the cluster.x-k8s.io/paused annotation",
            Self::Both => {
                "Cluster spec.paused is set to true, object has the cluster.x-k8s.io/paused annotation"
            }
        }
    }
}

/// Returns the pause cause, or `None` when the object should be reconciled.
pub fn pause_cause(
    cluster: Option<&capi::ClusterSpec>,
    object_annotations: Option<&BTreeMap<String, String>>,
) -> Option<PauseCause> {
    let by_cluster = cluster.and_then(|c| c.paused).unwrap_or(false);
    let by_annotation = object_annotations.is_some_and(|a| a.contains_key(crate::labels::PAUSED));
    match (by_cluster, by_annotation) {
        (true, true) => Some(PauseCause::Both),
        (true, false) => Some(PauseCause::Cluster),
        (false, true) => Some(PauseCause::Annotation),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_by_cluster_annotation_or_both() {
        let paused = capi::ClusterSpec {
            paused: Some(true),
            ..Default::default()
        };
        let running = capi::ClusterSpec::default();
        let ann: BTreeMap<_, _> = [(crate::labels::PAUSED.to_owned(), String::new())].into();
        assert_eq!(pause_cause(Some(&running), None), None);
        assert_eq!(pause_cause(Some(&paused), None), Some(PauseCause::Cluster));
        assert_eq!(
            pause_cause(Some(&running), Some(&ann)),
            Some(PauseCause::Annotation)
        );
        assert_eq!(
            pause_cause(Some(&paused), Some(&ann)),
            Some(PauseCause::Both)
        );
        assert_eq!(pause_cause(None, None), None);
    }
}
