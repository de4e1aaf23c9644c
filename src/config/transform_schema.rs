//! Decoding and checking a route's `transform:` block.
//!
//! Everything `check` can know is checked here, every problem at once: unknown operations,
//! malformed or empty paths, `allow` with `deny`, colliding renames, `set` on a denied path,
//! an impossible `max_body`, and a filtering transform that would fail open.

use http::Method;
use serde_json::Value;

use super::decode::{index, join, Decode, Entries, Fields, Spanned};
use super::diag::Problems;
use super::size::ByteSize;
use super::transform_model::*;
use super::yaml::Node;
use crate::transform::json::{JsonPath, JsonRules};

const TRANSFORM_FIELDS: &[&str] = &["response", "request"];
const RULE_FIELDS: &[&str] = &["allow", "deny", "rename", "set"];
const RESPONSE_ONLY: &[&str] = &[
    "target",
    "wrap",
    "statuses",
    "content_types",
    "max_body",
    "on_error",
    "allow_unfiltered",
    "other_content_types",
];
const REQUEST_ONLY: &[&str] = &["content_types", "max_body", "query", "method"];

pub fn decode_transform(node: &Node, path: &str, p: &mut Problems) -> Option<TransformConfig> {
    let f = Fields::new(node, path, TRANSFORM_FIELDS, p)?;
    // Both halves are decoded before either failure returns: `check` lists every problem.
    let response = f
        .node("response")
        .map(|n| decode_response(n, &f.path_of("response"), p));
    let request = f
        .node("request")
        .map(|n| decode_request(n, &f.path_of("request"), p));
    Some(TransformConfig {
        response: response.map_or(Some(None), |r| r.map(Some))?,
        request: request.map_or(Some(None), |r| r.map(Some))?,
    })
}

fn decode_response(node: &Node, path: &str, p: &mut Problems) -> Option<ResponseTransformConfig> {
    let allowed: Vec<&str> = RULE_FIELDS.iter().chain(RESPONSE_ONLY).copied().collect();
    let f = Fields::new(node, path, &allowed, p)?;
    let rules = decode_rules(&f, true, p);
    let statuses: Vec<Spanned<u16>> = f.or("statuses", Vec::new(), p);
    let mut ok = true;
    for (i, s) in statuses.iter().enumerate() {
        if !(200..=599).contains(&s.value) {
            p.add(
                s.pos,
                &index(&f.path_of("statuses"), i),
                format!(
                    "{} is not a status a body can be transformed for (200-599)",
                    s.value
                ),
            );
            ok = false;
        }
    }
    let content_types = decode_content_types(&f, p);
    let max_body = decode_max_body(&f, p);
    let on_error = f.choice(
        "on_error",
        &[("reject", OnError::Reject), ("pass", OnError::Pass)],
        OnError::Reject,
        p,
    );
    let other_content_types = f.choice(
        "other_content_types",
        &[("pass", OnError::Pass), ("reject", OnError::Reject)],
        OnError::Pass,
        p,
    );
    let allow_unfiltered: bool = f.or("allow_unfiltered", false, p);
    let rules = rules?;
    // A deny list that fails open leaks exactly what it was meant to hide.
    if on_error == Some(OnError::Pass) && rules.filters() && !allow_unfiltered {
        p.add(
            f.pos_of("on_error"),
            &f.path_of("on_error"),
            "`on_error: pass` with `allow`, `deny` or `target` would send the unfiltered body when the transform fails; use `reject`, or say `allow_unfiltered: true`",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let content_types = content_types?;
    Some(ResponseTransformConfig {
        rules,
        statuses: statuses.into_iter().map(|s| s.value).collect(),
        max_body: max_body?,
        on_error: on_error?,
        other_content_types: other_content_types?,
        accept: crate::transform::body::accept_value(&content_types)
            .and_then(|a| http::HeaderValue::try_from(a).ok()),
        content_types,
    })
}

fn decode_request(node: &Node, path: &str, p: &mut Problems) -> Option<RequestTransformConfig> {
    let allowed: Vec<&str> = RULE_FIELDS.iter().chain(REQUEST_ONLY).copied().collect();
    let f = Fields::new(node, path, &allowed, p)?;
    let has_rules = RULE_FIELDS.iter().any(|k| f.has(k));
    let rules = decode_rules(&f, false, p);
    let content_types = decode_content_types(&f, p);
    let max_body = decode_max_body(&f, p);
    let query = match f.node("query") {
        Some(n) => decode_query(n, &f.path_of("query"), p),
        None => Some(QueryRules::default()),
    };
    let method = match f.opt::<Spanned<String>>("method", p) {
        Some(m) => match Method::from_bytes(m.value.as_bytes()) {
            Ok(method) if m.value.bytes().all(|b| b.is_ascii_uppercase()) && !m.value.is_empty() => {
                if method == Method::CONNECT {
                    p.add(
                        m.pos,
                        &f.path_of("method"),
                        "an upstream request cannot become CONNECT",
                    );
                    None
                } else {
                    Some(Some(method))
                }
            }
            _ => {
                p.add(
                    m.pos,
                    &f.path_of("method"),
                    format!("`{}` is not a method name (upper case, e.g. POST)", m.value),
                );
                None
            }
        },
        None => Some(None),
    };
    Some(RequestTransformConfig {
        rules: if has_rules {
            Some(rules?)
        } else {
            rules.map(|_| None)?
        },
        content_types: content_types?,
        max_body: max_body?,
        query: query?,
        method: method?,
    })
}

/// Document rules on their own (`allow`, `deny`, `rename`, `set`, `target`, `wrap`): an
/// aggregation part's `transform`.
pub(super) fn decode_document_rules(node: &Node, path: &str, p: &mut Problems) -> Option<JsonRules> {
    let f = Fields::new(
        node,
        path,
        &["allow", "deny", "rename", "set", "target", "wrap"],
        p,
    )?;
    decode_rules(&f, true, p)
}

/// The document rules; `whole_document`: `target` and `wrap` are allowed (responses).
fn decode_rules(f: &Fields<'_>, whole_document: bool, p: &mut Problems) -> Option<JsonRules> {
    let mut ok = true;
    let mut path_list = |key: &str, p: &mut Problems| -> Vec<(Spanned<String>, JsonPath)> {
        let texts: Vec<Spanned<String>> = f.or(key, Vec::new(), p);
        let mut out = Vec::new();
        for (i, t) in texts.into_iter().enumerate() {
            match JsonPath::parse(&t.value) {
                Ok(parsed) => out.push((t, parsed)),
                Err(e) => {
                    p.add(t.pos, &index(&f.path_of(key), i), e);
                    ok = false;
                }
            }
        }
        out
    };
    let allow = path_list("allow", p);
    let deny = path_list("deny", p);
    if f.has("allow") && f.has("deny") {
        p.add(
            f.pos_of("deny"),
            &f.path_of("deny"),
            "use `allow` or `deny`, not both (an allow list already removes everything else)",
        );
        ok = false;
    }
    if f.has("allow") && allow.is_empty() && ok {
        p.add(
            f.pos_of("allow"),
            &f.path_of("allow"),
            "an empty `allow` list would remove everything",
        );
        ok = false;
    }
    let target = if whole_document {
        match f.opt::<Spanned<String>>("target", p) {
            Some(t) => match JsonPath::parse(&t.value) {
                Ok(parsed) if parsed.has_each() => {
                    p.add(
                        t.pos,
                        &f.path_of("target"),
                        "`target` names one value; it cannot contain `[]`",
                    );
                    ok = false;
                    None
                }
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    p.add(t.pos, &f.path_of("target"), e);
                    ok = false;
                    None
                }
            },
            None => None,
        }
    } else {
        None
    };
    let wrap: Option<Spanned<String>> = if whole_document { f.opt("wrap", p) } else { None };
    if let Some(w) = &wrap {
        if w.value.is_empty() {
            p.add(w.pos, &f.path_of("wrap"), "`wrap` needs a key name");
            ok = false;
        }
        if crate::transform::bounded::reserved_key(&w.value) {
            p.add(
                w.pos,
                &f.path_of("wrap"),
                "keys starting with `$serde_json::` are reserved",
            );
            ok = false;
        }
    }
    let rename = decode_renames(f, p);
    let set = decode_sets(f, p);
    // A value `set` writes under a denied path: the deny would be undone, or the set lost.
    for (path, _, pos) in set.iter().flatten() {
        if let Some((denied, _)) = deny.iter().find(|(_, d)| path.within(d) || d.within(path)) {
            p.add(
                *pos,
                &join(&f.path_of("set"), &path.to_string()),
                format!("`set` writes under `{}`, which `deny` removes", denied.value),
            );
            ok = false;
        }
    }
    let (rename, set) = (rename?, set?);
    ok.then(|| {
        let rules = JsonRules {
            target,
            allow: allow.into_iter().map(|(_, p)| p).collect(),
            deny: deny.into_iter().map(|(_, p)| p).collect(),
            rename,
            set: set.into_iter().map(|(path, v, _)| (path, v)).collect(),
            wrap: wrap.map(|w| w.value),
            allow_tree: Default::default(),
            need: Default::default(),
        };
        // Built at load, not on the first request.
        rules.need();
        rules
    })
}

fn decode_renames(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<(JsonPath, JsonPath)>> {
    let entries: Entries<Spanned<String>> = f.or("rename", Entries::default(), p);
    let base = f.path_of("rename");
    let mut out: Vec<(JsonPath, JsonPath)> = Vec::new();
    let mut ok = true;
    for (from, to) in &entries.0 {
        let path = join(&base, &from.value);
        let parsed = (JsonPath::parse(&from.value), JsonPath::parse(&to.value));
        let (from_path, to_path) = match parsed {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                for (e, pos) in [(a.err(), from.pos), (b.err(), to.pos)] {
                    if let Some(e) = e {
                        p.add(pos, &path, e);
                    }
                }
                ok = false;
                continue;
            }
        };
        if !same_array_scope(&from_path, &to_path) {
            p.add(
                to.pos,
                &path,
                "a rename stays within the array elements it starts in (write `items[].a: items[].b`)",
            );
            ok = false;
            continue;
        }
        if let Some((earlier, _)) = out.iter().find(|(_, t)| *t == to_path) {
            p.add(
                to.pos,
                &path,
                format!("`{to_path}` is already the new name of `{earlier}`"),
            );
            ok = false;
            continue;
        }
        if out.iter().any(|(f, _)| *f == to_path) || entries.0.iter().any(|(f, _)| f.value == to.value) {
            p.add(
                to.pos,
                &path,
                format!("`{to_path}` is renamed itself; renames would depend on their order"),
            );
            ok = false;
            continue;
        }
        out.push((from_path, to_path));
    }
    ok.then_some(out)
}

/// Whether both paths pass the same `[]` steps: a rename cannot move a value between array
/// elements and the document around them.
fn same_array_scope(from: &JsonPath, to: &JsonPath) -> bool {
    let scope = |p: &JsonPath| -> usize {
        p.steps()
            .iter()
            .rposition(|s| *s == crate::transform::json::Step::Each)
            .map_or(0, |i| i + 1)
    };
    let (a, b) = (scope(from), scope(to));
    a == b && from.steps()[..a] == to.steps()[..b]
}

type SetEntry = (JsonPath, Value, super::yaml::Pos);

fn decode_sets(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<SetEntry>> {
    let Some(node) = f.node("set") else {
        return Some(Vec::new());
    };
    let base = f.path_of("set");
    let Node::Map { entries, .. } = node else {
        p.add(
            node.pos(),
            &base,
            format!("expected a mapping of path: value, found {}", node.kind()),
        );
        return None;
    };
    let mut out: Vec<SetEntry> = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(key) = String::decode(k, &base, p) else {
            ok = false;
            continue;
        };
        let path = join(&base, &key);
        match JsonPath::parse(&key) {
            Ok(parsed) if out.iter().any(|(q, _, _)| *q == parsed) => {
                p.add(k.pos(), &path, format!("`{key}` is set twice"));
                ok = false;
            }
            Ok(parsed) => match json_literal(v, &path, p) {
                Some(value) => out.push((parsed, value, k.pos())),
                None => ok = false,
            },
            Err(e) => {
                p.add(k.pos(), &path, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A YAML value as the JSON literal it stands for: unquoted `true`/`false` and numbers are
/// typed, `null` is null, quoted text is always a string.
pub(super) fn json_literal(node: &Node, path: &str, p: &mut Problems) -> Option<Value> {
    match node {
        Node::Null { .. } => Some(Value::Null),
        Node::Scalar {
            value, plain: false, ..
        } => Some(Value::String(value.clone())),
        Node::Scalar { value, .. } => Some(match value.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            text => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(n) => Value::Number(n),
                Err(_) => Value::String(text.to_string()),
            },
        }),
        Node::Seq { items, .. } => {
            let values: Vec<Option<Value>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| json_literal(item, &index(path, i), p))
                .collect();
            Some(Value::Array(values.into_iter().collect::<Option<_>>()?))
        }
        Node::Map { entries, .. } => {
            let mut map = serde_json::Map::new();
            let mut ok = true;
            for (k, v) in entries {
                let key = String::decode(k, path, p)?;
                if map.contains_key(&key) {
                    p.add(k.pos(), &join(path, &key), format!("`{key}` is given twice"));
                    ok = false;
                }
                match json_literal(v, &join(path, &key), p) {
                    Some(value) => {
                        map.insert(key, value);
                    }
                    None => ok = false,
                }
            }
            ok.then_some(Value::Object(map))
        }
    }
}

fn decode_content_types(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<MediaPattern>> {
    if !f.has("content_types") {
        return Some(default_content_types());
    }
    let texts: Vec<Spanned<String>> = f.or("content_types", Vec::new(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (i, t) in texts.iter().enumerate() {
        match media_pattern(&t.value) {
            Some(m) => out.push(m),
            None => {
                p.add(
                    t.pos,
                    &index(&f.path_of("content_types"), i),
                    format!(
                        "`{}` is not a media type (`application/json`) or a suffix pattern (`application/*+json`)",
                        t.value
                    ),
                );
                ok = false;
            }
        }
    }
    if texts.is_empty() && ok {
        p.add(
            f.pos_of("content_types"),
            &f.path_of("content_types"),
            "list at least one media type",
        );
        ok = false;
    }
    ok.then_some(out)
}

fn media_pattern(text: &str) -> Option<MediaPattern> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let lower = text.to_ascii_lowercase();
    let (top, sub) = lower.split_once('/')?;
    if !token(top) {
        return None;
    }
    if let Some(suffix) = sub.strip_prefix("*+") {
        return token(suffix).then(|| MediaPattern::Suffix {
            top: top.to_string(),
            suffix: suffix.to_string(),
        });
    }
    token(sub).then(|| MediaPattern::Exact(lower.clone()))
}

pub(super) fn decode_max_body(f: &Fields<'_>, p: &mut Problems) -> Option<usize> {
    let Some(size) = f.opt::<Spanned<ByteSize>>("max_body", p) else {
        return (!f.has("max_body")).then_some(DEFAULT_MAX_BODY);
    };
    if size.value.0 == 0 || size.value.0 > MAX_MAX_BODY {
        p.add(
            size.pos,
            &f.path_of("max_body"),
            format!(
                "must be from 1 byte to {} MiB (a transformed body is held in memory)",
                MAX_MAX_BODY / (1024 * 1024)
            ),
        );
        return None;
    }
    Some(size.value.0)
}

fn decode_query(node: &Node, path: &str, p: &mut Problems) -> Option<QueryRules> {
    let f = Fields::new(node, path, &["set", "remove", "rename"], p)?;
    let param = |s: &Spanned<String>, path: &str, p: &mut Problems| -> bool {
        let ok = !s.value.is_empty()
            && !s
                .value
                .bytes()
                .any(|b| b.is_ascii_control() || b"&=#".contains(&b));
        if !ok {
            p.add(
                s.pos,
                path,
                format!(
                    "`{}` is not a query parameter name (no `&`, `=`, `#` or control characters)",
                    s.value
                ),
            );
        }
        ok
    };
    let set: Entries<Spanned<String>> = f.or("set", Entries::default(), p);
    let remove: Vec<Spanned<String>> = f.or("remove", Vec::new(), p);
    let rename: Entries<Spanned<String>> = f.or("rename", Entries::default(), p);
    let mut ok = true;
    for (k, v) in &set.0 {
        let path = join(&f.path_of("set"), &k.value);
        ok &= param(k, &path, p);
        if v.value.bytes().any(|b| b.is_ascii_control() || b == b'#') {
            p.add(
                v.pos,
                &path,
                "a query value may not hold `#` or control characters",
            );
            ok = false;
        }
    }
    for (i, r) in remove.iter().enumerate() {
        ok &= param(r, &index(&f.path_of("remove"), i), p);
    }
    for (k, v) in &rename.0 {
        let path = join(&f.path_of("rename"), &k.value);
        ok &= param(k, &path, p) & param(v, &path, p);
    }
    ok.then(|| QueryRules {
        set: set.0.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
        remove: remove.into_iter().map(|r| r.value).collect(),
        rename: rename.0.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
    })
}
