//! The committed CRDs are exactly what the types generate, and they follow
//! the CAPI conventions core relies on.

mod support;

use drover_shared::crds::{self, CrdSet};
use drover_shared::labels;

#[test]
fn committed_schemas_match_the_generated_ones() {
    let root = support::repo_root().join("schemas");
    let mut stale = Vec::new();
    for (rel, content) in crds::rendered_files().unwrap() {
        let on_disk = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
        if on_disk != content {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is stale, run `cargo run -- crds`: {stale:?}"
    );
}

#[test]
fn crd_names_follow_the_capi_rule_and_carry_the_contract_label() {
    let crds = crds::drover_crds();
    assert_eq!(crds.len(), 14, "all 14 k0smotron kinds");
    for crd in &crds {
        let names = &crd.spec.names;
        // CAPI looks CRDs up by plural(lower(kind)) + "." + group.
        assert_eq!(
            names.plural,
            format!("{}s", names.kind.to_lowercase()),
            "{}",
            names.kind
        );
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{}.{}", names.plural, crd.spec.group).as_str())
        );
        let l = crd.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            l.get(labels::CONTRACT_V1BETA2).map(String::as_str),
            Some("v1beta2"),
            "{}",
            names.kind
        );
        assert_eq!(
            names.list_kind.as_deref(),
            Some(format!("{}List", names.kind).as_str())
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert!(v.served && v.storage && v.name == "v1beta2");
        assert!(
            !v.additional_printer_columns
                .as_deref()
                .unwrap_or_default()
                .is_empty(),
            "{} has printer columns",
            names.kind
        );
    }
}

#[test]
fn status_and_scale_subresources_where_k0smotron_has_them() {
    let all = crds::drover_crds();
    let by_kind = |kind: &str| {
        all.iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap()
            .spec
            .versions[0]
            .subresources
            .clone()
    };
    for kind in ["K0sControlPlane", "K0smotronControlPlane", "Cluster"] {
        let s = by_kind(kind).unwrap();
        let scale = s.scale.expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        assert!(s.status.is_some());
    }
    for kind in [
        "K0sWorkerConfig",
        "K0sControllerConfig",
        "RemoteCluster",
        "RemoteMachine",
        "PooledRemoteMachine",
        "JoinTokenRequest",
    ] {
        assert!(
            by_kind(kind).unwrap().status.is_some(),
            "{kind} has a status subresource"
        );
    }
}

#[test]
fn capi_subset_keeps_unknown_fields() {
    for crd in crds::capi_crds() {
        let root = crds::root_schema(&crd).unwrap();
        for field in ["spec", "status"] {
            assert_eq!(
                root.properties.as_ref().unwrap()[field].x_kubernetes_preserve_unknown_fields,
                Some(true),
                "{} {field}",
                crd.spec.names.kind
            );
        }
    }
    assert!(crds::all_crds().iter().any(|(s, _)| *s == CrdSet::Capi));
}

#[test]
fn kubectl_kustomize_renders_every_crd() {
    let kubectl = support::require_tool(
        "kubectl",
        "apt-get install -y kubectl (or kubernetes-client)",
    );
    let out = std::process::Command::new(kubectl)
        .args(["kustomize", "deploy/crds"])
        .current_dir(support::repo_root())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let docs = drover_shared::manifests::parse_documents(&rendered).unwrap();
    let mut names: Vec<_> = docs
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "CustomResourceDefinition");
            assert_eq!(d["metadata"]["labels"]["clusterctl.cluster.x-k8s.io"], "");
            d["metadata"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    let mut expected: Vec<_> = crds::drover_crds()
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}
