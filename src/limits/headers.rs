//! Rate-limit response headers per draft-ietf-httpapi-ratelimit-headers:
//! `RateLimit-Policy: "name";q=100;w=60` for every limit that applied, and
//! `RateLimit: "name";r=42;t=17` for the one closest to exhaustion. Optional legacy
//! `X-RateLimit-Limit/Remaining/Reset` carry the same three numbers for that limit.

use http::{HeaderName, HeaderValue};

use super::{ItemState, Policy};

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Headers for a response on a rate-limited route (allowed or refused). The policy entries
/// were built when the config was compiled; only the live numbers are written here, without
/// the formatting machinery (this runs on every admitted request).
pub fn headers(items: &[ItemState], policies: &[Policy]) -> Vec<(HeaderName, HeaderValue)> {
    let Some(binding) = binding(items) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(5);
    if let [only] = items {
        out.push((RATELIMIT_POLICY, only.policy_entry.clone()));
    } else {
        let mut list = Vec::with_capacity(items.len() * 32);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(item.policy_entry.as_bytes());
        }
        out.extend(value(list).map(|v| (RATELIMIT_POLICY, v)));
    }
    let mut live = Vec::with_capacity(binding.item.len() + 32);
    live.push(b'"');
    live.extend_from_slice(binding.item.as_bytes());
    live.extend_from_slice(b"\";r=");
    push_decimal(&mut live, binding.remaining);
    live.extend_from_slice(b";t=");
    push_decimal(&mut live, binding.reset_secs);
    out.extend(value(live).map(|v| (RATELIMIT, never_indexed(v))));
    if policies.get(binding.policy).is_some_and(|p| p.legacy_headers) {
        out.push((X_RATELIMIT_LIMIT, HeaderValue::from(binding.limit.requests)));
        for (name, n) in [
            (X_RATELIMIT_REMAINING, binding.remaining),
            (X_RATELIMIT_RESET, binding.reset_secs),
        ] {
            out.push((name, never_indexed(HeaderValue::from(n))));
        }
    }
    out
}

/// A value that changes with every response: HPACK would only fill an HTTP/2 connection's
/// header table with it (and compare each new one with the old); it goes as a literal.
fn never_indexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// Names from the config and numbers: always a valid header value.
fn value(bytes: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes)).ok()
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The limit closest to exhaustion: an exceeded one first, then the fewest remaining, then
/// the latest reset.
fn binding(items: &[ItemState]) -> Option<&ItemState> {
    items
        .iter()
        .max_by_key(|i| (i.exceeded, std::cmp::Reverse(i.remaining), i.reset_secs))
}

/// Seconds a refused client should wait: no earlier than the latest reset of an exceeded limit.
pub fn retry_after(items: &[ItemState]) -> u64 {
    items
        .iter()
        .filter(|i| i.exceeded)
        .map(|i| i.reset_secs)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// The `violated-policies` member of the 429 problem body.
pub fn violated(items: &[ItemState]) -> String {
    let names: Vec<String> = items
        .iter()
        .filter(|i| i.exceeded)
        .map(|i| format!("\"{}\"", i.item))
        .collect();
    format!("\"violated-policies\":[{}]", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limit;
    use std::time::Duration;

    fn item(name: &str, q: u64, w: u64, r: u64, t: u64, exceeded: bool) -> ItemState {
        ItemState {
            item: name.into(),
            policy_entry: HeaderValue::try_from(format!("\"{name}\";q={q};w={w}")).expect("valid"),
            policy: 0,
            limit: Limit {
                requests: q,
                per: Duration::from_secs(w),
                burst: q,
            },
            remaining: r,
            reset_secs: t,
            exceeded,
        }
    }

    #[test]
    fn formats_draft_headers() {
        let items = [
            item("p-1s", 10, 1, 7, 1, false),
            item("p-3600s", 1000, 3600, 3, 1200, false),
        ];
        let h = headers(&items, &[]);
        assert_eq!(h[0].0, "ratelimit-policy");
        assert_eq!(h[0].1, "\"p-1s\";q=10;w=1, \"p-3600s\";q=1000;w=3600");
        assert_eq!(h[1].0, "ratelimit");
        assert_eq!(h[1].1, "\"p-3600s\";r=3;t=1200");
        // The live numbers go unindexed over HTTP/2; the policy (repeated) is indexed.
        assert!(h[1].1.is_sensitive() && !h[0].1.is_sensitive());
        let one = headers(&items[..1], &[]);
        assert_eq!(one[0].1, "\"p-1s\";q=10;w=1");
        assert_eq!(one[1].1, "\"p-1s\";r=7;t=1");
        let zero = headers(&[item("z", 18446744073709551615, 1, 0, 0, true)], &[]);
        assert_eq!(zero[1].1, "\"z\";r=0;t=0");
        let refused = [item("p", 10, 1, 0, 1, true), item("q", 5, 60, 0, 40, true)];
        assert_eq!(retry_after(&refused), 40);
        assert_eq!(violated(&refused), "\"violated-policies\":[\"p\",\"q\"]");
    }
}
