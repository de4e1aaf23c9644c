//! What the admin API shows of the running configuration, as JSON: `GET /routes` (the compiled
//! table, in the order routing consults it), `GET /upstreams` (targets, health, ejections,
//! requests in flight) and `GET /config` (which file, its hash, when it was loaded, and how the
//! last reload went). Read from the snapshot requests use, so it is what the gateway does, not
//! what the file says.

use serde_json::{json, Value};

use crate::config::date::rfc3339_millis;
use crate::route::{Route, Target};
use crate::routing::table::Slot;
use crate::runtime::reload::Reloader;
use crate::runtime::Snapshot;

/// `GET /routes`: host groups most specific first (exact hosts by name, then wildcard hosts
/// longest first, then routes for every host); in each, paths in precedence order; on each
/// path, its routes in the order they compete.
pub fn routes(snapshot: &Snapshot) -> Value {
    let table = &snapshot.routes;
    let mut groups: Vec<(Option<&str>, _)> = table.all_groups().collect();
    // `all_groups` gives exact hosts (in map order), then wildcards (ordered), then the rest.
    let exact_count = groups
        .iter()
        .take_while(|(h, _)| h.is_some_and(|h| !h.starts_with("*.")))
        .count();
    groups[..exact_count].sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (host, group) in groups {
        let mut slots: Vec<(Slot<'_>, &[usize])> = group.slots().collect();
        slots.sort_by(|(a, _), (b, _)| {
            if a.more_specific_than(b) {
                std::cmp::Ordering::Less
            } else if b.more_specific_than(a) {
                std::cmp::Ordering::Greater
            } else {
                a.path().cmp(b.path())
            }
        });
        for (slot, ids) in slots {
            let routes: Vec<Value> = ids
                .iter()
                .filter_map(|&id| table.routes.get(id))
                .map(|r| route(snapshot, r))
                .collect();
            out.push(json!({
                "host": host.unwrap_or("*"),
                "match": if slot.is_prefix() { "path_prefix" } else { "path" },
                "path": slot.path(),
                "template": matches!(slot, Slot::Template(_)),
                "routes": routes,
            }));
        }
    }
    Value::Array(out)
}

fn route(snapshot: &Snapshot, r: &Route) -> Value {
    let pool_name = |i: usize| snapshot.pools.get(i).map_or("?", |p| p.name.as_str());
    let target = match &r.target {
        Target::Upstream(i) => json!({ "upstream": pool_name(*i) }),
        Target::Versions(v) => json!({
            "versions": v.versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>()
        }),
        Target::Aggregate(a) => json!({
            "aggregate": a.parts.iter().map(|p| json!({
                "part": p.cfg.name.value,
                "upstream": pool_name(p.pool),
            })).collect::<Vec<_>>()
        }),
        Target::Grpc(t) => json!({
            "grpc": {
                "upstream": pool_name(t.pool),
                "services": t.config.services.iter().map(|s| s.value.as_str()).collect::<Vec<_>>(),
                "bindings": t.config.table.bindings.iter().map(|b| json!({
                    "method": b.method.as_str(),
                    "path": b.template.source(),
                    "rpc": t.config.table.rpcs.get(b.rpc).map(|r| r.path.as_str()),
                })).collect::<Vec<_>>(),
            }
        }),
    };
    let limits: Vec<&str> = r
        .limits
        .iter()
        .filter_map(|&i| snapshot.policies.get(i).map(|p| p.name.as_str()))
        .collect();
    json!({
        "name": r.name,
        "methods": if r.methods.is_any() { "*".to_string() } else { r.methods.allow_header() },
        "headers": r.headers.iter().map(|(n, v)| json!({ "name": n.as_str(), "value": v.to_str().unwrap_or("") })).collect::<Vec<_>>(),
        "auth": snapshot.auth_summary(r),
        "rate_limit": limits,
        "target": target,
    })
}

/// `GET /upstreams`: every pool with its targets and its concurrency slots.
pub fn upstreams(snapshot: &Snapshot) -> Value {
    Value::Array(
        snapshot
            .pools
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "targets": p.targets(),
                    "inflight": p.concurrency.inflight(),
                    "queued": p.concurrency.queued(),
                    "max_requests": p.concurrency.limits.max_requests,
                })
            })
            .collect(),
    )
}

/// `GET /config`: the file, its hash, when it was loaded, and the last reload's outcome.
pub fn config(snapshot: &Snapshot, reloader: &Reloader) -> Value {
    let last = reloader.last().map(|l| {
        json!({
            "at": rfc3339_millis(l.at),
            "result": if l.ok { "success" } else { "failure" },
            "message": l.message,
        })
    });
    json!({
        "file": reloader.path(),
        "sha256": snapshot.config_sha256,
        "hash": snapshot.config_hash(),
        "loaded_at": rfc3339_millis(snapshot.loaded_at),
        "last_reload": last,
    })
}
