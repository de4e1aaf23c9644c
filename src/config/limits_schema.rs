//! Decoding `rate_limits:` policies.

use std::time::Duration;

use http::HeaderName;

use super::decode::{index, named_items, Fields, Spanned};
use super::diag::Problems;
use super::limits_model::*;
use super::yaml::Node;

/// The longest window: a yearly quota fits; Redis expiries stay far from overflow.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// Windows per policy (and per plan): bounds the work and the Redis reply per decision.
pub const MAX_LIMITS: usize = 16;
/// The largest `requests` and `burst`: keeps every product in the stores' arithmetic far from
/// overflow.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

const FIELDS: &[&str] = &[
    "key",
    "limits",
    "missing_key",
    "store",
    "on_store_error",
    "plans",
    "expected_keys",
    "max_keys",
    "algorithm",
    "legacy_headers",
    "ipv6_prefix",
];

/// `redis_declared`: whether the document has a `redis:` section (even a broken one), which
/// `store: redis` needs.
pub fn decode_rate_limits(
    node: &Node,
    redis_declared: bool,
    p: &mut Problems,
) -> (Vec<RateLimitConfig>, Vec<String>) {
    named_items(
        node,
        "rate_limits",
        "rate limit",
        FIELDS,
        p,
        |name, node, path, p| decode_policy(name, node, path, redis_declared, p),
    )
}

fn decode_policy(
    name: Spanned<String>,
    node: &Node,
    path: &str,
    redis_declared: bool,
    p: &mut Problems,
) -> Option<RateLimitConfig> {
    let f = Fields::new(node, path, FIELDS, p)?;
    let key = decode_key(&f, p);
    let algorithm = f.choice(
        "algorithm",
        &[
            ("token_bucket", Algorithm::TokenBucket),
            ("sliding_window", Algorithm::SlidingWindow),
        ],
        Algorithm::TokenBucket,
        p,
    )?;
    let limits = match f.node("limits") {
        Some(n) => decode_limits(n, &f.path_of("limits"), algorithm, p),
        None => {
            p.add(f.pos(), &f.path_of("limits"), "missing required field `limits`");
            None
        }
    };
    let missing_key = f.choice(
        "missing_key",
        &[("reject", MissingKey::Reject), ("ip", MissingKey::Ip)],
        MissingKey::Reject,
        p,
    );
    let store = decode_store(&f, redis_declared, p);
    let plans = match f.node("plans") {
        None => Some(Vec::new()),
        Some(Node::Map { entries, .. }) => {
            let decoded: Vec<Option<(String, Vec<Limit>)>> = entries
                .iter()
                .map(|(k, v)| {
                    let plan = super::decode::scalar(k, &f.path_of("plans"), "a plan name", p)?.to_string();
                    let limits = decode_limits(v, &format!("{}.{plan}", f.path_of("plans")), algorithm, p)?;
                    Some((plan, limits))
                })
                .collect();
            decoded.into_iter().collect()
        }
        Some(other) => {
            p.add(
                other.pos(),
                &f.path_of("plans"),
                format!("expected a mapping of plan names, found {}", other.kind()),
            );
            None
        }
    };
    let expected_keys = f.ranged("expected_keys", 1..=50_000_000, 10_000usize, p);
    let max_keys = f.ranged("max_keys", 1..=50_000_000, 1_000_000usize, p);
    let ipv6_prefix = f.ranged("ipv6_prefix", 1..=128, 64u8, p);
    Some(RateLimitConfig {
        name,
        key: key?,
        limits: limits?,
        missing_key: missing_key?,
        store: store?,
        plans: plans?,
        algorithm,
        expected_keys: expected_keys.min(max_keys),
        max_keys,
        legacy_headers: f.or("legacy_headers", false, p),
        ipv6_prefix,
    })
}

/// `store` and `on_store_error`.
fn decode_store(f: &Fields<'_>, redis_declared: bool, p: &mut Problems) -> Option<Store> {
    let on_error = f.choice(
        "on_store_error",
        &[("allow", OnStoreError::Allow), ("deny", OnStoreError::Deny)],
        OnStoreError::Allow,
        p,
    );
    let store = f.opt::<Spanned<String>>("store", p);
    match store.as_ref().map(|s| s.value.as_str()) {
        None | Some("local") => {
            if f.has("on_store_error") {
                p.add(
                    f.pos_of("on_store_error"),
                    &f.path_of("on_store_error"),
                    "on_store_error applies to store: redis only (a local store cannot fail)",
                );
            }
            Some(Store::Local)
        }
        Some("redis") if !redis_declared => {
            p.add(
                f.pos_of("store"),
                &f.path_of("store"),
                "store: redis needs a top-level `redis:` section such as redis: { url: \"redis://127.0.0.1:6379\" }",
            );
            None
        }
        Some("redis") => Some(Store::Redis { on_error: on_error? }),
        Some(other) => {
            p.add(
                f.pos_of("store"),
                &f.path_of("store"),
                format!("unknown value `{other}`; expected local or redis"),
            );
            None
        }
    }
}

/// `key: consumer` or a list for a composite key.
fn decode_key(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<KeyPart>> {
    let parts: Vec<Spanned<String>> = match f.node("key") {
        None => {
            p.add(
                f.pos(),
                &f.path_of("key"),
                "missing required field `key` (consumer, ip, header:NAME or claim:NAME)",
            );
            return None;
        }
        Some(Node::Seq { .. }) => f.req("key", p)?,
        Some(_) => vec![f.req("key", p)?],
    };
    let decoded: Vec<Option<KeyPart>> = parts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let part = match s.value.as_str() {
                "consumer" => Some(KeyPart::Consumer),
                "ip" => Some(KeyPart::Ip),
                v => match v.split_once(':') {
                    Some(("header", h)) => HeaderName::from_bytes(h.as_bytes()).ok().map(KeyPart::Header),
                    Some(("claim", c)) if !c.is_empty() => Some(KeyPart::Claim(c.to_string())),
                    _ => None,
                },
            };
            if part.is_none() {
                p.add(
                    s.pos,
                    &index(&f.path_of("key"), i),
                    format!("`{}`: expected consumer, ip, header:NAME or claim:NAME", s.value),
                );
            }
            part
        })
        .collect();
    let parts: Vec<KeyPart> = decoded.into_iter().collect::<Option<_>>()?;
    if parts.is_empty() {
        p.add(f.pos(), &f.path_of("key"), "needs at least one key part");
        return None;
    }
    Some(parts)
}

fn decode_limits(node: &Node, path: &str, algorithm: Algorithm, p: &mut Problems) -> Option<Vec<Limit>> {
    let Node::Seq { items, .. } = node else {
        p.add(
            node.pos(),
            path,
            format!(
                "expected a list such as [{{ requests: 10, per: 1s }}], found {}",
                node.kind()
            ),
        );
        return None;
    };
    if items.is_empty() {
        p.add(node.pos(), path, "needs at least one limit");
        return None;
    }
    if items.len() > MAX_LIMITS {
        p.add(node.pos(), path, format!("at most {MAX_LIMITS} limits"));
        return None;
    }
    let decoded: Vec<Option<Limit>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = index(path, i);
            let f = Fields::new(item, &path, &["requests", "per", "burst"], p)?;
            let requests: Option<u64> = f.req("requests", p);
            let per: Option<Duration> = f.req("per", p);
            let burst: Option<u64> = f.opt("burst", p);
            let (requests, per) = (requests?, per?);
            if requests == 0 || requests > MAX_REQUESTS {
                p.add(
                    f.pos(),
                    &f.path_of("requests"),
                    format!("must be from 1 to {MAX_REQUESTS}"),
                );
                return None;
            }
            if burst.is_some() && algorithm != Algorithm::TokenBucket {
                p.add(
                    f.pos_of("burst"),
                    &f.path_of("burst"),
                    "burst applies to algorithm: token_bucket only",
                );
                return None;
            }
            if burst.is_some_and(|b| b == 0 || b > MAX_REQUESTS) {
                p.add(
                    f.pos_of("burst"),
                    &f.path_of("burst"),
                    format!("must be from 1 to {MAX_REQUESTS}"),
                );
                return None;
            }
            if per < Duration::from_secs(1) || per > MAX_WINDOW || per.subsec_millis() != 0 {
                p.add(
                    f.pos_of("per"),
                    &f.path_of("per"),
                    "must be a whole number of seconds, from 1s to 8784h (366 days)",
                );
                return None;
            }
            let burst = burst.unwrap_or(requests);
            // How far ahead a full bucket's arrival time runs; bounded so no store's clock
            // arithmetic nears its limits.
            if u128::from(burst) * per.as_secs() as u128 > u128::from(requests) * MAX_WINDOW.as_secs() as u128
            {
                p.add(
                    f.pos_of("burst"),
                    &f.path_of("burst"),
                    "burst × per / requests must be at most 8784h (366 days)",
                );
                return None;
            }
            Some(Limit { requests, per, burst })
        })
        .collect();
    let limits: Vec<Limit> = decoded.into_iter().collect::<Option<_>>()?;
    let mut windows: Vec<Duration> = limits.iter().map(|l| l.per).collect();
    windows.sort();
    windows.dedup();
    if windows.len() != limits.len() {
        p.add(node.pos(), path, "two limits use the same `per` window");
        return None;
    }
    Some(limits)
}
