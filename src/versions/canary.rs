//! Weighted canary splits of one version across upstreams. A client is placed by a stable
//! hash of its sticky value (consumer, IP or a header), salted with the route and version, so
//! it stays on the same side of the split on every request, every gateway instance and
//! across restarts, while different routes place it independently.

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use crate::auth::Identity;
use crate::config::Sticky;

/// Hundredths of a percent: the resolution of split shares.
pub const BUCKETS: u64 = 10_000;

#[derive(Debug)]
pub struct Split {
    /// The version's own pool, used for the share no split claims.
    pub main: usize,
    /// `(pool, cumulative share in buckets)`, in configuration order.
    pub shares: Vec<(usize, u32)>,
    pub sticky: Sticky,
    pub override_header: Option<HeaderName>,
    pub salt: String,
}

impl Split {
    /// The pool for this request.
    pub fn choose(&self, headers: &HeaderMap, identity: Option<&Identity>, ip: Option<IpAddr>) -> usize {
        let Some(&(first, _)) = self.shares.first() else {
            return self.main;
        };
        if let Some(name) = &self.override_header {
            match headers.get(name).map(|v| v.as_bytes()) {
                Some(b"on") => return first,
                Some(b"off") => return self.main,
                _ => {}
            }
        }
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        let ip_text = || Cow::Owned(ip.map(|ip| ip.to_canonical().to_string()).unwrap_or_default());
        let value: Cow<'_, str> = match &self.sticky {
            Sticky::Consumer => identity.map_or_else(ip_text, |i| Cow::Borrowed(i.consumer.as_str())),
            Sticky::Ip => ip_text(),
            Sticky::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map_or_else(ip_text, Cow::Borrowed),
        };
        let bucket = bucket(&self.salt, &value);
        self.shares
            .iter()
            .find(|(_, upto)| bucket < u64::from(*upto))
            .map_or(self.main, |(pool, _)| *pool)
    }
}

/// A stable bucket in `0..BUCKETS`: FNV-1a over salt and value, then a SplitMix64 finish so
/// nearby inputs spread evenly. Not a secret: it only has to be stable and uniform.
pub fn bucket(salt: &str, value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0u8]).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_uniform() {
        assert_eq!(bucket("users/2", "alice"), bucket("users/2", "alice"));
        let in_five_percent = (0..100_000)
            .filter(|i| bucket("users/2", &format!("client-{i}")) < 500)
            .count();
        assert!((4_700..=5_300).contains(&in_five_percent), "{in_five_percent}");
    }

    #[test]
    fn override_header_and_stickiness() {
        let split = Split {
            main: 0,
            shares: vec![(1, 5000)],
            sticky: Sticky::Header(HeaderName::from_static("x-user")),
            override_header: Some(HeaderName::from_static("x-canary")),
            salt: "r/2".into(),
        };
        let mut h = HeaderMap::new();
        h.insert("x-canary", "on".parse().unwrap());
        assert_eq!(split.choose(&h, None, None), 1);
        h.insert("x-canary", "off".parse().unwrap());
        assert_eq!(split.choose(&h, None, None), 0);
        h.remove("x-canary");
        h.insert("x-user", "bob".parse().unwrap());
        let first = split.choose(&h, None, None);
        assert!((0..50).all(|_| split.choose(&h, None, None) == first));
    }
}
