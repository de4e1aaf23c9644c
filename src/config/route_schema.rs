//! Decoding one entry of `routes:`: its `match`, paths, header rules, `pass_headers`, and the
//! fields whose decoding lives elsewhere (`auth`/`require` in `auth_schema.rs`, `versions` in
//! `versions_schema.rs`).

use http::{HeaderName, HeaderValue};

use super::aggregate_schema::decode_aggregate;
use super::auth_schema::decode_route_auth;
use super::decode::{check_name, index, Entries, Fields, Spanned};
use super::diag::Problems;
use super::model::*;
use super::transform_model::TransformConfig;
use super::transform_schema::decode_transform;
use super::values::{
    header_name, header_pairs, header_value, host_pattern, one_of_message, positive_duration, FRAMING_HEADERS,
};
use super::versions_schema::decode_versions;
use super::yaml::Node;
use crate::routing::normalize::normalize_target;
use crate::routing::template::{is_template, PathTemplate, Rewrite};

const ROUTE_FIELDS: &[&str] = &[
    "name",
    "match",
    "upstream",
    "strip_prefix",
    "request_headers",
    "response_headers",
    "timeout",
    "auth",
    "require",
    "forward_credential",
    "rate_limit",
    "versions",
    "pass_headers",
    "websocket",
    "transform",
    "aggregate",
    "grpc",
    "retry",
    "max_body",
    "ip",
    "cors",
    "https_redirect",
    "rewrite",
    "cache",
];

pub(super) fn decode_route(
    node: &Node,
    path: &str,
    cors_policies: &[(String, CorsConfig)],
    base_dir: &std::path::Path,
    p: &mut Problems,
) -> Option<RouteConfig> {
    let f = Fields::new(node, path, ROUTE_FIELDS, p)?;
    let cors = super::cors_schema::decode_route_cors(&f, cors_policies, p);
    let auth = decode_route_auth(&f, p);
    let pass_headers = decode_pass_headers(&f, p);
    let name: Option<Spanned<String>> = f.req("name", p);
    if let Some(n) = &name {
        check_name(n, &f.path_of("name"), p);
    }
    let matcher = match f.node("match") {
        Some(n) => decode_match(n, &f.path_of("match"), p),
        None => {
            p.add(
                f.pos(),
                &f.path_of("match"),
                "missing required field `match` (at least `path` or `path_prefix`)",
            );
            None
        }
    };
    let upstream: Option<Spanned<String>> = f.opt("upstream", p);
    let versions = match (f.node("versions"), &name) {
        (Some(n), Some(route)) => decode_versions(n, &f.path_of("versions"), &route.value, p).map(Some),
        (Some(_), None) => None,
        (None, _) => Some(None),
    };
    let has_auth = auth.as_ref().is_some_and(|a| !a.authenticators.is_empty());
    let aggregate = match f.node("aggregate") {
        Some(n) => decode_aggregate(n, &f.path_of("aggregate"), has_auth, p).map(Some),
        None => Some(None),
    };
    let grpc = match f.node("grpc") {
        Some(n) => super::grpc_schema::decode_grpc(n, &f.path_of("grpc"), base_dir, p).map(Some),
        None => Some(None),
    };
    match (f.has("upstream"), f.has("versions")) {
        _ if f.has("aggregate") || f.has("grpc") => {}
        (true, true) => p.add(
            f.pos_of("versions"),
            &f.path_of("versions"),
            "a route has either `upstream` or `versions`, not both",
        ),
        // Written inside `match` by mistake: reported there, once.
        (false, false) if f.misplaced("match", "upstream") || f.misplaced("match", "versions") => {}
        (false, false) => p.add(
            f.pos(),
            &f.path_of("upstream"),
            "missing required field `upstream` (or `versions` for a versioned API, or `aggregate`)",
        ),
        _ => {}
    }
    let strip_prefix: Option<Spanned<String>> = f
        .opt("strip_prefix", p)
        .filter(|s| canonical_path(s, &f.path_of("strip_prefix"), p));
    let rewrite = decode_rewrite(&f, matcher.as_ref(), p);
    let request_headers = rules(&f, "request_headers", p);
    let response_headers = rules(&f, "response_headers", p);
    let transform = match f.node("transform") {
        Some(n) => decode_transform(n, &f.path_of("transform"), p),
        None => Some(TransformConfig::default()),
    };
    let websocket = decode_websocket(&f, p);
    if f.has("transform") && websocket.as_ref().is_some_and(|w| w.0) {
        p.add(
            f.pos_of("transform"),
            &f.path_of("transform"),
            "a route with `transform` cannot also pass WebSocket upgrades (the gateway reads whole bodies there)",
        );
    }
    if f.has("grpc") {
        check_grpc_route(&f, p);
    }
    let cache = super::cache_schema::decode_route_cache(&f, p);
    if f.has("cache") {
        check_cache_route(&f, transform.as_ref(), p);
    }
    if f.has("aggregate") {
        let aggregate = aggregate.as_ref().and_then(|a| a.as_ref());
        check_aggregate_route(&f, aggregate, matcher.as_ref(), transform.as_ref(), p);
    }
    let timeout = positive_duration(&f, "timeout", p).flatten();
    let retry_idempotency_key = match f.node("retry") {
        None | Some(Node::Null { .. }) => Some(false),
        Some(n) => Fields::nested(n, &f.path_of("retry"), &["idempotency_key"], ROUTE_FIELDS, p)
            .map(|r| r.or("idempotency_key", false, p)),
    };
    Some(RouteConfig {
        name: name?,
        matcher: matcher?,
        upstream,
        versions: versions?,
        strip_prefix,
        rewrite,
        request_headers: request_headers?,
        response_headers: response_headers?,
        timeout,
        auth: auth?,
        rate_limit: f.or("rate_limit", Vec::new(), p),
        pass_headers: pass_headers?,
        websocket: websocket.as_ref().is_some_and(|w| w.0),
        websocket_idle_timeout: websocket.as_ref().map_or(DEFAULT_WEBSOCKET_IDLE, |w| w.1),
        websocket_max_lifetime: websocket.and_then(|w| w.2),
        transform: transform?,
        aggregate: aggregate?,
        grpc: grpc?,
        retry_idempotency_key: retry_idempotency_key?,
        ip: super::ip_schema::decode_ip_rules(&f, ROUTE_FIELDS, p)?,
        max_body: f.opt::<super::size::ByteSize>("max_body", p).map(|s| s.0 as u64),
        cors: cors?,
        https_redirect: f.or("https_redirect", false, p),
        cache: cache?,
    })
}

/// What a caching route cannot also have (its answers are served from the gateway's store).
fn check_cache_route(f: &Fields<'_>, transform: Option<&TransformConfig>, p: &mut Problems) {
    if transform.is_some_and(|t| t.request_method().is_some()) {
        p.add(
            f.pos_of("cache"),
            &f.path_of("cache"),
            "`cache` cannot go with `transform.request.method`: the upstream would be sent another method than the GET whose answer is stored",
        );
    }
    for (key, why) in [
        (
            "aggregate",
            "an aggregated answer is built per request from its parts",
        ),
        ("grpc", "a transcoded call is not cached"),
        ("websocket", "an upgraded connection has no answer to store"),
    ] {
        if f.has(key) {
            p.add(
                f.pos_of("cache"),
                &f.path_of("cache"),
                format!("`cache` cannot go with `{key}`: {why}"),
            );
        }
    }
}

/// How long an upgraded connection may be quiet unless the route says otherwise.
const DEFAULT_WEBSOCKET_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// `websocket: true`, or `{ idle_timeout, max_lifetime }` (enabled): (enabled, idle timeout,
/// maximum lifetime).
fn decode_websocket(
    f: &Fields<'_>,
    p: &mut Problems,
) -> Option<(bool, std::time::Duration, Option<std::time::Duration>)> {
    match f.node("websocket") {
        None | Some(Node::Null { .. }) => Some((false, DEFAULT_WEBSOCKET_IDLE, None)),
        Some(Node::Map { .. }) => {
            let w = Fields::nested(
                f.node("websocket")?,
                &f.path_of("websocket"),
                &["idle_timeout", "max_lifetime"],
                ROUTE_FIELDS,
                p,
            )?;
            let idle = positive_duration(&w, "idle_timeout", p)?.unwrap_or(DEFAULT_WEBSOCKET_IDLE);
            let lifetime = positive_duration(&w, "max_lifetime", p)?;
            Some((true, idle, lifetime))
        }
        Some(_) => f
            .opt::<bool>("websocket", p)
            .map(|on| (on, DEFAULT_WEBSOCKET_IDLE, None)),
    }
}

/// What a transcoding route cannot also have: its requests are built from the bindings, sent
/// to `grpc.upstream`, and answered as JSON by the gateway.
fn check_grpc_route(f: &Fields<'_>, p: &mut Problems) {
    for (key, why) in [
        ("upstream", "a transcoding route calls `grpc.upstream`"),
        ("versions", "a transcoding route calls `grpc.upstream`"),
        ("aggregate", "a route either aggregates or transcodes"),
        (
            "transform",
            "a transcoding route builds its request and answer from the descriptors",
        ),
        ("websocket", "a transcoded call cannot be a WebSocket"),
        ("rewrite", "the gRPC request path comes from the binding"),
    ] {
        if f.has(key) {
            p.add(
                f.pos_of(key),
                &f.path_of(key),
                format!("`{key}` cannot go with `grpc`: {why}"),
            );
        }
    }
}

/// What an aggregated route cannot also have: it has no single upstream to send a request,
/// a WebSocket or a rewritten path to; and methods it never serves.
fn check_aggregate_route(
    f: &Fields<'_>,
    aggregate: Option<&super::aggregate_model::AggregateConfig>,
    matcher: Option<&MatchConfig>,
    transform: Option<&TransformConfig>,
    p: &mut Problems,
) {
    for (key, why) in [
        ("upstream", "an aggregated route's parts name their upstreams"),
        ("versions", "an aggregated route's parts name their upstreams"),
        ("strip_prefix", "each part's `path` says what it requests"),
        ("rewrite", "each part's `path` says what it requests"),
        ("websocket", "an aggregated answer cannot be a WebSocket"),
    ] {
        if f.has(key) {
            p.add(
                f.pos_of(key),
                &f.path_of(key),
                format!("`{key}` cannot go with `aggregate`: {why}"),
            );
        }
    }
    if transform.is_some_and(|t| t.request.is_some()) {
        p.add(
            f.pos_of("transform"),
            &f.path_of("transform.request"),
            "`transform.request` cannot go with `aggregate`: parts build their own requests (`transform.response` applies to the merged answer)",
        );
    }
    let (Some(aggregate), Some(matcher)) = (aggregate, matcher) else {
        return;
    };
    let captured: Vec<&str> = matcher
        .path
        .template()
        .map(|t| t.names().collect())
        .unwrap_or_default();
    for (i, part) in aggregate.parts.iter().enumerate() {
        for var in part.path.vars() {
            if let crate::aggregate::template::Var::Capture(name) = var {
                if !captured.contains(&name.as_str()) {
                    p.add(
                        part.name.pos,
                        &f.path_of(&format!("aggregate.parts[{i}].path")),
                        format!(
                            "`{{path.{name}}}`: the route's path captures {}",
                            if captured.is_empty() {
                                "nothing (write `{name}` in `match.path` or `match.path_prefix`)".to_string()
                            } else {
                                captured.join(", ")
                            }
                        ),
                    );
                }
            }
        }
    }
    for m in &matcher.methods {
        let served = m == "GET" || m == "HEAD" || aggregate.allow_methods.iter().any(|a| a.as_str() == m);
        if !served {
            p.add(
                f.pos_of("match"),
                &f.path_of("match.methods"),
                format!("`{m}` is matched but an aggregated route serves only GET, HEAD and `aggregate.allow_methods`"),
            );
        }
    }
}

/// `pass_headers`: only headers the gateway strips by default can be let through.
fn decode_pass_headers(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<HeaderName>> {
    let names: Vec<Spanned<String>> = f.or("pass_headers", Vec::new(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let path = index(&f.path_of("pass_headers"), i);
        match header_name(n, &path, p) {
            Some(h) if super::client_header_names::strippable(h.as_str()) => out.push(h),
            Some(h) => {
                p.add(
                    n.pos,
                    &path,
                    format!("`{h}` is not a header the gateway strips; it reaches the upstream anyway"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A route path must already be in the canonical form request paths are normalized to,
/// otherwise it could never match (or would match something else than it says).
/// A route's `path` or `path_prefix`: literal (canonical), or a template whose literal segments
/// are canonical.
fn route_path(s: Spanned<String>, path: &str, prefix: bool, p: &mut Problems) -> Option<PathMatch> {
    if !is_template(&s.value) {
        let ok = canonical_path(&s, path, p);
        return ok.then(|| {
            if prefix {
                PathMatch::Prefix(s.value)
            } else {
                PathMatch::Exact(s.value)
            }
        });
    }
    let template = match PathTemplate::parse(&s.value, prefix) {
        Ok(t) => t,
        Err(e) => {
            p.add(s.pos, path, format!("path template `{}`: {e}", s.value));
            return None;
        }
    };
    let mut ok = true;
    let count = template.literals().count();
    for (i, (last, seg)) in template.literals().enumerate() {
        let problem = if seg.is_empty() && !(last && i + 1 == count) {
            Some("an empty segment (requests are normalized: `//` becomes `/`)".to_string())
        } else if seg == "." || seg == ".." {
            Some(format!(
                "segment `{seg}` (requests are normalized: dot segments are resolved)"
            ))
        } else if let Some(syntax) = pattern_syntax(seg) {
            Some(format!("segment `{seg}` uses {syntax}; captures are `{{name}}` or `{{name:regex}}`, a wildcard is `*`"))
        } else if seg.contains(';') {
            Some(format!("segment `{seg}` contains `;` (refused in requests)"))
        } else {
            let one = format!("/{seg}");
            match normalize_target(one.as_bytes(), 8192) {
                Ok(n) if n.path == one && n.query.is_none() => None,
                Ok(n) if n.query.is_none() => Some(format!(
                    "segment `{seg}` is not canonical; write `{}`",
                    &n.path[1..]
                )),
                Ok(_) => Some("a query".to_string()),
                Err(e) => Some(format!("segment `{seg}` is invalid: {e}")),
            }
        };
        if let Some(problem) = problem {
            p.add(
                s.pos,
                path,
                format!("path template `{}` can never match: {problem}", s.value),
            );
            ok = false;
        }
    }
    ok.then(|| PathMatch::Template(std::sync::Arc::new(template)))
}

/// `rewrite`: the upstream path, as a template of the route path's captures.
fn decode_rewrite(f: &Fields<'_>, matcher: Option<&MatchConfig>, p: &mut Problems) -> Option<Rewrite> {
    let rewrite: Spanned<String> = f.opt("rewrite", p)?;
    let at = f.path_of("rewrite");
    if f.has("strip_prefix") {
        p.add(
            rewrite.pos,
            &at,
            "give either `rewrite` or `strip_prefix`, not both (a rewrite replaces the matched path)",
        );
        return None;
    }
    let matcher = matcher?;
    match Rewrite::parse(&rewrite.value, matcher.path.template()) {
        Err(e) => p.add(rewrite.pos, &at, format!("rewrite `{}`: {e}", rewrite.value)),
        Ok(rw) => {
            let sample = rw.sample();
            let canonical = matches!(normalize_target(sample.as_bytes(), 8192), Ok(n) if n.path == sample && n.query.is_none());
            if !canonical || sample.contains(';') {
                p.add(
                    rewrite.pos,
                    &at,
                    format!(
                        "rewrite `{}` must be a canonical path without a query, `;`, empty or dot segments",
                        rewrite.value
                    ),
                );
            } else {
                return Some(rw);
            }
        }
    }
    None
}

fn canonical_path(s: &Spanned<String>, path: &str, p: &mut Problems) -> bool {
    if let Some(syntax) = pattern_syntax(&s.value) {
        p.add(
            s.pos,
            path,
            format!(
                "path `{}` uses pattern syntax ({syntax}) that would be taken literally: in a \
                 route path write a capture as `{{name}}` or `{{name:regex}}` (a whole segment) \
                 and any one segment as `*`; `strip_prefix` takes a literal path",
                s.value
            ),
        );
        return false;
    }
    if s.value.contains(';') {
        p.add(s.pos, path, format!("path `{}` contains `;`; requests with `;` path parameters are refused, so it could never match", s.value));
        return false;
    }
    match normalize_target(s.value.as_bytes(), 8192) {
        Ok(n) if n.path == s.value && n.query.is_none() => true,
        Ok(n) if n.query.is_none() => {
            p.add(
                s.pos,
                path,
                format!(
                    "path `{}` is not canonical; requests are normalized, write `{}`",
                    s.value, n.path
                ),
            );
            false
        }
        Ok(_) => {
            p.add(
                s.pos,
                path,
                format!("path `{}` must not contain a query", s.value),
            );
            false
        }
        Err(e) => {
            p.add(s.pos, path, format!("path `{}` is invalid: {e}", s.value));
            false
        }
    }
}

/// Pattern syntax an operator may expect to work in a route path: `*` wildcards, `{id}`
/// templates, `:id` segments, regular-expression classes and anchors.
fn pattern_syntax(path: &str) -> Option<&'static str> {
    if path.contains('*') {
        Some("`*`")
    } else if path.contains(['{', '}']) {
        Some("`{…}`")
    } else if path.split('/').any(|seg| seg.starts_with(':')) {
        Some("a `:name` segment")
    } else if path.contains(['[', ']', '^', '$', '|']) {
        Some("regular-expression characters")
    } else {
        None
    }
}

fn rules(f: &Fields<'_>, key: &str, p: &mut Problems) -> Option<HeaderRulesConfig> {
    match f.node(key) {
        None | Some(Node::Null { .. }) => Some(HeaderRulesConfig::default()),
        Some(n) => decode_rules(n, &f.path_of(key), p),
    }
}

fn decode_rules(node: &Node, path: &str, p: &mut Problems) -> Option<HeaderRulesConfig> {
    let f = Fields::new(node, path, &["set", "add", "remove", "rename"], p)?;
    let set = header_pairs(&f, "set", p);
    let add = header_pairs(&f, "add", p);
    let remove: Vec<Spanned<String>> = f.or("remove", Vec::new(), p);
    let remove: Option<Vec<HeaderName>> = remove
        .iter()
        .enumerate()
        .map(|(i, s)| header_name(s, &index(&f.path_of("remove"), i), p))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let renames: Entries<Spanned<String>> = f.or("rename", Entries::default(), p);
    let rename: Option<Vec<(HeaderName, HeaderName)>> = renames
        .0
        .iter()
        .map(|(from, to)| {
            let at = format!("{}.{}", f.path_of("rename"), from.value);
            let pair = (header_name(from, &at, p), header_name(to, &at, p));
            Some((pair.0?, pair.1?))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let (set, add, remove, rename) = (set?, add?, remove?, rename?);
    // Removing one forges nothing (and hop-by-hop ones are removed anyway).
    let named = set
        .iter()
        .chain(&add)
        .map(|(n, _)| n)
        .chain(rename.iter().flat_map(|(a, b)| [a, b]));
    let mut ok = true;
    for name in named {
        // A rule that set, removed or renamed one would corrupt the exchange (a forged length
        // is request smuggling).
        if FRAMING_HEADERS.contains(&name.as_str()) {
            p.add(
                f.pos(),
                path,
                format!("`{name}` frames the message or the connection; header rules cannot change it"),
            );
            ok = false;
        }
    }
    ok.then_some(HeaderRulesConfig {
        set,
        add,
        remove,
        rename,
    })
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

fn decode_match(node: &Node, path: &str, p: &mut Problems) -> Option<MatchConfig> {
    let f = Fields::nested(
        node,
        path,
        &["hosts", "path", "path_prefix", "methods", "headers"],
        ROUTE_FIELDS,
        p,
    )?;
    let exact: Option<Spanned<String>> = f.opt("path", p);
    let prefix: Option<Spanned<String>> = f.opt("path_prefix", p);
    let path_match = match (exact, prefix) {
        (Some(e), None) => route_path(e, &f.path_of("path"), false, p),
        (None, Some(pre)) => route_path(pre, &f.path_of("path_prefix"), true, p),
        (Some(_), Some(_)) => {
            p.add(
                f.pos(),
                path,
                "give either `path` (exact) or `path_prefix`, not both",
            );
            None
        }
        (None, None) => {
            p.add(
                f.pos(),
                path,
                "needs `path` (exact) or `path_prefix` (use `path_prefix: /` to match everything)",
            );
            None
        }
    };
    let hosts: Vec<Spanned<String>> = f.or("hosts", Vec::new(), p);
    let hosts: Option<Vec<String>> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| host_pattern(h, &index(&f.path_of("hosts"), i), p))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let methods: Vec<Spanned<String>> = f.or("methods", Vec::new(), p);
    let methods: Option<Vec<String>> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let upper = m.value.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                p.add(
                    m.pos,
                    &index(&f.path_of("methods"), i),
                    one_of_message(&m.value, METHODS),
                );
                None
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let headers: Entries<Spanned<String>> = f.or("headers", Entries::default(), p);
    let mut seen: Vec<HeaderName> = Vec::new();
    let headers: Option<Vec<(HeaderName, HeaderValue)>> = headers
        .0
        .iter()
        .map(|(n, v)| {
            let hp = format!("{}.{}", f.path_of("headers"), n.value);
            let name = header_name(n, &hp, p)?;
            let value = header_value(v, &hp, p)?;
            // Names are case-insensitive: `X-A` and `x-a` are one condition, which would
            // count twice in precedence.
            if seen.contains(&name) {
                p.add(
                    n.pos,
                    &hp,
                    format!("header `{name}` is listed twice (names are case-insensitive)"),
                );
                return None;
            }
            seen.push(name.clone());
            Some((name, value))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    Some(MatchConfig {
        hosts: hosts?,
        path: path_match?,
        methods: methods?,
        headers: headers?,
    })
}
