//! `portcullis route`: what the gateway would do with one request, without sending anything
//! (as Envoy's router check tool does). It runs the pipeline's own steps — request checks,
//! normalization, routing, version resolution, the upstream target — on a compiled snapshot,
//! and stops before authentication (it names what would be required) and rate limiting (it
//! names the policies and their keys).

use http::Method;
use pingora::http::RequestHeader;

use super::ctx::RequestCtx;
use super::{admission, request_checks};
use crate::route::{Route, Target};
use crate::runtime::Snapshot;

/// What the gateway would do with the request.
#[derive(Debug, Default, serde::Serialize)]
pub struct Explanation {
    /// The canonical path, once normalized.
    pub path: Option<String>,
    pub host: String,
    /// 200 when the request would be forwarded (authentication and rate limits permitting),
    /// else the gateway's own answer.
    pub status: u16,
    /// Why the gateway would answer itself.
    pub refused: Option<String>,
    pub route: Option<String>,
    /// Routes whose path also matches, in precedence order, and why each did not take it.
    pub passed_over: Vec<PassedOver>,
    pub auth: Option<String>,
    pub rate_limits: Vec<String>,
    pub version: Option<String>,
    pub upstream: Option<String>,
    /// The path and query sent upstream.
    pub upstream_path: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct PassedOver {
    pub route: String,
    pub why: String,
}

/// Explain `req` (its `Host` header names the host).
pub fn explain(snapshot: &std::sync::Arc<Snapshot>, req: &mut RequestHeader) -> Explanation {
    let mut out = Explanation {
        status: 200,
        ..Explanation::default()
    };
    let mut ctx = RequestCtx::new(std::sync::Arc::clone(snapshot));
    let limits = &snapshot.settings.limits;
    let checked = request_checks::refuse_connect(req)
        .and_then(|()| request_checks::check_framing(req, limits))
        .and_then(|()| request_checks::check_header_names(req, &snapshot.settings.client_headers))
        .and_then(|()| request_checks::check_host(req))
        .and_then(|host| request_checks::check_path(req, limits).map(|target| (host, target)));
    let (host, target) = match checked {
        Ok(ok) => ok,
        Err(problem) => {
            out.status = problem.status;
            out.refused = Some(problem.detail.to_string());
            return out;
        }
    };
    out.host = host.clone();
    out.path = Some(target.path.clone());
    let found = admission::find_route(snapshot, &host, &target.path, &req.method, req);
    let chosen = found.as_ref().ok().copied();
    out.passed_over = passed_over(snapshot, &host, &target.path, &req.method, req, chosen);
    let route_id = match found {
        Ok(id) => id,
        Err(problem) => {
            out.status = problem.status;
            out.refused = Some(problem.detail.to_string());
            return out;
        }
    };
    let Some(route) = snapshot.routes.routes.get(route_id) else {
        return out;
    };
    out.route = Some(route.name.clone());
    out.auth = Some(snapshot.auth_summary(route));
    out.rate_limits = route
        .limits
        .iter()
        .filter_map(|&i| snapshot.policies.get(i))
        .map(|p| format!("{} (key: {})", p.name, p.key_description()))
        .collect();
    ctx.admission.route = Some(route_id);
    let version = match admission::resolve_version(route, req, &target, &mut ctx) {
        Ok(v) => v,
        Err(problem) => {
            out.status = problem.status;
            out.refused = Some(problem.detail.to_string());
            return out;
        }
    };
    out.version = route
        .target
        .versions()
        .and_then(|vs| vs.versions.get(ctx.admission.version?))
        .map(|v| v.name.clone());
    out.upstream = match &route.target {
        Target::Aggregate(a) => Some(
            a.parts
                .iter()
                .map(|p| format!("{}:{}", p.cfg.name.value, pool_name(snapshot, p.pool)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => ctx.admission.pool.map(|p| pool_name(snapshot, p).to_string()),
    };
    if let Some(t) = route.target.grpc() {
        // The gRPC method the path and method are bound to.
        match super::transcode::bound(route, &t.config, &req.method, &target.path) {
            Ok((_, rpc, _)) => out.upstream_path = Some(format!("gRPC {}", rpc.path)),
            Err(problem) => {
                out.status = problem.status;
                out.refused = Some(problem.detail.to_string());
            }
        }
    } else if route.target.aggregate().is_none() {
        match admission::upstream_uri(route, &target.path, &target, version) {
            Ok(uri) => out.upstream_path = Some(uri.to_string()),
            Err(problem) => {
                out.status = problem.status;
                out.refused = Some(problem.detail.to_string());
            }
        }
    }
    out
}

fn pool_name(snapshot: &Snapshot, pool: usize) -> &str {
    snapshot.pools.get(pool).map_or("?", |p| p.name.as_str())
}

/// The other routes whose path matches, and why each did not take the request: a more
/// specific path decided, or on the deciding path its headers or methods did not match.
fn passed_over(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    method: &Method,
    req: &RequestHeader,
    chosen: Option<usize>,
) -> Vec<PassedOver> {
    let table = &snapshot.routes;
    let matching = table.matching_routes(host, path);
    let deciding = match chosen {
        Some(id) => matching
            .iter()
            .find(|(r, _, _)| *r == id)
            .map(|(_, s, g)| (*s, *g)),
        None => matching.first().map(|(_, s, g)| (*s, *g)),
    };
    matching
        .iter()
        .filter(|(id, _, _)| Some(*id) != chosen)
        .filter_map(|&(id, slot, group)| {
            let r: &Route = table.routes.get(id)?;
            let why = if Some((slot, group)) != deciding {
                match deciding {
                    Some((d, g)) if g < group => format!(
                        "{} of a more specific host decides (hosts come before paths)",
                        d.describe()
                    ),
                    Some((d, _)) => format!(
                        "{} decides: it is more specific than {}",
                        d.describe(),
                        slot.describe()
                    ),
                    None => "another path decides".into(),
                }
            } else if !r.headers_match(&req.headers) {
                let wanted: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                    .collect();
                format!("its headers do not match (needs {})", wanted.join(", "))
            } else if !r.methods.allows(method) {
                format!(
                    "{method} is not one of its methods ({})",
                    r.methods.allow_header()
                )
            } else {
                "an earlier route on the same path takes it".into()
            };
            Some(PassedOver {
                route: r.name.clone(),
                why,
            })
        })
        .collect()
}
