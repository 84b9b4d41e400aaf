//! Label and field selectors, parsed from the query string as an API server
//! parses them (`labelSelector=app=x,tier notin (a,b),!legacy`).

use super::error::ApiError;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    /// `key` (exists).
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
    /// `key=v`, `key==v`, `key in (v1,v2)`.
    In(String, Vec<String>),
    /// `key!=v`, `key notin (v1,v2)`: also true when the key is absent.
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Whether an object's `metadata.labels` (as stored, JSON) satisfy every
    /// requirement. Reads the stored map directly: lists run this per object.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
        let get = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(&v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(&v)),
        })
    }

    /// True for the empty selector.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0_i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(part: &str) -> Result<Requirement, ApiError> {
    let bad =
        |why: &str| ApiError::bad_request(format!("unable to parse requirement: {part:?}: {why}"));
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key).map_err(|w| bad(&w))?;
        return Ok(Requirement::DoesNotExist(key.to_owned()));
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k).map_err(|w| bad(&w))?;
            check_value(v).map_err(|w| bad(&w))?;
            let vs = vec![v.to_owned()];
            return Ok(if negate {
                Requirement::NotIn(k.to_owned(), vs)
            } else {
                Requirement::In(k.to_owned(), vs)
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        let (negate, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(bad("expected in or notin"));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| bad("expected a parenthesised value list"))?;
        check_key(key).map_err(|w| bad(&w))?;
        let vs: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        for v in &vs {
            check_value(v).map_err(|w| bad(&w))?;
        }
        return Ok(if negate {
            Requirement::NotIn(key.to_owned(), vs)
        } else {
            Requirement::In(key.to_owned(), vs)
        });
    }
    check_key(part).map_err(|w| bad(&w))?;
    Ok(Requirement::Exists(part.to_owned()))
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn check_key(k: &str) -> Result<(), String> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            if !drover_shared::manifests::is_dns_subdomain(prefix) {
                return Err(format!("prefix {prefix:?} is not a DNS subdomain"));
            }
            name
        }
        None => k,
    };
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || (v.len() <= 63 && is_label_name(v)) {
        Ok(())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A parsed field selector. Supported fields are `metadata.name` and
/// `metadata.namespace` (any kind) and `spec.nodeName` (Pods), as a real API
/// server supports for these kinds; others are rejected with 400.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; `extra` names fields
    /// supported beyond `metadata.name` and `metadata.namespace`.
    pub fn parse(s: &str, extra: &[&str]) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {part:?}; can't understand it"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") && !extra.contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_owned(), negate, value.trim().to_owned()));
        }
        Ok(Self { terms })
    }

    /// Whether the object (as JSON) matches.
    pub fn matches(&self, object: &serde_json::Value) -> bool {
        self.terms.iter().all(|(field, negate, want)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let got = object
                .pointer(&pointer)
                .and_then(|v| v.as_str())
                .unwrap_or("");
            (got == want) != *negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("cluster.x-k8s.io/cluster-name", "c1"),
        ]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app!=web"));
        assert!(m("missing!=x"), "!= matches objects without the key");
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front,back)"));
        assert!(m("missing notin (a)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("cluster.x-k8s.io/cluster-name=c1,app in (web),!legacy"));
        assert!(!m("cluster.x-k8s.io/cluster-name=c2"));
        assert!(!LabelSelector::parse("app").unwrap().matches(None));
        assert!(LabelSelector::parse("!app").unwrap().matches(None));
    }

    #[test]
    fn bad_selectors_are_400() {
        for s in ["a in b", "a in (b", "-bad=x", "a=b c", "a iz (b)"] {
            let e = LabelSelector::parse(s).unwrap_err();
            assert_eq!(e.code, 400, "{s}");
        }
    }

    #[test]
    fn field_selectors() {
        let obj = serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        assert!(
            FieldSelector::parse("metadata.name=a", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.name!=b,metadata.namespace==ns", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace=other", &[])
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=n1", &["spec.nodeName"])
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n1", &[])
                .unwrap_err()
                .code,
            400
        );
    }
}
