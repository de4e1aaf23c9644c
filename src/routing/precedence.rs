//! What `portcullis check` says about route precedence where it matters for security: a more
//! specific path whose routes authenticate differently from the path that encloses it.
//!
//! The deciding-path rule (see `table.rs`) means such a path takes every request under it, so
//! the enclosing routes never see them; an operator who meant the opposite should learn it
//! from `check`, not from an incident.

use super::normalize::has_segment_prefix;
use super::table::{HostGroup, RouteTable, Slot};
use super::Route;

/// One line per overlap, sorted; `auth_of` describes a route's authentication.
pub fn auth_overlaps(table: &RouteTable, auth_of: impl Fn(&Route) -> String) -> Vec<String> {
    let describe = |ids: &[usize]| -> (String, Vec<String>) {
        let mut auths: Vec<String> = ids.iter().map(|&id| auth_of(&table.routes[id])).collect();
        auths.sort();
        auths.dedup();
        let routes: Vec<String> = ids
            .iter()
            .map(|&id| {
                let r = &table.routes[id];
                let methods = if r.methods.is_any() {
                    String::new()
                } else {
                    format!(" {}", r.methods.allow_header())
                };
                format!("`{}`{methods}: {}", r.name, auth_of(r))
            })
            .collect();
        (routes.join("; "), auths)
    };
    // The routes for every host, by path, to find those a host's own routes hide.
    let mut any_host: Vec<(Slot<'_>, &[usize])> = table.any_host_group().slots().collect();
    any_host.sort_by(|(a, _), (b, _)| a.path().cmp(b.path()));
    let mut lines = Vec::new();
    for (host, group) in table.all_groups() {
        for (slot, ids) in group.slots() {
            let enclosing = group.enclosing(slot).or_else(|| {
                // A host's routes also take its requests from the routes for every host.
                host.and(covering(table.any_host_group(), slot))
            });
            let Some((outer_slot, outer_ids)) = enclosing else {
                continue;
            };
            let (inner, inner_auth) = describe(ids);
            let (outer, outer_auth) = describe(outer_ids);
            if inner_auth == outer_auth {
                continue;
            }
            let on = host.map(|h| format!("host {h}, ")).unwrap_or_default();
            let restricted = ids.iter().all(|&id| !table.routes[id].methods.is_any());
            let methods = if restricted {
                "; other methods get 405 there"
            } else {
                ""
            };
            let scope = match slot {
                Slot::Exact(_) => "every request for it",
                Slot::Prefix(_) => "every request under it",
            };
            lines.push(format!(
                "precedence: {on}{} ({inner}) decides {scope}{methods}; {} ({outer}) never sees them",
                slot.describe(),
                outer_slot.describe()
            ));
        }
        // Hosts come first: a host's route takes its requests even under a longer path that
        // routes for every host protect differently.
        let Some(host) = host else { continue };
        for (slot, ids) in group.slots() {
            let Slot::Prefix(prefix) = slot else { continue };
            let (outer, outer_auth) = describe(ids);
            let start = any_host.partition_point(|(s, _)| s.path() < prefix);
            for (hidden, hidden_ids) in any_host[start..]
                .iter()
                .take_while(|(s, _)| s.path().starts_with(prefix))
            {
                if *hidden == slot || !has_segment_prefix(hidden.path(), prefix) {
                    continue;
                }
                let (inner, inner_auth) = describe(hidden_ids);
                if inner_auth != outer_auth {
                    lines.push(format!(
                        "precedence: host {host}, {} ({outer}) decides every request under it for that \
                         host, {} ({inner}) included: hosts come before paths",
                        slot.describe(),
                        hidden.describe()
                    ));
                }
            }
        }
    }
    lines.sort();
    lines
}

/// The slot of `group` that would take requests for `slot`'s path (the same path, or the
/// longest prefix covering it).
fn covering<'a>(group: &'a HostGroup, slot: Slot<'a>) -> Option<(Slot<'a>, &'a [usize])> {
    group
        .slot(slot)
        .map(|ids| (slot, ids))
        .or_else(|| group.enclosing(slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RouteAuth;
    use crate::config::PathMatch;

    fn route(name: &str, prefix: &str, methods: &[&str], auth: &[usize]) -> Route {
        let mut route = crate::test_util::route(name, PathMatch::Prefix(prefix.into()), methods, &[]);
        route.auth = RouteAuth {
            authenticators: auth.to_vec(),
            ..RouteAuth::default()
        };
        route
    }

    #[test]
    fn names_overlaps_with_different_auth_only() {
        let routes = vec![
            route("orders", "/orders", &[], &[]),
            route("orders-admin", "/orders/admin", &["GET", "POST"], &[0]),
            route("orders-list", "/orders/list", &[], &[]),
        ];
        let t = RouteTable::build(routes, &[vec![], vec![], vec![]]);
        let lines = auth_overlaps(&t, |r| {
            if r.auth.authenticators.is_empty() {
                "public".into()
            } else {
                "auth".into()
            }
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let mut routes = vec![
            route("host-orders", "/orders", &[], &[]),
            route("orders-admin", "/orders/admin", &["GET"], &[0]),
        ];
        routes.push(route("orders-list", "/orders-list", &[], &[0]));
        let hosts = vec![vec!["api.example.com".to_string()], vec![], vec![]];
        let t2 = RouteTable::build(routes, &hosts);
        let host_lines = auth_overlaps(&t2, |r| {
            if r.auth.authenticators.is_empty() {
                "public".into()
            } else {
                "auth".into()
            }
        });
        assert!(
            host_lines.iter().any(|l| l.contains("host api.example.com, path_prefix /orders (`host-orders`: public) decides every request under it for that host, path_prefix /orders/admin")),
            "{host_lines:?}"
        );
        assert!(
            !host_lines
                .iter()
                .any(|l| l.contains("/orders-list") && l.contains("host api")),
            "not on a segment boundary: {host_lines:?}"
        );
        assert!(
            lines[0].contains("path_prefix /orders/admin (`orders-admin` GET, HEAD, POST: auth)")
                && lines[0].contains("other methods get 405")
                && lines[0].contains("path_prefix /orders (`orders`: public) never sees them"),
            "{}",
            lines[0]
        );
    }
}
