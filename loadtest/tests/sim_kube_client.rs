//! kube-sim against a real `kube::Client` over HTTPS, built from the
//! kubeconfig the sim writes: the behaviours of the kube-sim issue, one test each.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_loadtest::sim::{ClusterHandle, Sim, SimConfig};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use serde_json::json;

async fn client_for(h: &ClusterHandle) -> Client {
    let kc = Kubeconfig::from_yaml(&h.kubeconfig).expect("the sim's kubeconfig parses");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("the sim's kubeconfig is usable");
    Client::try_from(cfg).expect("client")
}

async fn start(config: SimConfig) -> (Sim, std::sync::Arc<ClusterHandle>, Client) {
    let sim = Sim::new(config);
    let h = sim.add_cluster("mgmt").await.expect("cluster starts");
    let c = client_for(&h).await;
    (sim, h, c)
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"}
    }))
    .unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn install_crds(c: &Client) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(c.clone());
    for (_, crd) in drover_shared::crds::all_crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("our CRDs install");
    }
}

fn dynamic(
    c: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(c.clone(), ns, &ar)
}

#[tokio::test]
async fn crud_metadata_and_optimistic_concurrency() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", &[("app", "x")]))
        .await
        .unwrap();
    let meta = &a.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        409
    );

    let mut changed = a.clone();
    changed.data = Some([("k".to_owned(), "w".to_owned())].into());
    let b = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = b
        .metadata
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion increases");
    // The first copy is stale now.
    assert_eq!(
        code(
            api.replace("a", &PostParams::default(), &changed)
                .await
                .unwrap_err()
        ),
        409
    );

    let mut gen_named = cm("", &[]);
    gen_named.metadata.name = None;
    gen_named.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &gen_named)
        .await
        .unwrap();
    let name = g.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    assert_eq!(code(api.get("missing").await.unwrap_err()), 404);
    let other_ns: Api<ConfigMap> = Api::namespaced(c.clone(), "nope");
    assert_eq!(
        code(
            other_ns
                .create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        404,
        "namespace must exist"
    );
    let mut bad = cm("Bad_Name", &[]);
    bad.metadata.name = Some("Bad_Name".into());
    assert_eq!(
        code(api.create(&PostParams::default(), &bad).await.unwrap_err()),
        422
    );

    // dryRun=All answers but stores nothing.
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &cm("dry", &[]),
    )
    .await
    .unwrap();
    assert_eq!(code(api.get("dry").await.unwrap_err()), 404);
}

#[tokio::test]
async fn lists_select_and_page() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), &[("tier", tier)]),
        )
        .await
        .unwrap();
    }
    let even = api
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    assert!(even.metadata.resource_version.is_some());
    let notin = api
        .list(&ListParams::default().labels("tier notin (even)"))
        .await
        .unwrap();
    assert_eq!(notin.items.len(), 2);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = api.list(&lp).await.unwrap();
        names.extend(page.items.iter().map(|i| i.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    // A cluster-wide list of a namespaced kind.
    let all: Api<ConfigMap> = Api::all(c.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        5
    );
}

#[tokio::test]
async fn custom_resources_are_validated_defaulted_and_have_status() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    install_crds(&c).await;
    let api = dynamic(
        &c,
        "bootstrap.cluster.x-k8s.io",
        "v1beta2",
        "K0sWorkerConfig",
        "k0sworkerconfigs",
        "default",
    );
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig",
        "metadata": {"name": "w0"},
        "spec": {"version": "v1.33.1+k0s.0", "unknown": 1},
        "status": {"dataSecretName": "ignored-on-create"}
    }))
    .unwrap();
    let w = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(
        w.data["spec"]["k0sInstallDir"], "/usr/local/bin",
        "defaults applied"
    );
    assert!(
        w.data["spec"].get("unknown").is_none(),
        "unknown fields pruned"
    );
    assert!(
        w.data.get("status").is_none(),
        "status is not set on create"
    );
    assert_eq!(w.metadata.generation, Some(1));

    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig",
        "metadata": {"name": "bad"}, "spec": {"provisioner": {"type": "cloud-init"}}
    }))
    .unwrap();
    match api.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message
                    .contains("spec.provisioner.type: Unsupported value"),
                "{}",
                s.message
            );
        }
        e => panic!("{e:?}"),
    }

    // Status writes touch only status and keep the generation.
    let st = api
        .patch_status(
            "w0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"dataSecretName": "w0"}, "spec": {"version": "ignored"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["dataSecretName"], "w0");
    assert_eq!(st.data["spec"]["version"], "v1.33.1+k0s.0");
    assert_eq!(st.metadata.generation, Some(1));
    // Spec writes bump it and keep status.
    let sp = api
        .patch(
            "w0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"version": "v1.34.0+k0s.0"}, "status": {"dataSecretName": "x"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(sp.metadata.generation, Some(2));
    assert_eq!(sp.data["status"]["dataSecretName"], "w0");
    // Metadata-only writes do not.
    let md = api
        .patch(
            "w0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(md.metadata.generation, Some(2));

    // PUT of a custom resource without resourceVersion is 422.
    let mut no_rv = md.clone();
    no_rv.metadata.resource_version = None;
    assert_eq!(
        code(
            api.replace("w0", &PostParams::default(), &no_rv)
                .await
                .unwrap_err()
        ),
        422
    );
    // Strategic merge is for built-in kinds only.
    assert_eq!(
        code(
            api.patch(
                "w0",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {}}))
            )
            .await
            .unwrap_err()
        ),
        415
    );
}

#[tokio::test]
async fn json_patch_test_op_and_finalizers() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let mut obj = cm("f", &[]);
    obj.metadata.finalizers = Some(vec!["drover.example/keep".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();

    let failed_test: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    assert_eq!(
        code(
            api.patch(
                "f",
                &PatchParams::default(),
                &Patch::<()>::Json(failed_test)
            )
            .await
            .unwrap_err()
        ),
        422
    );

    let del = api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = del.left().expect("an object with a finalizer stays");
    assert!(marked.metadata.deletion_timestamp.is_some());
    // New finalizers cannot be added while deleting.
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["drover.example/keep", "another"]}}));
    assert_eq!(
        code(
            api.patch("f", &PatchParams::default(), &add)
                .await
                .unwrap_err()
        ),
        422
    );

    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["drover.example/keep"]},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    api.patch("f", &PatchParams::default(), &Patch::<()>::Json(remove))
        .await
        .unwrap();
    assert_eq!(
        code(api.get("f").await.unwrap_err()),
        404,
        "gone with its last finalizer"
    );

    // Preconditions.
    let x = api
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("wrong".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(code(api.delete("x", &dp).await.unwrap_err()), 409);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: x.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert!(
        api.delete("x", &dp).await.unwrap().is_right(),
        "deleted at once: a Status"
    );
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_conflicts() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "1", "b": "1"}});
    let pp = PatchParams::apply("drover");
    let s = api.patch("s", &pp, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(s.data.as_ref().unwrap()["a"], "1");
    assert_eq!(
        s.metadata.managed_fields.as_ref().unwrap()[0]
            .manager
            .as_deref(),
        Some("drover")
    );

    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "2"}});
    let err = api
        .patch(
            "s",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("conflict with \"drover\""),
                "{}",
                s.message
            );
        }
        e => panic!("{e:?}"),
    }
    let forced = api
        .patch(
            "s",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "2");
    // drover stops applying b: it goes.
    let less =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {}});
    let s = api.patch("s", &pp, &Patch::Apply(&less)).await.unwrap();
    assert_eq!(s.data.unwrap_or_default().get("b"), None);
}

#[tokio::test]
async fn secrets_string_data_and_type() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "b"}, "type": "cluster.x-k8s.io/secret", "stringData": {"value": "#cloud-config", "format": "cloud-config"}})).unwrap();
    let s = api.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.data.as_ref().unwrap()["format"].0, b"cloud-config");
    assert!(s.string_data.is_none());
    let change_type = Patch::Merge(json!({"type": "Opaque"}));
    assert_eq!(
        code(
            api.patch("b", &PatchParams::default(), &change_type)
                .await
                .unwrap_err()
        ),
        422
    );
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let oref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "controller": true, "blockOwnerDeletion": true}]);
    for n in ["dep1", "dep2"] {
        let mut d = cm(n, &[]);
        d.metadata.owner_references = Some(serde_json::from_value(oref.clone()).unwrap());
        api.create(&PostParams::default(), &d).await.unwrap();
    }
    // Orphan: the dependents stay, without the reference.
    let owner2 = api
        .create(&PostParams::default(), &cm("owner2", &[]))
        .await
        .unwrap();
    let mut d3 = cm("dep3", &[]);
    d3.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner2.metadata.uid}])).unwrap());
    api.create(&PostParams::default(), &d3).await.unwrap();
    api.delete(
        "owner2",
        &DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    let gone = wait_until(|| async {
        api.get_opt("dep1").await.unwrap().is_none() && api.get_opt("dep2").await.unwrap().is_none()
    })
    .await;
    assert!(gone, "dependents are collected after their owner goes");
    let orphaned = wait_until(|| async {
        api.get_opt("owner2").await.unwrap().is_none()
            && api
                .get("dep3")
                .await
                .unwrap()
                .metadata
                .owner_references
                .unwrap_or_default()
                .is_empty()
    })
    .await;
    assert!(
        orphaned,
        "orphan keeps dependents and drops their owner reference"
    );

    // Foreground: the owner waits for its blocking dependents.
    let owner3 = api
        .create(&PostParams::default(), &cm("owner3", &[]))
        .await
        .unwrap();
    let mut d4 = cm("dep4", &[]);
    d4.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner3", "uid": owner3.metadata.uid, "blockOwnerDeletion": true}])).unwrap());
    d4.metadata.finalizers = Some(vec!["hold".into()]);
    api.create(&PostParams::default(), &d4).await.unwrap();
    api.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o3 = api.get("owner3").await.unwrap();
    assert!(
        o3.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_owned())
    );
    assert!(
        api.get("dep4")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    api.patch(
        "dep4",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        wait_until(|| async { api.get_opt("owner3").await.unwrap().is_none() }).await,
        "owner goes after its dependent"
    );

    // An object whose owner never existed is collected.
    let mut orphan = cm("dangling", &[]);
    orphan.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}])).unwrap());
    api.create(&PostParams::default(), &orphan).await.unwrap();
    assert!(wait_until(|| async { api.get_opt("dangling").await.unwrap().is_none() }).await);
}

#[tokio::test]
async fn namespaces_terminate_and_empty() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "t");
    api.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    nss.delete("t", &DeleteParams::default()).await.unwrap();
    assert!(wait_until(|| async { nss.get_opt("t").await.unwrap().is_none() }).await);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("b", &[]))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn scale_subresource_on_a_custom_resource() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    install_crds(&c).await;
    let api = dynamic(
        &c,
        "controlplane.cluster.x-k8s.io",
        "v1beta2",
        "K0smotronControlPlane",
        "k0smotroncontrolplanes",
        "default",
    );
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2", "kind": "K0smotronControlPlane",
        "metadata": {"name": "cp"}, "spec": {"version": "v1.33.1-k0s.0", "replicas": 1}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let scale = api.get_scale("cp").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    api.patch_scale(
        "cp",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("cp").await.unwrap().data["spec"]["replicas"], 3);
}

#[tokio::test]
async fn watches_resume_and_filter() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let first = api
        .create(&PostParams::default(), &cm("w1", &[("sel", "yes")]))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("w2", &[("sel", "no")]))
        .await
        .unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "no"}}})),
    )
    .await
    .unwrap();

    // Resume after w1's creation, selecting sel=yes: w1 leaves the selection (DELETED).
    let wp = WatchParams::default().labels("sel=yes").timeout(2);
    let events: Vec<_> = api
        .watch(&wp, &rv)
        .await
        .unwrap()
        .take(1)
        .try_collect()
        .await
        .unwrap();
    match &events[0] {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("w1")),
        other => panic!("{other:?}"),
    }
    // Without a selector: w2 ADDED, w1 MODIFIED, in order.
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .take(2)
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(&events[0], WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("w2")));
    assert!(
        matches!(&events[1], WatchEvent::Modified(o) if o.metadata.name.as_deref() == Some("w1"))
    );

    // timeoutSeconds ends the stream.
    let started = std::time::Instant::now();
    let cur = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let n = api
        .watch(&WatchParams::default().timeout(1), &cur)
        .await
        .unwrap()
        .count()
        .await;
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_expired_resume_point_is_410() {
    let (_sim, h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    h.cluster.expire_history();
    let rv = a.metadata.resource_version.unwrap();
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .take(1)
        .try_collect()
        .await
        .unwrap();
    match &events[0] {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("s{i}"), &[]))
            .await
            .unwrap();
    }
    let wp = WatchParams::streaming_lists().timeout(2);
    let events: Vec<_> = api
        .watch(&wp, "0")
        .await
        .unwrap()
        .take(4)
        .try_collect()
        .await
        .unwrap();
    assert!(
        events[..3]
            .iter()
            .all(|e| matches!(e, WatchEvent::Added(_)))
    );
    match &events[3] {
        WatchEvent::Bookmark(b) => assert_eq!(
            b.metadata
                .annotations
                .get("k8s.io/initial-events-end")
                .map(String::as_str),
            Some("true")
        ),
        other => panic!("{other:?}"),
    }
}

/// A kube-runtime reflector through forced relists (410) and dropped
/// watches ends with exactly the objects that exist, none lost or doubled.
#[tokio::test]
async fn reflector_survives_forced_relists() {
    for mode in [
        watcher::InitialListStrategy::ListWatch,
        watcher::InitialListStrategy::StreamingList,
    ] {
        let (_sim, h, c) = start(SimConfig {
            history_limit: 5,
            bookmark_interval: Duration::from_millis(200),
            ..SimConfig::default()
        })
        .await;
        h.faults
            .set_watch_drop_after(Some(Duration::from_millis(300)));
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let (reader, writer) = reflector::store();
        let cfg = watcher::Config {
            initial_list_strategy: mode.clone(),
            page_size: Some(3),
            ..watcher::Config::default()
        };
        let stream = reflector(writer, watcher(api.clone(), cfg))
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move {
            futures_util::pin_mut!(stream);
            while stream.next().await.is_some() {}
        });
        for i in 0..40 {
            api.create(&PostParams::default(), &cm(&format!("r{i}"), &[]))
                .await
                .unwrap();
            if i % 10 == 9 {
                h.cluster.expire_history();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        for i in (0..40).step_by(3) {
            api.delete(&format!("r{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
        h.cluster.expire_history();
        let want: std::collections::BTreeSet<String> = (0..40)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("r{i}"))
            .collect();
        let converged = wait_until(|| async {
            let have: std::collections::BTreeSet<String> = reader
                .state()
                .iter()
                .map(|o| o.metadata.name.clone().unwrap())
                .collect();
            have == want
        })
        .await;
        let have: Vec<String> = reader
            .state()
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect();
        assert!(
            converged,
            "{mode:?}: reflector holds {} objects, want {}: {have:?}",
            have.len(),
            want.len()
        );
        assert_eq!(have.len(), want.len(), "no duplicates");
        task.abort();
    }
}

#[tokio::test]
async fn authentication_and_plain_http() {
    let (_sim, h, _c) = start(SimConfig::default()).await;
    // A token works; no credentials are 401.
    let mut cfg = Config::new(h.url.parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(&h.ca.as_ref().unwrap().cert_pem())]);
    let anon = Client::try_from(cfg.clone()).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(anon, "default");
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()),
        401
    );
    cfg.auth_info.token = Some(h.token.clone().into());
    let tok = Client::try_from(cfg).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(tok, "default");
    api.list(&ListParams::default()).await.unwrap();

    let (_sim2, h2, c2) = start(SimConfig {
        tls: false,
        ..SimConfig::default()
    })
    .await;
    assert!(h2.url.starts_with("http://"));
    let api: Api<ConfigMap> = Api::namespaced(c2, "default");
    api.create(&PostParams::default(), &cm("p", &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn many_clusters_in_one_process() {
    let sim = Sim::new(SimConfig::default());
    let mgmt = sim.add_cluster("mgmt").await.unwrap();
    let child = sim.add_cluster("child-1").await.unwrap();
    assert_ne!(mgmt.addr, child.addr);
    let cm_api = |c: Client| Api::<ConfigMap>::namespaced(c, "default");
    cm_api(client_for(&mgmt).await)
        .create(&PostParams::default(), &cm("only-in-mgmt", &[]))
        .await
        .unwrap();
    assert!(
        cm_api(client_for(&child).await)
            .get_opt("only-in-mgmt")
            .await
            .unwrap()
            .is_none()
    );
    // Each cluster has its own CA: the child's kubeconfig does not trust the management cluster.
    let mut kc = Kubeconfig::from_yaml(&child.kubeconfig).unwrap();
    kc.clusters[0].cluster.as_mut().unwrap().server = Some(mgmt.url.clone());
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let crossed = Client::try_from(cfg).unwrap();
    assert!(cm_api(crossed).list(&ListParams::default()).await.is_err());
    assert!(matches!(
        sim.add_cluster("child-1").await,
        Err(drover_loadtest::sim::SimError::Exists(_))
    ));
}

#[tokio::test]
async fn injected_faults() {
    let (_sim, h, c) = start(SimConfig {
        tls: false,
        ..SimConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    h.faults.set_error_rate(1.0);
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    h.faults.set_error_rate(0.0);
    // 429 carries Retry-After (seen on the wire, below kube-rs's retries).
    h.faults.set_throttle_rate(1.0);
    let raw = raw_get(h.addr, "/api/v1/namespaces/default/configmaps").await;
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    // kube-rs's retry policy rides out a partial throttle.
    h.faults.set_throttle_rate(0.3);
    for _ in 0..3 {
        api.list(&ListParams::default()).await.unwrap();
    }
    h.faults.set_throttle_rate(0.0);
    // Latency applies to every request.
    h.faults.set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));

    // The same knobs over HTTP, for a sim in another process.
    let put = |body: serde_json::Value| {
        http::Request::put("/kube-sim/v1/faults")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let now: serde_json::Value = c
        .request(put(json!({"latencyMs": 0, "errorRate": 1.0})))
        .await
        .unwrap();
    assert_eq!(now["errorRate"], 1.0);
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    c.request::<serde_json::Value>(put(json!({"errorRate": 0})))
        .await
        .unwrap();
    api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        code(
            c.request::<serde_json::Value>(put(json!({"errorRate": 2})))
                .await
                .unwrap_err()
        ),
        422
    );
    // Forced 410 for a watch resume.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    c.request::<serde_json::Value>(put(json!({"expireHistory": true})))
        .await
        .unwrap();
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .take(1)
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&events[0], WatchEvent::Error(e) if e.code == 410),
        "{events:?}"
    );
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

async fn wait_until<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn workload_controllers_make_things_ready() {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), "default");
    let labels = json!({"app": "k0smotron", "cluster": "x"});
    sts.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "kmc-x"},
        "spec": {"replicas": 2, "serviceName": "kmc-x", "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "controller", "image": "k0s"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "kmc-x"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    })).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    assert!(
        wait_until(|| async {
            sts.get("kmc-x")
                .await
                .unwrap()
                .status
                .and_then(|s| s.ready_replicas)
                == Some(2)
        })
        .await,
        "StatefulSet becomes ready"
    );
    let p0 = pods.get("kmc-x-0").await.unwrap();
    assert_eq!(p0.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p0.metadata.owner_references.unwrap()[0].kind, "StatefulSet");
    assert!(
        wait_until(|| async {
            pvcs.get("kmc-x-kmc-x-1")
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.phase)
                .as_deref()
                == Some("Bound")
        })
        .await,
        "claims from the templates are bound"
    );
    // Scaling down removes the highest ordinal.
    sts.patch(
        "kmc-x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    assert!(wait_until(|| async { pods.get_opt("kmc-x-1").await.unwrap().is_none() }).await);

    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
    deploys.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    })).unwrap()).await.unwrap();
    assert!(
        wait_until(|| async {
            deploys
                .get("d")
                .await
                .unwrap()
                .status
                .and_then(|s| s.available_replicas)
                == Some(3)
        })
        .await
    );

    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 6443}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        wait_until(|| async {
            svcs.get("lb")
                .await
                .unwrap()
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|l| l.ingress)
                .is_some_and(|i| !i.is_empty())
        })
        .await,
        "LoadBalancer gets an ingress address"
    );
    let lb = svcs.get("lb").await.unwrap();
    let port = &lb.spec.unwrap().ports.unwrap()[0];
    assert!(
        port.node_port.is_some_and(|p| (30000..=32767).contains(&p)),
        "{port:?}"
    );
}

#[tokio::test]
async fn a_ready_hosted_control_plane_brings_its_child_cluster_up() {
    use drover_loadtest::sim::hosted::{ADDRESS_ANNOTATION, child_name};
    use drover_loadtest::sim::tls::ClusterCa;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Service;
    let sim = Sim::new(SimConfig {
        hosted_control_planes_in: Some("mgmt".into()),
        ..SimConfig::default()
    });
    let h = sim.add_cluster("mgmt").await.unwrap();
    let c = client_for(&h).await;
    // The provider's CA, as it would store it in <cluster>-ca.
    let ca = ClusterCa::generate("hcp").unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "hcp-ca"}, "type": "cluster.x-k8s.io/secret",
                "stringData": {"tls.crt": ca.cert_pem(), "tls.key": ca.key_pem()}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let labels = json!({"app": "k0smotron", "cluster": "hcp", "app.kubernetes.io/component": "control-plane"});
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    svcs.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "kmc-hcp", "labels": labels}, "spec": {"type": "NodePort", "ports": [{"port": 30443, "nodePort": 30443}], "selector": labels}
    })).unwrap()).await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), "default");
    sts.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "kmc-hcp", "labels": labels},
        "spec": {"replicas": 1, "serviceName": "kmc-hcp", "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "controller", "image": "k0s"}]}}}
    })).unwrap()).await.unwrap();

    assert!(
        wait_until(|| async {
            svcs.get("kmc-hcp")
                .await
                .unwrap()
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key(ADDRESS_ANNOTATION)
        })
        .await,
        "the Service learns where the child's API answers"
    );
    let address = svcs
        .get("kmc-hcp")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap()[ADDRESS_ANNOTATION]
        .clone();
    let child = sim
        .cluster(&child_name("default", "hcp"))
        .expect("child cluster runs");
    assert_eq!(child.addr.to_string(), address);

    // A kubeconfig minted from <cluster>-ca by the provider works on the child.
    let admin = ca
        .client_cert("kubernetes-admin", "system:masters")
        .unwrap();
    let kc = drover_loadtest::sim::kubeconfig::render(
        "hcp",
        &format!("https://{address}"),
        Some(&ca.cert_pem()),
        drover_loadtest::sim::kubeconfig::Credentials::ClientCert {
            cert_pem: &admin.cert_pem,
            key_pem: &admin.key_pem,
        },
    );
    let cfg = Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&kc).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let child_client = Client::try_from(cfg).unwrap();
    let nss: Api<Namespace> = Api::all(child_client);
    assert!(nss.get_opt("kube-system").await.unwrap().is_some());

    sts.delete("kmc-hcp", &DeleteParams::default())
        .await
        .unwrap();
    let name = child_name("default", "hcp");
    assert!(
        wait_until(|| async { sim.cluster(&name).is_none() }).await,
        "deleting the control plane stops the child"
    );
}

#[tokio::test]
async fn child_clusters_can_be_created_over_http() {
    let (sim, _h, c) = start(SimConfig::default()).await;
    let req = http::Request::post("/kube-sim/v1/clusters")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"name": "child-a"})).unwrap())
        .unwrap();
    let created: serde_json::Value = c.request(req).await.unwrap();
    let kc = created["kubeconfig"].as_str().unwrap();
    let cfg = Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(kc).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let child: Api<ConfigMap> = Api::namespaced(Client::try_from(cfg).unwrap(), "default");
    child
        .create(&PostParams::default(), &cm("in-child", &[]))
        .await
        .unwrap();
    assert!(sim.cluster("child-a").is_some());
    let again = http::Request::post("/kube-sim/v1/clusters")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"name": "child-a"})).unwrap())
        .unwrap();
    assert_eq!(
        code(c.request::<serde_json::Value>(again).await.unwrap_err()),
        409
    );
    let del = http::Request::delete("/kube-sim/v1/clusters/child-a")
        .body(Vec::new())
        .unwrap();
    c.request::<serde_json::Value>(del).await.unwrap();
    assert!(sim.cluster("child-a").is_none());
}

/// Behaviours a review against the real apiserver found missing, one check each.
#[tokio::test]
async fn apiserver_rules_found_in_review() {
    let (_sim, h, c) = start(SimConfig::default()).await;
    install_crds(&c).await;
    let api = dynamic(
        &c,
        "bootstrap.cluster.x-k8s.io",
        "v1beta2",
        "K0sWorkerConfig",
        "k0sworkerconfigs",
        "default",
    );
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig",
        "metadata": {"name": "w"}, "spec": {"version": "v1.33.1+k0s.0"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &w).await.unwrap();

    // Status applies own their fields: a field no longer applied goes.
    let status = |fields: serde_json::Value| json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig", "metadata": {"name": "w"}, "status": fields});
    api.patch_status(
        "w",
        &PatchParams::apply("drover"),
        &Patch::Apply(status(json!({"dataSecretName": "w", "ready": true}))),
    )
    .await
    .unwrap();
    let after = api
        .patch_status(
            "w",
            &PatchParams::apply("drover"),
            &Patch::Apply(status(json!({"dataSecretName": "w"}))),
        )
        .await
        .unwrap();
    assert!(
        after.data["status"].get("ready").is_none(),
        "{}",
        after.data["status"]
    );
    let mf = after.metadata.managed_fields.clone().unwrap();
    assert!(
        mf.iter().any(|e| e.manager.as_deref() == Some("drover")
            && e.subresource.as_deref() == Some("status")),
        "{mf:?}"
    );

    // A main-resource write ignores status, so a junk status neither fails nor gets owned.
    let mut junk = after.clone();
    junk.data["status"] = json!({"dataSecretName": 5});
    let replaced = api
        .replace(
            "w",
            &PostParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &junk,
        )
        .await
        .unwrap();
    assert_eq!(replaced.data["status"]["dataSecretName"], "w");

    // Creating with a resourceVersion is an error.
    let mut with_rv = w.clone();
    with_rv.metadata.name = Some("w2".into());
    with_rv.metadata.resource_version = Some("5".into());
    assert_eq!(
        code(
            api.create(&PostParams::default(), &with_rv)
                .await
                .unwrap_err()
        ),
        500
    );
    // Apply needs apiVersion and kind, and honours a resourceVersion.
    let bare = json!({"metadata": {"name": "w"}, "spec": {"version": "v1.34.0+k0s.0"}});
    assert_eq!(
        code(
            api.patch("w", &PatchParams::apply("drover"), &Patch::Apply(bare))
                .await
                .unwrap_err()
        ),
        400
    );
    let stale = json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig", "metadata": {"name": "w", "resourceVersion": created.metadata.resource_version}, "spec": {"version": "v1.34.0+k0s.0"}});
    assert_eq!(
        code(
            api.patch("w", &PatchParams::apply("drover"), &Patch::Apply(stale))
                .await
                .unwrap_err()
        ),
        409
    );

    // Marking for deletion bumps the generation.
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["drover.example/x"]}})),
    )
    .await
    .unwrap();
    let before = api.get("w").await.unwrap().metadata.generation.unwrap();
    let marked = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(marked.metadata.generation, Some(before + 1));

    // A subresource cannot be deleted.
    let del_status = http::Request::delete(
        "/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/default/k0sworkerconfigs/w/status",
    )
    .body(Vec::new())
    .unwrap();
    assert_eq!(
        code(
            c.request::<serde_json::Value>(del_status)
                .await
                .unwrap_err()
        ),
        405
    );

    // Owner references: checked on updates too, and by namespace, kind and name.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let sys: Api<ConfigMap> = Api::namespaced(c.clone(), "kube-system");
    let other_ns_owner = sys
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let mut cross = cm("cross", &[]);
    cross.metadata.owner_references = Some(serde_json::from_value(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": other_ns_owner.metadata.uid}])).unwrap());
    cms.create(&PostParams::default(), &cross).await.unwrap();
    assert!(
        wait_until(|| async { cms.get_opt("cross").await.unwrap().is_none() }).await,
        "an owner in another namespace does not count"
    );
    cms.create(&PostParams::default(), &cm("later", &[]))
        .await
        .unwrap();
    cms.patch("later", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "11111111-1111-1111-1111-111111111111"}]}}))).await.unwrap();
    assert!(
        wait_until(|| async { cms.get_opt("later").await.unwrap().is_none() }).await,
        "owner references added later are checked"
    );

    // A watch from a resourceVersion this cluster never had is 504.
    let future = (h.cluster.resource_version() + 1000).to_string();
    let events: Vec<_> = cms
        .watch(&WatchParams::default().timeout(2), &future)
        .await
        .unwrap()
        .take(1)
        .try_collect()
        .await
        .unwrap();
    match &events[0] {
        WatchEvent::Error(e) => assert_eq!(e.code, 504),
        other => panic!("{other:?}"),
    }

    // Deleting a CRD deletes its custom resources first.
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &serde_json::from_value(json!({
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig", "metadata": {"name": "w3"}, "spec": {}
    })).unwrap()).await.unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(c.clone());
    crds.delete(
        "k0sworkerconfigs.bootstrap.cluster.x-k8s.io",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    assert!(
        wait_until(|| async {
            crds.get_opt("k0sworkerconfigs.bootstrap.cluster.x-k8s.io")
                .await
                .unwrap()
                .is_none()
        })
        .await
    );
    let crd = drover_shared::crds::drover_crds()
        .into_iter()
        .find(|c| c.spec.names.plural == "k0sworkerconfigs")
        .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the old objects went with their CRD"
    );
}

/// kube-rs's Recorder writes events.k8s.io Events; core-API readers
/// (`kubectl describe`, `kubectl get events`) see them, as on a real cluster.
#[tokio::test]
async fn events_written_through_either_api_are_one_set() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    use kube::Resource as _;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (_sim, _h, c) = start(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let obj = cms
        .create(&PostParams::default(), &cm("subject", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "drover".into(),
            instance: Some("drover-0".into()),
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: "MissingSecret".into(),
                note: Some("spec.files[0].contentFrom: secret \"x\" not found".into()),
                action: "Render".into(),
                secondary: None,
            },
            &obj.object_ref(&()),
        )
        .await
        .unwrap();
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    let seen = core
        .list(
            &ListParams::default()
                .fields("involvedObject.name=subject,involvedObject.kind=ConfigMap"),
        )
        .await
        .unwrap();
    assert_eq!(seen.items.len(), 1);
    assert_eq!(seen.items[0].reason.as_deref(), Some("MissingSecret"));
    assert!(
        seen.items[0]
            .message
            .as_deref()
            .unwrap()
            .contains("spec.files[0].contentFrom")
    );
    let new: Api<NewEvent> = Api::namespaced(c.clone(), "default");
    let same = new
        .list(&ListParams::default().fields("regarding.name=subject"))
        .await
        .unwrap();
    assert_eq!(same.items.len(), 1);
    assert_eq!(
        same.items[0].reporting_controller.as_deref(),
        Some("drover")
    );
}
