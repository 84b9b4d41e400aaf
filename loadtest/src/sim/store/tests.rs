use serde_json::json;

use super::*;

const CRD: ResourceRules = ResourceRules {
    namespaced: true,
    status_subresource: true,
};

fn res() -> Resource {
    Resource::new("bootstrap.cluster.x-k8s.io", "k0sworkerconfigs")
}

fn obj(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "K0sWorkerConfig",
           "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": {"version": "v1"}})
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn create_sets_server_metadata_and_rejects_duplicates() {
    let mut s = Store::new(100);
    let a = s
        .create(
            &res(),
            CRD,
            obj("a", json!({})),
            "uid-a",
            "2026-11-23T00:00:00Z",
        )
        .unwrap();
    assert_eq!(a["metadata"]["uid"], "uid-a");
    assert_eq!(a["metadata"]["generation"], 1);
    assert_eq!(a["metadata"]["creationTimestamp"], "2026-11-23T00:00:00Z");
    let b = s
        .create(&res(), CRD, obj("b", json!({})), "uid-b", "t")
        .unwrap();
    assert!(rv_of(&b) > rv_of(&a), "resourceVersion strictly increases");
    let err = s
        .create(&res(), CRD, obj("a", json!({})), "x", "t")
        .unwrap_err();
    assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
    let err = s.get(&res(), Some("default"), "zz").unwrap_err();
    assert_eq!(err.code, 404);
}

#[test]
fn generation_moves_only_on_spec_changes_and_status_is_a_subresource() {
    let mut s = Store::new(100);
    let a = s
        .create(&res(), CRD, obj("a", json!({})), "u", "t")
        .unwrap();
    // Metadata-only change: new RV, same generation.
    let mut m = (*a).clone();
    m["metadata"]["labels"] = json!({"x": "y"});
    let m = s.update(&res(), CRD, Subresource::Main, m).unwrap();
    assert_eq!(m["metadata"]["generation"], 1);
    assert!(rv_of(&m) > rv_of(&a));
    // Status through the main resource is ignored.
    let mut st = (*m).clone();
    st["status"] = json!({"ready": true});
    let st = s.update(&res(), CRD, Subresource::Main, st).unwrap();
    assert!(st.get("status").is_none());
    // Status through /status lands, spec changes there are ignored, generation unchanged.
    let mut st2 = (*st).clone();
    st2["status"] = json!({"ready": true});
    st2["spec"]["version"] = json!("v2");
    let st2 = s.update(&res(), CRD, Subresource::Status, st2).unwrap();
    assert_eq!(st2["status"]["ready"], true);
    assert_eq!(st2["spec"]["version"], "v1");
    assert_eq!(st2["metadata"]["generation"], 1);
    // Spec change: generation bumps.
    let mut sp = (*st2).clone();
    sp["spec"]["version"] = json!("v3");
    let sp = s.update(&res(), CRD, Subresource::Main, sp).unwrap();
    assert_eq!(sp["metadata"]["generation"], 2);
    assert_eq!(sp["status"]["ready"], true, "main writes keep status");
}

#[test]
fn stale_resource_version_is_a_conflict_and_noop_writes_keep_the_version() {
    let mut s = Store::new(100);
    let a = s
        .create(&res(), CRD, obj("a", json!({})), "u", "t")
        .unwrap();
    let same = s
        .update(&res(), CRD, Subresource::Main, (*a).clone())
        .unwrap();
    assert_eq!(rv_of(&same), rv_of(&a));
    let mut newer = (*a).clone();
    newer["spec"]["version"] = json!("v2");
    s.update(&res(), CRD, Subresource::Main, newer).unwrap();
    let mut stale = (*a).clone();
    stale["spec"]["version"] = json!("v3");
    let err = s.update(&res(), CRD, Subresource::Main, stale).unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let mut s = Store::new(100);
    let mut o = obj("a", json!({}));
    o["metadata"]["finalizers"] = json!(["drover.io/test"]);
    s.create(&res(), CRD, o, "u", "t").unwrap();
    let (marked, gone) = s
        .delete(&res(), Some("default"), "a", None, None, "t2")
        .unwrap();
    assert!(!gone);
    assert_eq!(marked["metadata"]["deletionTimestamp"], "t2");
    // Deleting again is a no-op; adding a finalizer now is refused.
    let (again, _) = s
        .delete(&res(), Some("default"), "a", None, None, "t3")
        .unwrap();
    assert_eq!(rv_of(&again), rv_of(&marked));
    let mut more = (*marked).clone();
    more["metadata"]["finalizers"] = json!(["drover.io/test", "other"]);
    assert_eq!(
        s.update(&res(), CRD, Subresource::Main, more)
            .unwrap_err()
            .code,
        422
    );
    // Removing the last finalizer removes the object.
    let mut done = (*marked).clone();
    done["metadata"]["finalizers"] = json!([]);
    s.update(&res(), CRD, Subresource::Main, done).unwrap();
    assert_eq!(s.get(&res(), Some("default"), "a").unwrap_err().code, 404);
    let kinds: Vec<_> = s.events_since(0).unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );
}

#[test]
fn delete_preconditions() {
    let mut s = Store::new(100);
    s.create(&res(), CRD, obj("a", json!({})), "uid-a", "t")
        .unwrap();
    assert_eq!(
        s.delete(&res(), Some("default"), "a", Some("other"), None, "t")
            .unwrap_err()
            .code,
        409
    );
    assert_eq!(
        s.delete(&res(), Some("default"), "a", None, Some("999"), "t")
            .unwrap_err()
            .code,
        409
    );
    assert!(
        s.delete(&res(), Some("default"), "a", Some("uid-a"), None, "t")
            .unwrap()
            .1
    );
}

#[test]
fn list_filters_pages_and_reports_a_resource_version() {
    let mut s = Store::new(100);
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        s.create(
            &res(),
            CRD,
            obj(&format!("o{i}"), json!({"tier": tier})),
            &format!("u{i}"),
            "t",
        )
        .unwrap();
    }
    let all = LabelSelector::default();
    let none = FieldSelector::default();
    let even = LabelSelector::parse("tier=even").unwrap();
    let page = s
        .list(&res(), Some("default"), &even, &none, None, None)
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.resource_version, s.resource_version());
    // Paging: 2 + 2 + 1, every object exactly once.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let p = s
            .list(&res(), None, &all, &none, Some(2), token.as_deref())
            .unwrap();
        seen.extend(
            p.items
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        if p.continue_token.is_empty() {
            break;
        }
        token = Some(p.continue_token);
    }
    assert_eq!(seen, ["o0", "o1", "o2", "o3", "o4"]);
    let by_name = FieldSelector::parse("metadata.name=o3", &[]).unwrap();
    assert_eq!(
        s.list(&res(), None, &all, &by_name, None, None)
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        s.list(&res(), None, &all, &none, None, Some("zz"))
            .unwrap_err()
            .code,
        400
    );
    assert_eq!(
        s.list(&res(), Some("other"), &all, &none, None, None)
            .unwrap()
            .items
            .len(),
        0
    );
}

#[test]
fn watch_resumes_from_history_and_gets_410_when_it_fell_out() {
    let mut s = Store::new(3);
    for i in 0..5 {
        s.create(&res(), CRD, obj(&format!("o{i}"), json!({})), "u", "t")
            .unwrap();
    }
    // Events 3, 4, 5 are kept; resuming from 2 still sees all of them.
    let ev = s.events_since(2).unwrap();
    assert_eq!(ev.iter().map(|e| e.rv).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(s.events_since(5).unwrap().is_empty());
    let gone = s.events_since(1).unwrap_err();
    assert_eq!((gone.code, gone.reason), (410, "Expired"));
    s.expire_history();
    assert_eq!(s.events_since(4).unwrap_err().code, 410);
    assert!(s.events_since(5).unwrap().is_empty());
}

#[test]
fn namespaced_lists_see_only_their_namespace_across_pages() {
    let mut s = Store::new(100);
    for ns in ["a", "b", "c"] {
        for i in 0..3 {
            let mut o = obj(&format!("o{i}"), json!({}));
            o["metadata"]["namespace"] = json!(ns);
            s.create(&res(), CRD, o, "u", "t").unwrap();
        }
    }
    let (all, none) = (LabelSelector::default(), FieldSelector::default());
    let names = |p: &ListPage| -> Vec<String> {
        p.items
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let first = s
        .list(&res(), Some("b"), &all, &none, Some(2), None)
        .unwrap();
    assert_eq!(names(&first), ["b/o0", "b/o1"]);
    let second = s
        .list(
            &res(),
            Some("b"),
            &all,
            &none,
            Some(2),
            Some(&first.continue_token),
        )
        .unwrap();
    assert_eq!(names(&second), ["b/o2"]);
    assert!(second.continue_token.is_empty());
    assert!(
        s.list(&res(), Some("aa"), &all, &none, None, None)
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        s.list(&res(), None, &all, &none, None, None)
            .unwrap()
            .items
            .len(),
        9
    );
}

#[test]
fn continued_pages_report_the_first_pages_version_and_expire_with_history() {
    let mut s = Store::new(3);
    for i in 0..4 {
        s.create(
            &res(),
            CRD,
            obj(&format!("o{i}"), json!({})),
            &format!("u{i}"),
            "t",
        )
        .unwrap();
    }
    let (all, none) = (LabelSelector::default(), FieldSelector::default());
    let first = s.list(&res(), None, &all, &none, Some(2), None).unwrap();
    let first_rv = first.resource_version;
    // A change between pages: the next page shows it, but reports the first
    // page's version so a watch from there replays the change.
    s.create(&res(), CRD, obj("o9", json!({})), "u9", "t")
        .unwrap();
    let second = s
        .list(
            &res(),
            None,
            &all,
            &none,
            Some(10),
            Some(&first.continue_token),
        )
        .unwrap();
    assert_eq!(second.resource_version, first_rv);
    assert_eq!(second.items.len(), 3);
    let replay = s.events_since(first_rv).unwrap();
    assert_eq!(replay.len(), 1);
    // Once that version has left the history, the token is 410.
    for i in 10..14 {
        s.create(
            &res(),
            CRD,
            obj(&format!("o{i}"), json!({})),
            &format!("u{i}"),
            "t",
        )
        .unwrap();
    }
    let err = s
        .list(
            &res(),
            None,
            &all,
            &none,
            Some(2),
            Some(&first.continue_token),
        )
        .unwrap_err();
    assert_eq!(err.code, 410);
}
