//! Whether each binding of a `grpc:` route can be reached: a request for it must be routed to
//! that route. The real routing table decides, on a sample of each binding's paths (variables
//! as `x`), with the route's own host and header conditions — so a binding outside the route's
//! `match`, or taken by a more specific route, is reported at load instead of answering 404
//! or reaching the wrong upstream.

use http::HeaderMap;

use crate::routing::table::{RouteMatch, RouteTable};

/// Every binding no request can reach, as a sentence per binding.
pub fn unreachable_bindings(table: &RouteTable, hosts: &[Vec<String>]) -> Vec<String> {
    let mut out = Vec::new();
    for (id, route) in table.routes.iter().enumerate() {
        let Some(t) = route.target.grpc() else {
            continue;
        };
        let host = hosts
            .get(id)
            .and_then(|h| h.first())
            .map(|h| h.replace('*', "sample"))
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        for (name, value) in &route.headers {
            headers.append(name.clone(), value.clone());
        }
        for (binding, sample) in t.config.table.samples() {
            let path = match route.strip_prefix.as_deref() {
                Some(prefix) => format!("{}{sample}", prefix.trim_end_matches('/')),
                None => sample,
            };
            let rpc = t
                .config
                .table
                .rpcs
                .get(binding.rpc)
                .map_or("?", |r| r.path.as_str());
            let what = format!(
                "route `{}`: grpc binding `{} {}` ({rpc})",
                route.name,
                binding.method,
                binding.template.source()
            );
            match table.find(&host, &path, &binding.method, &headers) {
                RouteMatch::Found(other) if other == id => {}
                RouteMatch::Found(other) => out.push(format!(
                    "{what} is taken by route `{}`: its requests (like `{} {path}`) never reach this route",
                    table.routes.get(other).map_or("?", |r| r.name.as_str()),
                    binding.method
                )),
                RouteMatch::MethodNotAllowed(_) | RouteMatch::NotFound => out.push(format!(
                    "{what} is outside the route's `match`{}: `{} {path}` is not routed to it",
                    if route.methods.is_any() {
                        ""
                    } else {
                        " (or its `methods`)"
                    },
                    binding.method
                )),
            }
        }
    }
    out
}
