//! Per-key rate limiting. A route names policies; each policy derives a key from the request
//! (consumer, IP, header, claim, or a combination), checks the key's usage against every
//! limit (token bucket or sliding window, `local`), and admits the request only if every limit
//! of every policy has room. A rejected request
//! consumes no quota. Requests without a key are never lumped into one shared bucket: they are
//! refused or limited by client IP, as the policy says.

pub mod headers;
pub mod local;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::auth::Identity;
use crate::config::{Algorithm, KeyPart, Limit, MissingKey, OnStoreError, RateLimitConfig, Store};
use crate::observe::metrics;
use local::{Decision, LocalStore, Usage};
use redis::{RedisStore, StoreError, Window};

/// Where a compiled policy counts.
enum PolicyStore {
    /// Shared with the previous snapshot when the policy's windows are unchanged, so a reload
    /// does not hand every client a fresh quota.
    Local(Arc<LocalStore>),
    Redis(OnStoreError),
}

/// One limit with what the headers say about it, computed when the config is compiled so a
/// request only clones an `Arc` and a shared header value.
#[derive(Debug)]
pub struct LimitItem {
    pub limit: Limit,
    /// The item name in the headers: the policy name, or `policy-Ws` with several windows.
    pub name: Arc<str>,
    /// Its `RateLimit-Policy` entry: `"name";q=10;w=1`.
    pub policy_entry: HeaderValue,
}

pub struct Policy {
    pub name: String,
    key: Vec<KeyPart>,
    ipv6_prefix: u8,
    limits: Vec<LimitItem>,
    plans: Vec<(String, Vec<LimitItem>)>,
    missing_key: MissingKey,
    pub legacy_headers: bool,
    algorithm: Algorithm,
    store: PolicyStore,
}

impl Policy {
    /// What the policy counts by, as written in the configuration (`consumer`, `ip`,
    /// `header:x-tenant`, `claim:org`, joined by `+`).
    pub fn key_description(&self) -> String {
        self.key
            .iter()
            .map(|k| match k {
                KeyPart::Consumer => "consumer".to_string(),
                KeyPart::Ip => "ip".to_string(),
                KeyPart::Header(h) => format!("header:{h}"),
                KeyPart::Claim(c) => format!("claim:{c}"),
            })
            .collect::<Vec<_>>()
            .join("+")
    }
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
    pub item: Arc<str>,
    /// Its `RateLimit-Policy` entry (a cheap clone: shared bytes).
    pub policy_entry: HeaderValue,
    pub policy: usize,
    pub limit: Limit,
    pub remaining: u64,
    pub reset_secs: u64,
    pub exceeded: bool,
}

impl ItemState {
    fn new(policy: usize, spec: &LimitItem, usage: Usage) -> ItemState {
        ItemState {
            item: Arc::clone(&spec.name),
            policy_entry: spec.policy_entry.clone(),
            policy,
            limit: spec.limit,
            remaining: usage.remaining,
            // Whole seconds, rounded up: a client that waits this long is admitted.
            reset_secs: usage.reset.as_nanos().div_ceil(1_000_000_000).max(1) as u64,
            exceeded: usage.exceeded,
        }
    }
}

/// Why a request has no key.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// The consumer or a claim is missing: the client is not authenticated.
    Identity,
    /// A header part of the key is missing.
    Header,
    /// A header part of the key is given more than once.
    Repeated,
}

impl Policy {
    /// Compile `cfg`, keeping the local state of the same-named policy in `previous` when its
    /// algorithm, windows and size are unchanged.
    pub fn compile(cfg: &RateLimitConfig, previous: &[Policy]) -> Policy {
        let store = match cfg.store {
            Store::Redis { on_error } => PolicyStore::Redis(on_error),
            Store::Local => {
                let windows: Vec<_> = cfg
                    .limits
                    .iter()
                    .chain(cfg.plans.iter().flat_map(|(_, l)| l))
                    .map(|l| l.per)
                    .collect();
                let kept = previous.iter().find_map(|p| match &p.store {
                    PolicyStore::Local(s)
                        if p.name == cfg.name.value
                            && s.same_shape(cfg.algorithm, &windows, cfg.max_keys) =>
                    {
                        Some(Arc::clone(s))
                    }
                    _ => None,
                });
                let store = kept.unwrap_or_else(|| {
                    Arc::new(LocalStore::new(
                        cfg.algorithm,
                        &windows,
                        cfg.expected_keys,
                        cfg.max_keys,
                    ))
                });
                PolicyStore::Local(store)
            }
        };
        Policy {
            name: cfg.name.value.clone(),
            key: cfg.key.clone(),
            ipv6_prefix: cfg.ipv6_prefix,
            limits: named(&cfg.name.value, &cfg.limits),
            plans: cfg
                .plans
                .iter()
                .map(|(plan, l)| (plan.clone(), named(&cfg.name.value, l)))
                .collect(),
            missing_key: cfg.missing_key,
            legacy_headers: cfg.legacy_headers,
            algorithm: cfg.algorithm,
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
                KeyPart::Ip => ip.map(|ip| ip_key(ip, self.ipv6_prefix)).ok_or(Missing::Header),
                KeyPart::Header(h) => {
                    let mut values = req.headers.get_all(h).iter();
                    match (values.next(), values.next()) {
                        // The upstream would see both: which one was counted is ambiguous.
                        (Some(_), Some(_)) => return Err(Missing::Repeated),
                        (Some(v), None) => v
                            .to_str()
                            .ok()
                            .filter(|v| !v.is_empty())
                            .map(String::from)
                            .ok_or(Missing::Header),
                        (None, _) => Err(Missing::Header),
                    }
                }
            };
            match value {
                Ok(v) => key.push_str(&v),
                Err(missing) => match (self.missing_key, ip) {
                    (MissingKey::Ip, Some(ip)) => {
                        return Ok(format!("ip\u{1f}{}", ip_key(ip, self.ipv6_prefix)))
                    }
                    _ => return Err(missing),
                },
            }
        }
        Ok(key)
    }

    /// The limits for this consumer: its plan's, if the policy has one for it.
    fn limits_for(&self, id: Option<&Identity>) -> &[LimitItem] {
        id.and_then(|i| i.plan.as_deref())
            .and_then(|plan| self.plans.iter().find(|(p, _)| p == plan))
            .map_or(&self.limits, |(_, l)| l)
    }
}

/// The key of a client address: an IPv4-mapped IPv6 address as the IPv4 address it is (one
/// client, one bucket), and IPv6 by its network of `v6_prefix` bits.
pub fn ip_key(ip: IpAddr, v6_prefix: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            format!("{}/{bits}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Header item names: the policy name, or `policy-Ws` when it has several windows.
fn named(policy: &str, limits: &[Limit]) -> Vec<LimitItem> {
    limits
        .iter()
        .map(|l| {
            let name = if limits.len() == 1 {
                policy.to_string()
            } else {
                format!("{policy}-{}s", l.per.as_secs())
            };
            let entry = format!("\"{name}\";q={};w={}", l.requests, l.per.as_secs());
            LimitItem {
                limit: *l,
                // Policy names are checked to be `[A-Za-z0-9._-]`, so this always converts.
                policy_entry: HeaderValue::try_from(entry).unwrap_or(HeaderValue::from_static("")),
                name: name.into(),
            }
        })
        .collect()
}

/// The outcome for one request on a route with policies.
#[derive(Debug)]
pub enum Outcome {
    Allowed(Vec<ItemState>),
    Limited(Vec<ItemState>),
    NoKey {
        policy: usize,
        missing: Missing,
    },
    /// The shared store failed and a `store: redis` policy says `on_store_error: deny`.
    StoreUnavailable {
        retry_after: u64,
    },
}

/// Decide for the route's `policies` (indexes into `all`).
///
/// Local stores are asked first (no I/O): each checks its key's limits and counts the request
/// only if all have room, atomically. Only if every local policy admitted is the shared store
/// asked, once, for all of the route's `store: redis` limits, which it checks and counts
/// atomically too. A request refused anywhere is taken back out of the local stores that
/// counted it (also when the decision is abandoned during the Redis round trip): a refused
/// request consumes no quota.
pub async fn decide(
    policies: &[usize],
    all: &[Policy],
    redis: Option<&RedisStore>,
    id: Option<&Identity>,
    ip: Option<IpAddr>,
    req: &RequestHeader,
) -> Outcome {
    let mut keyed: Vec<(usize, &Policy, String)> = Vec::with_capacity(policies.len());
    for &pi in policies {
        let Some(policy) = all.get(pi) else { continue };
        match policy.key(id, ip, req) {
            Ok(key) => keyed.push((pi, policy, key)),
            Err(missing) => {
                count(policy, "missing_key");
                return Outcome::NoKey { policy: pi, missing };
            }
        }
    }
    let mut items = Vec::new();
    let mut reservation = Reservation::default();
    for (pi, policy, key) in &keyed {
        let PolicyStore::Local(store) = &policy.store else {
            continue;
        };
        let specs = policy.limits_for(id);
        let limits: Vec<Limit> = specs.iter().map(|s| s.limit).collect();
        let now = store.now();
        match store.acquire(key, &limits, now) {
            Decision::Decided(usages) => {
                let refused = usages.iter().any(|u| u.exceeded);
                items.extend(
                    specs
                        .iter()
                        .zip(usages)
                        .map(|(spec, u)| ItemState::new(*pi, spec, u)),
                );
                if refused {
                    break;
                }
                reservation
                    .held
                    .push((Arc::clone(store), key.as_str(), limits, now));
            }
            Decision::Full => {
                count(policy, "store_full");
                log_store_full(&policy.name);
                return Outcome::StoreUnavailable { retry_after: 1 };
            }
        }
    }
    let shared: Vec<&(usize, &Policy, String)> = keyed
        .iter()
        .filter(|(_, p, _)| matches!(p.store, PolicyStore::Redis(_)))
        .collect();
    let admitted_locally = !items.iter().any(|i| i.exceeded);
    let mut unavailable = None;
    if admitted_locally && !shared.is_empty() {
        match ask_shared_store(&shared, redis, id).await {
            Ok(states) => items.extend(states),
            Err(_) => unavailable = store_failed(&shared, redis),
        }
    }
    let limited = items.iter().any(|i| i.exceeded);
    if !limited && unavailable.is_none() {
        reservation.keep();
    }
    drop(reservation);
    if let Some(retry_after) = unavailable {
        return Outcome::StoreUnavailable { retry_after };
    }
    for (pi, policy, _) in &keyed {
        if items.iter().any(|i| i.policy == *pi) {
            let rejected = items.iter().any(|i| i.policy == *pi && i.exceeded);
            count(policy, if rejected { "reject" } else { "allow" });
        }
    }
    if limited {
        Outcome::Limited(items)
    } else {
        Outcome::Allowed(items)
    }
}

/// A full local store is logged at most once a minute per process.
fn log_store_full(policy: &str) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        log::warn!(
            "rate limit `{policy}`: the local store holds max_keys keys inside their windows; \
             new keys are refused (429) until some go idle (raise max_keys)"
        );
    }
}

/// The local stores that counted this request while the decision is pending. Dropped without
/// [`Reservation::keep`] (refused, or the future abandoned during the Redis round trip), it
/// takes the request back out of each.
#[derive(Default)]
struct Reservation<'a> {
    held: Vec<(Arc<LocalStore>, &'a str, Vec<Limit>, u64)>,
}

impl Reservation<'_> {
    fn keep(&mut self) {
        self.held.clear();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        for (store, key, limits, acquired) in &self.held {
            store.release(key, limits, *acquired);
        }
    }
}

/// Count the store failure per policy; `Some(Retry-After seconds)` when a policy says
/// `on_store_error: deny`.
fn store_failed(shared: &[&(usize, &Policy, String)], redis: Option<&RedisStore>) -> Option<u64> {
    let mut deny = false;
    for (_, policy, _) in shared {
        let denies = matches!(policy.store, PolicyStore::Redis(OnStoreError::Deny));
        count(
            policy,
            if denies {
                "store_error_deny"
            } else {
                "store_error_allow"
            },
        );
        deny |= denies;
    }
    let open_for = redis.map_or(Duration::from_secs(1), |r| r.config().breaker.open_for);
    deny.then(|| (open_for.as_millis().div_ceil(1000) as u64).max(1))
}

/// One round trip for every shared window of the route. `Err` when the store could not
/// decide (or, which validation prevents, there is no store).
async fn ask_shared_store(
    shared: &[&(usize, &Policy, String)],
    redis: Option<&RedisStore>,
    id: Option<&Identity>,
) -> Result<Vec<ItemState>, StoreError> {
    let store = redis.ok_or(StoreError::Refused("no redis section configured".into()))?;
    let mut windows = Vec::new();
    let mut names = Vec::new();
    // Policies counting by the same client key (the rule in a cluster) share one tag.
    let mut tags: Vec<(&str, String)> = Vec::with_capacity(1);
    for (pi, policy, key) in shared {
        let tag = match tags.iter().find(|(k, _)| *k == key.as_str()) {
            Some((_, tag)) => tag.clone(),
            None => {
                let tag = store.tag(key);
                tags.push((key.as_str(), tag.clone()));
                tag
            }
        };
        for spec in policy.limits_for(id) {
            windows.push(Window {
                key: store.key_with_tag(&policy.name, policy.algorithm, spec.limit.per, &tag),
                limit: spec.limit,
                algorithm: policy.algorithm,
            });
            names.push((*pi, spec));
        }
    }
    let states = store.check_and_record(&windows).await?;
    Ok(names
        .into_iter()
        .zip(states)
        .map(|((pi, spec), usage)| ItemState::new(pi, spec, usage))
        .collect())
}

fn count(policy: &Policy, decision: &str) {
    metrics::get()
        .ratelimit_decisions
        .with_label_values(&[&policy.name, decision])
        .inc();
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::config::decode::Spanned;
    use crate::config::redis_model::RedisAddr;
    use crate::config::yaml::Pos;
    use crate::config::{BreakerConfig, RedisConfig, RedisTopology};

    fn policy(name: &str, store: Store) -> RateLimitConfig {
        RateLimitConfig {
            name: Spanned {
                value: name.into(),
                pos: Pos { line: 1, col: 1 },
            },
            key: vec![KeyPart::Ip],
            limits: vec![Limit {
                requests: 1,
                per: Duration::from_secs(60),
                burst: 1,
            }],
            missing_key: MissingKey::Reject,
            store,
            plans: Vec::new(),
            expected_keys: 16,
            max_keys: 1000,
            algorithm: Algorithm::TokenBucket,
            legacy_headers: false,
            ipv6_prefix: 64,
        }
    }

    #[test]
    fn ip_keys_are_canonical_and_ipv6_keys_are_networks() {
        let key = |s: &str, prefix| ip_key(s.parse().unwrap(), prefix);
        assert_eq!(key("::ffff:10.0.0.1", 64), "10.0.0.1", "mapped IPv4 is IPv4");
        assert_eq!(key("10.0.0.1", 64), "10.0.0.1");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:bbbb::9", 64),
            "2001:db8:1:2::/64",
            "same /64, same key"
        );
        assert_eq!(key("2001:db8:1:2:bbbb::9", 128), "2001:db8:1:2:bbbb::9/128");
        assert_eq!(key("2001:db8:1:2:bbbb::9", 48), "2001:db8:1::/48");
    }

    /// A request whose decision is abandoned while Redis is being asked (the client went
    /// away, the task was cancelled) must not keep its local reservation: with a limit of 1,
    /// a leaked reservation would refuse the next request.
    #[tokio::test]
    async fn an_abandoned_decision_gives_its_local_reservation_back() {
        // Accepts connections, never answers.
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let redis = RedisStore::new(&RedisConfig {
            topology: RedisTopology::Single(RedisAddr {
                host: "127.0.0.1".into(),
                port,
                username: None,
                password: None,
                db: 0,
                tls: false,
            }),
            auth: Default::default(),
            tls: None,
            key_secret: None,
            timeout: Duration::from_secs(30),
            pool: 1,
            prefix: "t:".into(),
            breaker: BreakerConfig {
                failures: 5,
                open_for: Duration::from_secs(1),
            },
        });
        let all = [
            Policy::compile(&policy("local", Store::Local), &[]),
            Policy::compile(
                &policy(
                    "shared",
                    Store::Redis {
                        on_error: OnStoreError::Allow,
                    },
                ),
                &[],
            ),
        ];
        let req = crate::test_util::request_header("/", &[]);
        let ip = Some("10.0.0.1".parse().expect("ip"));
        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            decide(&[0, 1], &all, Some(&redis), None, ip, &req),
        )
        .await;
        assert!(abandoned.is_err(), "the silent Redis kept the decision pending");
        let next = decide(&[0], &all, Some(&redis), None, ip, &req).await;
        assert!(matches!(next, Outcome::Allowed(_)), "{next:?}");
        let after = decide(&[0], &all, Some(&redis), None, ip, &req).await;
        assert!(
            matches!(after, Outcome::Limited(_)),
            "the limit still holds: {after:?}"
        );
    }
}
