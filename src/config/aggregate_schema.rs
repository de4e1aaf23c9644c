//! Decoding and checking a route's `aggregate:` block.
//!
//! Everything `check` can prove is reported here, every problem at once: unknown template
//! variables, `{PART.FIELD}` without `after`, cycles in `after`, duplicate part names, parts
//! that would always collide, a body part without `allow_methods` (or the reverse), and
//! `on_error` values the merge could not place. Upstream names are checked with the other
//! references (`validate`).

use std::collections::HashMap;

use http::{HeaderName, Method};

use super::aggregate_model::*;
use super::decode::{check_name, index, join, Entries, Fields, Spanned};
use super::diag::Problems;
use super::transform_model::{DEFAULT_MAX_BODY, MAX_MAX_BODY};
use super::transform_schema::{decode_document_rules, decode_max_body, json_literal};
use super::values::{header_name, positive_duration, FRAMING_HEADERS};
use super::yaml::Node;
use crate::aggregate::merge::{Arrays, Mode, OnConflict, Placement};
use crate::aggregate::template::{Template, ValueTemplate, Var};

const AGGREGATE_FIELDS: &[&str] = &[
    "timeout",
    "merge",
    "on_conflict",
    "arrays",
    "errors",
    "allow_methods",
    "max_body",
    "parts",
];
const PART_FIELDS: &[&str] = &[
    "name",
    "upstream",
    "path",
    "required",
    "timeout",
    "on_error",
    "into",
    "after",
    "request_headers",
    "expose_headers",
    "forward_headers",
    "forward_query",
    "body",
    "transform",
    "max_body",
];

/// Response headers the gateway writes itself on an aggregated answer: a part cannot expose
/// them (its length or type is not the answer's).
const OWN_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-range",
    "content-encoding",
    "x-aggregate-complete",
    "x-request-id",
    "cache-control",
];

/// Request headers the gateway sets on every part request: a part's `set` (whose value may
/// come from the client) cannot forge them.
const GATEWAY_REQUEST_HEADERS: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "x-request-id",
];

/// `has_auth`: the route authenticates, so `{consumer}` and `{claim.…}` have values.
pub(super) fn decode_aggregate(
    node: &Node,
    path: &str,
    has_auth: bool,
    p: &mut Problems,
) -> Option<AggregateConfig> {
    let f = Fields::new(node, path, AGGREGATE_FIELDS, p)?;
    let timeout = positive_duration(&f, "timeout", p);
    let mut ok = timeout.is_some();
    let timeout = timeout.flatten();
    let merge = f.choice(
        "merge",
        &[("shallow", Mode::Shallow), ("deep", Mode::Deep)],
        Mode::Shallow,
        p,
    );
    let on_conflict = f.choice(
        "on_conflict",
        &[
            ("error", OnConflict::Error),
            ("first", OnConflict::First),
            ("last", OnConflict::Last),
        ],
        OnConflict::Error,
        p,
    );
    let arrays = f.choice(
        "arrays",
        &[("replace", Arrays::Replace), ("concat", Arrays::Concat)],
        Arrays::Replace,
        p,
    );
    if merge == Some(Mode::Shallow) && arrays == Some(Arrays::Concat) {
        p.add(
            f.pos_of("arrays"),
            &f.path_of("arrays"),
            "`arrays: concat` applies to `merge: deep` (a shallow merge never looks inside values)",
        );
        ok = false;
    }
    let errors_body = f.choice("errors", &[("body", true), ("none", false)], true, p);
    let allow_methods = decode_methods(&f, p);
    let max_request_body = decode_max_body(&f, p);
    let parts = match f.node("parts") {
        Some(Node::Seq { items, .. }) if !items.is_empty() && items.len() <= MAX_PARTS => {
            // Parts with problems still take part in the checks across parts (names, order,
            // placement), so `check` lists everything at once; `ok` keeps them from use.
            let mut parts = Vec::new();
            for (i, n) in items.iter().enumerate() {
                match decode_part(n, &index(&f.path_of("parts"), i), has_auth, p) {
                    Some((part, sound)) => {
                        ok &= sound;
                        parts.push(part);
                    }
                    None => ok = false,
                }
            }
            Some(parts)
        }
        Some(n) => {
            p.add(
                n.pos(),
                &f.path_of("parts"),
                format!("expected a list of 1 to {MAX_PARTS} parts"),
            );
            None
        }
        None => {
            p.add(f.pos(), &f.path_of("parts"), "missing required field `parts`");
            None
        }
    };
    let (merge, on_conflict, arrays, errors_body, allow_methods, max_request_body, parts) = (
        merge?,
        on_conflict?,
        arrays?,
        errors_body?,
        allow_methods?,
        max_request_body?,
        parts?,
    );
    let parts_path = f.path_of("parts");
    let held: usize = parts.iter().map(|part| part.max_body).sum();
    if held > MAX_MAX_BODY {
        p.add(
            f.pos_of("parts"),
            &parts_path,
            format!(
                "the parts' `max_body` add up to {} MiB; an aggregated answer holds every part at once, at most {} MiB",
                held / (1024 * 1024),
                MAX_MAX_BODY / (1024 * 1024)
            ),
        );
        ok = false;
    }
    ok &= check_names_and_order(&parts, &parts_path, p);
    ok &= check_body_part(&parts, &allow_methods, &f, p);
    ok &= check_placements(&parts, merge, on_conflict, errors_body, &parts_path, p);
    ok.then_some(AggregateConfig {
        timeout,
        merge,
        on_conflict,
        arrays,
        errors_body,
        allow_methods,
        max_request_body,
        parts,
    })
}

fn decode_methods(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<Method>> {
    let names: Vec<Spanned<String>> = f.or("allow_methods", Vec::new(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (i, m) in names.iter().enumerate() {
        let at = index(&f.path_of("allow_methods"), i);
        match m.value.as_str() {
            "POST" | "PUT" | "PATCH" | "DELETE" => out.push(Method::from_bytes(m.value.as_bytes()).ok()?),
            "GET" | "HEAD" => {
                p.add(
                    m.pos,
                    &at,
                    "GET and HEAD are always allowed; list the other methods",
                );
                ok = false;
            }
            other => {
                p.add(
                    m.pos,
                    &at,
                    format!("`{other}` cannot be aggregated; expected POST, PUT, PATCH or DELETE"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A part, and whether it decoded without problems (`None`: not even its name, upstream and
/// path text are usable).
fn decode_part(node: &Node, path: &str, has_auth: bool, p: &mut Problems) -> Option<(PartConfig, bool)> {
    let f = Fields::new(node, path, PART_FIELDS, p)?;
    let name: Option<Spanned<String>> = f.req("name", p);
    if let Some(n) = &name {
        check_name(n, &f.path_of("name"), p);
    }
    let upstream: Option<Spanned<String>> = f.req("upstream", p);
    // `after: user` or `after: [user, orders]`.
    let after: Vec<Spanned<String>> = match f.node("after") {
        Some(Node::Scalar { .. }) => f.opt::<Spanned<String>>("after", p).into_iter().collect(),
        _ => f.or("after", Vec::new(), p),
    };
    let after_names: Vec<&str> = after.iter().map(|a| a.value.as_str()).collect();
    let mut ok = true;
    let template_path: Option<Spanned<String>> = f.req("path", p);
    let template = template_path.map(|t| match Template::parse(&t.value, &after_names) {
        Ok(parsed) => {
            ok &= identity_vars(parsed.vars(), has_auth, t.pos, &f.path_of("path"), p);
            // Characters a request target cannot hold would fail every request.
            let sample = parsed.render(|_| Some(std::borrow::Cow::Borrowed("x")));
            if !sample.is_ok_and(|s| http::Uri::try_from(s).is_ok()) {
                p.add(
                    t.pos,
                    &f.path_of("path"),
                    format!(
                        "`{}` is not a valid request target (percent-encode what it holds)",
                        t.value
                    ),
                );
                ok = false;
            }
            parsed
        }
        Err(e) => {
            p.add(t.pos, &f.path_of("path"), e);
            ok = false;
            Template::default()
        }
    });
    let timeout = positive_duration(&f, "timeout", p);
    ok &= timeout.is_some();
    let timeout = timeout.flatten();
    let required: bool = f.or("required", false, p);
    let on_error = decode_on_error(&f, p);
    if required && f.has("on_error") {
        p.add(
            f.pos_of("on_error"),
            &f.path_of("on_error"),
            "a required part's failure fails the whole answer, so `on_error` never applies",
        );
        ok = false;
    }
    let placement = match f.opt::<Spanned<String>>("into", p) {
        Some(into) if into.value == "root" => Some(Placement::Root),
        Some(into) if into.value.is_empty() => {
            p.add(into.pos, &f.path_of("into"), "`into` needs `root` or a key name");
            None
        }
        Some(into) => Some(Placement::Key(into.value)),
        None => name.as_ref().map(|n| Placement::Key(n.value.clone())),
    };
    let headers = decode_part_headers(&f, &after_names, has_auth, p);
    let expose_headers = header_list(&f, "expose_headers", OWN_RESPONSE_HEADERS, p);
    // `Expect` would make the part wait for a `100 Continue` the gateway never needs.
    let forward_headers = header_list(&f, "forward_headers", &["host", "expect"], p);
    let rules = f
        .node("transform")
        .map(|n| decode_document_rules(n, &f.path_of("transform"), p));
    let max_body = decode_max_body(&f, p);
    ok &= headers.is_some()
        && expose_headers.is_some()
        && forward_headers.is_some()
        && !matches!(rules, Some(None))
        && max_body.is_some()
        && on_error.is_some()
        && placement.is_some();
    let (set_headers, remove_headers) = headers.unwrap_or_default();
    let name = name?;
    let part = PartConfig {
        placement: placement.unwrap_or_else(|| Placement::Key(name.value.clone())),
        name,
        upstream: upstream?,
        path: template?,
        required,
        timeout,
        on_error: on_error.unwrap_or(PartOnError::Omit),
        after,
        set_headers,
        remove_headers,
        expose_headers: expose_headers.unwrap_or_default(),
        forward_headers: forward_headers.unwrap_or_default(),
        forward_query: f.or("forward_query", false, p),
        body: f.or("body", false, p),
        rules: rules.flatten(),
        max_body: max_body.unwrap_or(DEFAULT_MAX_BODY),
    };
    Some((part, ok))
}

/// `{consumer}` and `{claim.…}` need an authenticated request.
fn identity_vars<'a>(
    vars: impl Iterator<Item = &'a Var>,
    has_auth: bool,
    pos: super::yaml::Pos,
    path: &str,
    p: &mut Problems,
) -> bool {
    for var in vars {
        if let Var::Header(h) = var {
            if ["authorization", "proxy-authorization", "cookie"].contains(&h.as_str()) {
                p.add(
                    pos,
                    path,
                    format!("{var}: a template cannot read credentials (identity headers and credential headers read as missing too)"),
                );
                return false;
            }
        }
        if !has_auth && matches!(var, Var::Consumer | Var::Claim(_)) {
            p.add(
                pos,
                path,
                format!("{var} needs an authenticated consumer, but the route has no `auth`"),
            );
            return false;
        }
    }
    true
}

fn decode_on_error(f: &Fields<'_>, p: &mut Problems) -> Option<PartOnError> {
    let at = f.path_of("on_error");
    match f.node("on_error") {
        None => Some(PartOnError::Omit),
        Some(Node::Null { .. }) => Some(PartOnError::Null),
        Some(Node::Scalar { value, .. }) if value == "omit" => Some(PartOnError::Omit),
        Some(Node::Scalar { value, .. }) if value == "null" => Some(PartOnError::Null),
        Some(n @ Node::Map { .. }) => {
            let g = Fields::new(n, &at, &["static"], p)?;
            match g.node("static") {
                Some(v) => json_literal(v, &g.path_of("static"), p).map(PartOnError::Static),
                None => {
                    p.add(g.pos(), &at, "expected `omit`, `null` or `{ static: VALUE }`");
                    None
                }
            }
        }
        Some(n) => {
            p.add(n.pos(), &at, "expected `omit`, `null` or `{ static: VALUE }`");
            None
        }
    }
}

type PartHeaders = (Vec<(HeaderName, ValueTemplate)>, Vec<HeaderName>);

/// `request_headers: { set: {NAME: TEMPLATE}, remove: [NAME] }`.
fn decode_part_headers(
    f: &Fields<'_>,
    after: &[&str],
    has_auth: bool,
    p: &mut Problems,
) -> Option<PartHeaders> {
    let Some(node) = f.node("request_headers") else {
        return Some((Vec::new(), Vec::new()));
    };
    let path = f.path_of("request_headers");
    let g = Fields::new(node, &path, &["set", "remove"], p)?;
    let set: Entries<Spanned<String>> = g.or("set", Entries::default(), p);
    let mut ok = true;
    let mut out = Vec::new();
    for (name, value) in &set.0 {
        let at = join(&g.path_of("set"), &name.value);
        let header = header_name(name, &at, p);
        match (header, ValueTemplate::parse(&value.value, after)) {
            (Some(h), _)
                if FRAMING_HEADERS.contains(&h.as_str()) || GATEWAY_REQUEST_HEADERS.contains(&h.as_str()) =>
            {
                p.add(
                    name.pos,
                    &at,
                    format!("`{h}` is the gateway's to set on a part request"),
                );
                ok = false;
            }
            (Some(h), Ok(t)) => {
                ok &= identity_vars(t.vars(), has_auth, value.pos, &at, p);
                out.push((h, t));
            }
            (_, Err(e)) => {
                p.add(value.pos, &at, e);
                ok = false;
            }
            (None, _) => ok = false,
        }
    }
    let remove = header_list(&g, "remove", &["host"], p);
    (ok).then_some((out, remove?))
}

/// A list of header names, none of them framing ones or `refused`.
fn header_list(f: &Fields<'_>, key: &str, refused: &[&str], p: &mut Problems) -> Option<Vec<HeaderName>> {
    let names: Vec<Spanned<String>> = f.or(key, Vec::new(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let at = index(&f.path_of(key), i);
        match header_name(n, &at, p) {
            Some(h) if FRAMING_HEADERS.contains(&h.as_str()) || refused.contains(&h.as_str()) => {
                p.add(
                    n.pos,
                    &at,
                    format!("`{h}` cannot be listed here: the gateway sets it"),
                );
                ok = false;
            }
            Some(h) => out.push(h),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Unique names; `after` names other parts; no cycles.
fn check_names_and_order(parts: &[PartConfig], path: &str, p: &mut Problems) -> bool {
    let mut ok = true;
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        if let Some(first) = index_of.insert(&part.name.value, i) {
            p.add(
                part.name.pos,
                &format!("{}.name", index(path, i)),
                format!(
                    "duplicate part name `{}` (first at line {})",
                    part.name.value, parts[first].name.pos.line
                ),
            );
            ok = false;
        }
    }
    for (i, part) in parts.iter().enumerate() {
        for (k, dep) in part.after.iter().enumerate() {
            let at = index(&format!("{}.after", index(path, i)), k);
            if dep.value == part.name.value {
                p.add(dep.pos, &at, "a part cannot run after itself");
                ok = false;
            } else if !index_of.contains_key(dep.value.as_str()) {
                p.add(dep.pos, &at, format!("no part is named `{}`", dep.value));
                ok = false;
            }
        }
    }
    if let Some(cycle) = find_cycle(parts, &index_of) {
        let first = &parts[cycle[0]];
        let names: Vec<&str> = cycle.iter().map(|&i| parts[i].name.value.as_str()).collect();
        p.add(
            first.name.pos,
            &format!("{}.after", index(path, cycle[0])),
            format!("`after` forms a cycle: {} → {}", names.join(" → "), names[0]),
        );
        ok = false;
    }
    ok
}

/// The parts of one cycle in `after`, if any (depth-first search).
fn find_cycle(parts: &[PartConfig], index_of: &HashMap<&str, usize>) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        parts: &[PartConfig],
        index_of: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for dep in &parts[i].after {
            let Some(&j) = index_of.get(dep.value.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Open => {
                    let from = stack.iter().position(|&s| s == j).unwrap_or(0);
                    return Some(stack[from..].to_vec());
                }
                Mark::New => {
                    if let Some(cycle) = visit(j, parts, index_of, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; parts.len()];
    for i in 0..parts.len() {
        if marks[i] == Mark::New {
            if let Some(cycle) = visit(i, parts, index_of, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// `allow_methods` and exactly one `body: true` part go together.
fn check_body_part(parts: &[PartConfig], methods: &[Method], f: &Fields<'_>, p: &mut Problems) -> bool {
    let body_parts: Vec<&PartConfig> = parts.iter().filter(|part| part.body).collect();
    match (methods.is_empty(), body_parts.as_slice()) {
        (true, []) => true,
        // A write that failed must not come back as a 200 built from the other parts.
        (false, [part]) if !part.required => {
            p.add(
                part.name.pos,
                &f.path_of("parts"),
                format!(
                    "part `{}` receives the request body: it must be `required: true`",
                    part.name.value
                ),
            );
            false
        }
        (false, [_]) => true,
        (true, [part, ..]) => {
            p.add(
                part.name.pos,
                &f.path_of("parts"),
                format!(
                    "part `{}` receives the request body, but GET and HEAD have none; list the methods in `allow_methods`",
                    part.name.value
                ),
            );
            false
        }
        (false, []) => {
            p.add(
                f.pos_of("allow_methods"),
                &f.path_of("allow_methods"),
                "with `allow_methods`, exactly one part says `body: true` (the body is sent to one service, never fanned out)",
            );
            false
        }
        (false, [_, second, ..]) => {
            p.add(
                second.name.pos,
                &f.path_of("parts"),
                "only one part may receive the request body: a non-idempotent request fanned out to several services has no rollback",
            );
            false
        }
    }
}

/// Collisions provable from the configuration alone, and `on_error` values the merge could
/// not place.
fn check_placements(
    parts: &[PartConfig],
    merge: Mode,
    on_conflict: OnConflict,
    errors_body: bool,
    path: &str,
    p: &mut Problems,
) -> bool {
    let mut ok = true;
    let mut keys: HashMap<&str, &PartConfig> = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        let at = index(path, i);
        match &part.placement {
            Placement::Key(key) => {
                if errors_body && key == "errors" {
                    p.add(
                        part.name.pos,
                        &at,
                        "the key `errors` names failed parts (`errors: body`); nest this part under another key with `into`",
                    );
                    ok = false;
                }
                if let Some(first) = keys.insert(key, part) {
                    if merge == Mode::Shallow && on_conflict == OnConflict::Error {
                        p.add(
                            part.name.pos,
                            &at,
                            format!(
                                "parts `{}` and `{}` are both nested under `{key}`: with `merge: shallow` and `on_conflict: error` every answer where both succeed would be a 502",
                                first.name.value, part.name.value
                            ),
                        );
                        ok = false;
                    }
                }
            }
            Placement::Root => match &part.on_error {
                PartOnError::Null => {
                    p.add(
                        part.name.pos,
                        &format!("{at}.on_error"),
                        "a part merged into the root has no key to hold `null`; use `omit` or a `static` object",
                    );
                    ok = false;
                }
                PartOnError::Static(v) if !v.is_object() => {
                    p.add(
                        part.name.pos,
                        &format!("{at}.on_error"),
                        "a part merged into the root needs a `static` object",
                    );
                    ok = false;
                }
                _ => {}
            },
        }
    }
    ok
}
