//! What `portcullis check` says about route precedence where it matters for security: a more
//! specific path whose routes authenticate differently from the path that encloses it.
//!
//! The deciding-path rule (see `table.rs`) means such a path takes every request under it, so
//! the enclosing routes never see them; an operator who meant the opposite should learn it
//! from `check`, not from an incident.

use std::collections::HashMap;
use std::rc::Rc;

use super::normalize::has_segment_prefix;
use super::overlap::{intersects, Pattern};
use super::table::{HostGroup, RouteTable, Slot};
use super::Route;

/// What one slot's routes say, computed once per slot however many slots it encloses (a
/// `/` with thousands of routes enclosing thousands of prefixes stays linear).
struct Described {
    /// The distinct authentications of the slot's routes, sorted.
    auths: Vec<String>,
    /// `` `name` METHODS: auth `` for each route, joined (for the report line).
    routes: String,
}

struct Descriptions<'t, F> {
    table: &'t RouteTable,
    auth_of: F,
    /// By host group (address) and slot.
    memo: HashMap<(usize, Slot<'t>), Rc<Described>>,
}

impl<'t, F: Fn(&Route) -> String> Descriptions<'t, F> {
    fn get(&mut self, group: &'t HostGroup, slot: Slot<'t>, ids: &[usize]) -> Rc<Described> {
        let key = (std::ptr::from_ref(group) as usize, slot);
        if let Some(d) = self.memo.get(&key) {
            return Rc::clone(d);
        }
        let table = self.table;
        let auth_of = &self.auth_of;
        let per_route: Vec<(usize, String)> =
            ids.iter().map(|&id| (id, auth_of(&table.routes[id]))).collect();
        let mut auths: Vec<String> = per_route.iter().map(|(_, a)| a.clone()).collect();
        auths.sort();
        auths.dedup();
        let routes = per_route
            .iter()
            .map(|(id, auth)| {
                let r = &table.routes[*id];
                let methods = if r.methods.is_any() {
                    String::new()
                } else {
                    format!(" {}", r.methods.allow_header())
                };
                format!("`{}`{methods}: {auth}", r.name)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let d = Rc::new(Described { auths, routes });
        self.memo.insert(key, Rc::clone(&d));
        d
    }
}

/// One line per overlap, sorted; `auth_of` describes a route's authentication.
pub fn auth_overlaps(table: &RouteTable, auth_of: impl Fn(&Route) -> String) -> Vec<String> {
    let mut described = Descriptions {
        table,
        auth_of,
        memo: HashMap::new(),
    };
    let any_group = table.any_host_group();
    // The routes for every host, by path, to find those a host's own routes hide; with, for
    // each, where the next run of a different authentication starts (to skip a run at once).
    // (Templates are compared in `template_overlaps`.)
    let mut any_host: Vec<(Slot<'_>, &[usize])> = any_group
        .slots()
        .filter(|(s, _)| !matches!(s, Slot::Template(_)))
        .collect();
    any_host.sort_by(|(a, _), (b, _)| a.path().cmp(b.path()));
    let any_auths: Vec<Rc<Described>> = any_host
        .iter()
        .map(|&(slot, ids)| described.get(any_group, slot, ids))
        .collect();
    let mut next_other = vec![any_host.len(); any_host.len()];
    for i in (0..any_host.len().saturating_sub(1)).rev() {
        next_other[i] = if any_auths[i].auths == any_auths[i + 1].auths {
            next_other[i + 1]
        } else {
            i + 1
        };
    }
    let mut lines = Vec::new();
    for (host, group) in table.all_groups() {
        for (slot, ids) in group.slots().filter(|(s, _)| !matches!(s, Slot::Template(_))) {
            let enclosing = group.enclosing(slot).map(|(s, ids)| (group, s, ids)).or_else(|| {
                // A host's routes also take its requests from the routes for every host.
                host.and(covering(any_group, slot))
                    .map(|(s, ids)| (any_group, s, ids))
            });
            let Some((outer_group, outer_slot, outer_ids)) = enclosing else {
                continue;
            };
            let inner = described.get(group, slot, ids);
            let outer = described.get(outer_group, outer_slot, outer_ids);
            if inner.auths == outer.auths {
                continue;
            }
            let on = host.map(|h| format!("host {h}, ")).unwrap_or_default();
            let restricted = ids.iter().all(|&id| !table.routes[id].methods.is_any());
            let methods = if restricted {
                "; other methods get 405 there"
            } else {
                ""
            };
            let scope = if slot.is_prefix() {
                "every request under it"
            } else {
                "every request for it"
            };
            lines.push(format!(
                "precedence: {on}{} ({}) decides {scope}{methods}; {} ({}) never sees them",
                slot.describe(),
                inner.routes,
                outer_slot.describe(),
                outer.routes
            ));
        }
        // Hosts come first: a host's route takes its requests even under a longer path that
        // routes for every host protect differently.
        let Some(host) = host else { continue };
        for (slot, ids) in group.slots() {
            let Slot::Prefix(prefix) = slot else { continue };
            let outer = described.get(group, slot, ids);
            let mut at = any_host.partition_point(|(s, _)| s.path() < prefix);
            while let Some((hidden, _)) = any_host.get(at).filter(|(s, _)| s.path().starts_with(prefix)) {
                let inner = &any_auths[at];
                if inner.auths == outer.auths {
                    at = next_other[at];
                    continue;
                }
                if *hidden != slot && has_segment_prefix(hidden.path(), prefix) {
                    lines.push(format!(
                        "precedence: host {host}, {} ({}) decides every request under it for that \
                         host, {} ({}) included: hosts come before paths",
                        slot.describe(),
                        outer.routes,
                        hidden.describe(),
                        inner.routes
                    ));
                }
                at += 1;
            }
        }
    }
    template_overlaps(table, &mut described, &mut lines);
    lines.sort();
    lines.dedup();
    lines
}

/// The slot as segment matchers.
fn pattern<'a>(slot: Slot<'a>) -> Pattern<'a> {
    match slot {
        Slot::Exact(p) => Pattern::literal(p, false),
        Slot::Prefix(p) => Pattern::literal(p, true),
        Slot::Template(t) => t.pattern(),
    }
}

/// A slot's first segment when it is literal (`None`: a capture, `*`, or `/` itself, which
/// may meet any path).
fn first_literal(slot: Slot<'_>) -> Option<&str> {
    match slot {
        Slot::Template(t) => t.first_literal(),
        Slot::Exact(p) | Slot::Prefix(p) => p
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|s| !s.is_empty()),
    }
}

/// Overlaps where a template is involved: a template and another path of the same host group
/// that both match some request, authenticating differently (the more specific one takes those
/// requests: `/users/me` public inside `/users/{id}` protected, or `/v1` public taking
/// `/v1/admin` from `/{v:v[0-9]+}/admin`); and a host's path that takes requests a template
/// for every host would match, or the reverse. Literal-only overlaps are reported above.
fn template_overlaps<'t, F: Fn(&Route) -> String>(
    table: &'t RouteTable,
    described: &mut Descriptions<'t, F>,
    lines: &mut Vec<String>,
) {
    let any_group = table.any_host_group();
    let any_slots: Vec<(Slot<'_>, &[usize])> = any_group.slots().collect();
    let any_templates: Vec<(Slot<'_>, &[usize])> = any_slots
        .iter()
        .copied()
        .filter(|(s, _)| matches!(s, Slot::Template(_)))
        .collect();
    for (host, group) in table.all_groups() {
        let slots: Vec<(Slot<'_>, &[usize])> = group.slots().collect();
        // By first literal segment; `None` holds what may meet any path.
        let mut by_first: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
        for (i, (s, _)) in slots.iter().enumerate() {
            by_first.entry(first_literal(*s)).or_default().push(i);
        }
        let open = by_first.get(&None).cloned().unwrap_or_default();
        for (i, &(slot, ids)) in slots.iter().enumerate() {
            let Slot::Template(t) = slot else { continue };
            let candidates: Vec<usize> = match t.first_literal() {
                Some(f) => open
                    .iter()
                    .chain(by_first.get(&Some(f)).into_iter().flatten())
                    .copied()
                    .collect(),
                None => (0..slots.len()).collect(),
            };
            let mine = pattern(slot);
            for j in candidates {
                let (other, other_ids) = slots[j];
                // A pair of templates once; a template and a literal path from the template.
                if j == i || (matches!(other, Slot::Template(_)) && j < i) {
                    continue;
                }
                if !intersects(&mine, &pattern(other)) {
                    continue;
                }
                let a = described.get(group, slot, ids);
                let b = described.get(group, other, other_ids);
                if a.auths == b.auths {
                    continue;
                }
                let ((win, w), (lose, l)) = if slot.more_specific_than(&other) {
                    ((slot, a), (other, b))
                } else {
                    ((other, b), (slot, a))
                };
                let on = host.map(|h| format!("host {h}, ")).unwrap_or_default();
                lines.push(format!(
                    "precedence: {on}{} ({}) decides the requests it shares with {} ({}), which never sees them",
                    win.describe(),
                    w.routes,
                    lose.describe(),
                    l.routes
                ));
            }
        }
        // Hosts come first: a host's path takes its requests from every route for every host
        // that also matches them.
        let Some(host) = host else { continue };
        let pairs = slots.iter().flat_map(|&(slot, ids)| {
            // Every host path against the templates for every host; a host template against
            // the literal paths for every host too.
            let others: &[(Slot<'_>, &[usize])] = if matches!(slot, Slot::Template(_)) {
                &any_slots
            } else {
                &any_templates
            };
            others.iter().map(move |&other| ((slot, ids), other))
        });
        for ((slot, ids), (other, other_ids)) in pairs {
            {
                if !intersects(&pattern(slot), &pattern(other)) {
                    continue;
                }
                let a = described.get(group, slot, ids);
                let b = described.get(any_group, other, other_ids);
                if a.auths != b.auths {
                    lines.push(format!(
                        "precedence: host {host}, {} ({}) decides the requests it shares with {} ({}) for that host: hosts come before paths",
                        slot.describe(),
                        a.routes,
                        other.describe(),
                        b.routes
                    ));
                }
            }
        }
    }
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
