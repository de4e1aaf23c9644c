//! Per-key rate limiting. A route names policies; each policy derives a key from the request
//! (consumer, IP, header, claim, or a combination), estimates the key's usage in every window,
//! and admits the request only if every window of every policy has room. A rejected request
//! consumes no quota. Requests without a key are never lumped into one shared bucket: they are
//! refused or limited by client IP, as the policy says.

pub mod headers;
pub mod local;

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::auth::Identity;
use crate::config::{KeyPart, Limit, MissingKey, RateLimitConfig};
use crate::observe::metrics;
use local::LocalWindows;

pub struct Policy {
    pub name: String,
    key: Vec<KeyPart>,
    /// Each limit with its header item name (computed once, not per request).
    limits: Vec<(Limit, String)>,
    plans: Vec<(String, Vec<(Limit, String)>)>,
    missing_key: MissingKey,
    pub legacy_headers: bool,
    store: LocalWindows,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).finish()
    }
}

/// One limit's state after a decision, for headers and the 429 body.
#[derive(Debug, Clone)]
pub struct ItemState {
    /// The policy item name used in the headers.
    pub item: String,
    pub policy: usize,
    pub limit: Limit,
    pub remaining: u64,
    pub reset_secs: u64,
    pub exceeded: bool,
}

/// Why a request has no key.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// The consumer or a claim is missing: the client is not authenticated.
    Identity,
    /// A header part of the key is missing.
    Header,
}

impl Policy {
    pub fn compile(cfg: &RateLimitConfig) -> Policy {
        let windows: Vec<_> = cfg
            .limits
            .iter()
            .chain(cfg.plans.iter().flat_map(|(_, l)| l))
            .map(|l| l.per)
            .collect();
        let store = LocalWindows::new(&windows, cfg.expected_keys);
        log::debug!(
            "rate limit `{}`: local store uses {} bytes",
            cfg.name.value,
            store.memory_bytes()
        );
        Policy {
            name: cfg.name.value.clone(),
            key: cfg.key.clone(),
            limits: named(&cfg.name.value, &cfg.limits),
            plans: cfg
                .plans
                .iter()
                .map(|(plan, l)| (plan.clone(), named(&cfg.name.value, l)))
                .collect(),
            missing_key: cfg.missing_key,
            legacy_headers: cfg.legacy_headers,
            store,
        }
    }

    /// The key for this request, or why there is none.
    fn key(&self, id: Option<&Identity>, ip: Option<IpAddr>, req: &RequestHeader) -> Result<String, Missing> {
        let mut key = String::new();
        for (i, part) in self.key.iter().enumerate() {
            if i > 0 {
                key.push('\u{1f}');
            }
            let value = match part {
                KeyPart::Consumer => id.map(|i| i.consumer.clone()).ok_or(Missing::Identity),
                KeyPart::Claim(c) => id
                    .and_then(|i| i.claim(c))
                    .map(String::from)
                    .ok_or(Missing::Identity),
                KeyPart::Ip => ip.map(|ip| ip.to_string()).ok_or(Missing::Header),
                KeyPart::Header(h) => req
                    .headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .ok_or(Missing::Header),
            };
            match value {
                Ok(v) => key.push_str(&v),
                Err(missing) => match (self.missing_key, ip) {
                    (MissingKey::Ip, Some(ip)) => return Ok(format!("ip\u{1f}{ip}")),
                    _ => return Err(missing),
                },
            }
        }
        Ok(key)
    }

    /// The limits for this consumer: its plan's, if the policy has one for it.
    fn limits_for(&self, id: Option<&Identity>) -> &[(Limit, String)] {
        id.and_then(|i| i.plan.as_deref())
            .and_then(|plan| self.plans.iter().find(|(p, _)| p == plan))
            .map_or(&self.limits, |(_, l)| l)
    }
}

/// Header item names: the policy name, or `policy-Ws` when it has several windows.
fn named(policy: &str, limits: &[Limit]) -> Vec<(Limit, String)> {
    limits
        .iter()
        .map(|l| {
            let name = if limits.len() == 1 {
                policy.to_string()
            } else {
                format!("{policy}-{}s", l.per.as_secs())
            };
            (*l, name)
        })
        .collect()
}

/// The outcome for one request on a route with policies.
#[derive(Debug)]
pub enum Outcome {
    Allowed(Vec<ItemState>),
    Limited(Vec<ItemState>),
    NoKey { policy: usize, missing: Missing },
}

/// Decide for the route's `policies` (indexes into `all`).
pub fn decide(
    policies: &[usize],
    all: &[Policy],
    id: Option<&Identity>,
    ip: Option<IpAddr>,
    req: &RequestHeader,
) -> Outcome {
    let mut items = Vec::new();
    let mut keys = Vec::with_capacity(policies.len());
    for &pi in policies {
        let Some(policy) = all.get(pi) else { continue };
        let key = match policy.key(id, ip, req) {
            Ok(k) => k,
            Err(missing) => {
                metrics::get()
                    .ratelimit_decisions
                    .with_label_values(&[&policy.name, "missing_key"])
                    .inc();
                return Outcome::NoKey { policy: pi, missing };
            }
        };
        for (limit, item) in policy.limits_for(id) {
            let usage = policy.store.usage(&key, limit.per);
            let room = limit.requests as f64 - usage.estimate;
            items.push(ItemState {
                item: item.clone(),
                policy: pi,
                limit: *limit,
                // After admitting this request.
                remaining: (room - 1.0).max(0.0).floor() as u64,
                reset_secs: usage.reset_secs,
                exceeded: room < 1.0,
            });
        }
        keys.push((pi, key));
    }
    let limited = items.iter().any(|i| i.exceeded);
    for (pi, key) in &keys {
        let Some(policy) = all.get(*pi) else { continue };
        let decision = if limited && items.iter().any(|i| i.policy == *pi && i.exceeded) {
            "reject"
        } else {
            "allow"
        };
        metrics::get()
            .ratelimit_decisions
            .with_label_values(&[&policy.name, decision])
            .inc();
        if !limited {
            policy.store.record(key);
        }
    }
    if limited {
        Outcome::Limited(items)
    } else {
        Outcome::Allowed(items)
    }
}
