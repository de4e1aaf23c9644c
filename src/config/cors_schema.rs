//! Decoding `cors:` — named policies at the top level, and a route's `cors:` (a policy's
//! name, or a policy written in place).

use std::time::Duration;

use http::{HeaderName, Method};

use super::decode::{index, named_items, Fields, Spanned};
use super::diag::Problems;
use super::model::CorsConfig;
use super::values::header_name;
use super::yaml::Node;
use crate::cors::OriginPattern;

const FIELDS: &[&str] = &[
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
];

/// Browsers cap how long they keep a preflight (Chrome: 2 h); longer only hides a change.
const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The top-level `cors:` section: named policies.
pub(super) fn decode_cors_policies(node: &Node, p: &mut Problems) -> Vec<(String, CorsConfig)> {
    named_items(node, "cors", "CORS policy", FIELDS, p, |name, value, path, p| {
        decode_cors(value, path, p).map(|c| (name.value, c))
    })
    .0
}

/// A route's `cors`: a name from `policies`, or a policy written in place.
pub(super) fn decode_route_cors(
    f: &Fields<'_>,
    policies: &[(String, CorsConfig)],
    p: &mut Problems,
) -> Option<Option<CorsConfig>> {
    match f.node("cors") {
        None | Some(Node::Null { .. }) => Some(None),
        Some(Node::Scalar { value, pos, .. }) => match policies.iter().find(|(n, _)| n == value) {
            Some((_, c)) => Some(Some(c.clone())),
            None => {
                p.add(
                    *pos,
                    &f.path_of("cors"),
                    format!("no CORS policy named `{value}` under the top-level `cors:`"),
                );
                None
            }
        },
        Some(node) => decode_cors(node, &f.path_of("cors"), p).map(Some),
    }
}

fn decode_cors(node: &Node, path: &str, p: &mut Problems) -> Option<CorsConfig> {
    let f = Fields::new(node, path, FIELDS, p)?;
    let origins: Option<Vec<Spanned<String>>> = f.req("allow_origins", p);
    let mut ok = true;
    let mut allow_origins = Vec::new();
    for (i, o) in origins.iter().flatten().enumerate() {
        match OriginPattern::parse(&o.value) {
            Ok(pattern) => allow_origins.push(pattern),
            Err(e) => {
                p.add(o.pos, &index(&f.path_of("allow_origins"), i), e);
                ok = false;
            }
        }
    }
    if origins.as_ref().is_some_and(Vec::is_empty) {
        p.add(
            f.pos_of("allow_origins"),
            &f.path_of("allow_origins"),
            "list at least one origin",
        );
        ok = false;
    }
    let methods: Vec<Spanned<String>> = f.or("allow_methods", Vec::new(), p);
    let mut allow_methods = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        match Method::from_bytes(m.value.as_bytes()) {
            Ok(method) if m.value.bytes().all(|b| b.is_ascii_uppercase()) => allow_methods.push(method),
            _ => {
                p.add(
                    m.pos,
                    &index(&f.path_of("allow_methods"), i),
                    format!(
                        "`{}` is not a method name (upper case, such as GET or POST)",
                        m.value
                    ),
                );
                ok = false;
            }
        }
    }
    if allow_methods.is_empty() {
        allow_methods = vec![Method::GET, Method::HEAD, Method::POST];
    }
    let names = |key: &str, any: bool, p: &mut Problems| -> Option<Vec<String>> {
        let items: Vec<Spanned<String>> = f.or(key, Vec::new(), p);
        let mut out = Vec::new();
        let mut ok = true;
        for (i, h) in items.iter().enumerate() {
            if any && h.value == "*" {
                out.push("*".to_string());
                continue;
            }
            match header_name(h, &index(&f.path_of(key), i), p) {
                Some(n) => out.push(n.as_str().to_string()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    };
    let allow_headers = names("allow_headers", true, p);
    let expose_headers = names("expose_headers", false, p).map(|v| {
        v.iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect::<Vec<_>>()
    });
    let allow_credentials: bool = f.or("allow_credentials", false, p);
    if allow_credentials && allow_origins.contains(&OriginPattern::Any) {
        p.add(
            f.pos_of("allow_origins"),
            &f.path_of("allow_origins"),
            "`*` with allow_credentials: true would hand every site the user's credentials; \
             list the origins",
        );
        ok = false;
    }
    let max_age: Option<Duration> = f.opt("max_age", p);
    if max_age.is_some_and(|d| d > MAX_AGE_LIMIT) {
        p.add(f.pos_of("max_age"), &f.path_of("max_age"), "must be at most 24h");
        ok = false;
    }
    let config = CorsConfig {
        allow_origins,
        allow_methods,
        allow_headers: allow_headers?,
        expose_headers: expose_headers?,
        allow_credentials,
        max_age,
    };
    ok.then_some(config)
}
