//! One storage for Events, two APIs: `events.k8s.io/v1` is a view of the
//! core `v1` Events, as in a real apiserver, so an Event a controller
//! records through kube-rs's `Recorder` (events.k8s.io) shows in
//! `kubectl get events` and `kubectl describe` (core).

use serde_json::{Map, Value};

/// events.k8s.io/v1 field ↔ core v1 field, where the names differ.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether a resource is the events.k8s.io view.
pub fn is_view(group: &str, plural: &str) -> bool {
    group == "events.k8s.io" && plural == "events"
}

fn rename(
    obj: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out: Map<String, Value> = m.clone();
    for (from, to) in pairs {
        if let Some(v) = out.remove(from) {
            out.insert(to.to_owned(), v);
        }
    }
    out.insert("apiVersion".into(), api_version.into());
    Value::Object(out)
}

/// An events.k8s.io/v1 Event as the core v1 Event it is stored as.
pub fn to_core(obj: &Value) -> Value {
    rename(obj, RENAMED.into_iter(), "v1")
}

/// A stored core v1 Event as events.k8s.io/v1 shows it.
pub fn from_core(obj: &Value) -> Value {
    rename(
        obj,
        RENAMED.into_iter().map(|(a, b)| (b, a)),
        "events.k8s.io/v1",
    )
}

/// An events.k8s.io field selector in terms of the stored core fields.
pub fn field_selector_to_core(s: &str) -> String {
    s.split(',')
        .map(|term| {
            let term = term.trim();
            RENAMED
                .iter()
                .find_map(|(view, core)| {
                    term.strip_prefix(view)
                        .filter(|rest| rest.starts_with(['.', '=', '!']))
                        .map(|rest| format!("{core}{rest}"))
                })
                .unwrap_or_else(|| term.to_owned())
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_maps_selectors() {
        let view = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "K0sWorkerConfig", "name": "w"}, "note": "no secret", "reason": "MissingSecret",
            "reportingController": "drover", "reportingInstance": "drover-0", "type": "Warning", "action": "Render"});
        let core = to_core(&view);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "w");
        assert_eq!(core["message"], "no secret");
        assert_eq!(core["reportingComponent"], "drover");
        assert_eq!(from_core(&core), view);
        assert_eq!(
            field_selector_to_core("regarding.name=w,reason=MissingSecret,note!=x"),
            "involvedObject.name=w,reason=MissingSecret,message!=x"
        );
    }
}
