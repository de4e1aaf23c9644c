//! What may be stored and for how long (RFC 9111 §3 and §4.2), from the response as it will
//! reach clients and the route's `cache:` block. `Cache-Control` is parsed by pingora-cache.

use std::time::{Duration, SystemTime};

use http::header::{
    AGE, CONTENT_ENCODING, DATE, IF_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora_cache::cache_control::CacheControl;

use crate::config::cache_schema::RouteCacheConfig;

/// How long a storable response stays fresh and may then be served stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub fresh: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// The `Age` it arrived with.
    pub initial_age: Duration,
    /// The origin said `public`: consumers may share it where the route allows.
    pub public: bool,
}

/// Why a request must bypass the store (neither answered from it nor filling it), if it must.
pub fn request_bypass(cfg: &RouteCacheConfig, req: &RequestHeader) -> Option<&'static str> {
    if !cfg.methods.contains(&req.method) {
        return Some("method");
    }
    // Ranges and preconditions other than the validators the store answers go to the origin.
    for name in [RANGE, IF_RANGE, IF_MATCH, IF_UNMODIFIED_SINCE] {
        if req.headers.contains_key(name) {
            return Some("conditional");
        }
    }
    None
}

/// The request asked that nothing of this exchange be stored (RFC 9111 §5.2.1.5).
pub fn request_no_store(req: &RequestHeader) -> bool {
    CacheControl::from_req_headers(req).is_some_and(|cc| cc.no_store())
}

/// The origin's `Vary` as request header names, or `Err` when it varies on something the
/// route does not allow (or `*`): such a response is not stored. A coded body always varies
/// on `Accept-Encoding`, whether or not the origin said so: a gzip body must never reach a
/// client that did not accept it.
pub fn variance(cfg: &RouteCacheConfig, head: &ResponseHeader) -> Result<Vec<HeaderName>, &'static str> {
    let mut names: Vec<HeaderName> = Vec::new();
    for value in head.headers.get_all(VARY) {
        let Ok(text) = value.to_str() else {
            return Err("unreadable Vary");
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Err("Vary: *");
            }
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                return Err("unreadable Vary");
            };
            if !cfg.vary.contains(&name) {
                return Err("Vary names a header outside cache.vary");
            }
            names.push(name);
        }
    }
    let coded = head.headers.get_all(CONTENT_ENCODING).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .map(|c| c.trim_ascii())
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
    });
    if coded {
        names.push(http::header::ACCEPT_ENCODING);
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Ok(names)
}

/// Whether `head` may be stored, and for how long. `authenticated`: the request carried
/// credentials (the route authenticates it, or it has `Authorization` or `Cookie`): only an
/// answer the origin made shareable (`public`, `s-maxage`) is stored then (§3.5; §3.5 also
/// allows `must-revalidate`, which says nothing about who may share it: not here).
pub fn lifetime(
    cfg: &RouteCacheConfig,
    head: &ResponseHeader,
    authenticated: bool,
    now: SystemTime,
) -> Result<Lifetime, &'static str> {
    if !cfg.statuses.contains(&head.status.as_u16()) {
        return Err("status");
    }
    if head.headers.contains_key(SET_COOKIE) {
        return Err("Set-Cookie");
    }
    let cc = CacheControl::from_resp_headers(head);
    if cc.as_ref().is_some_and(|c| c.no_store() || c.private()) {
        return Err("Cache-Control: private or no-store");
    }
    let s_maxage = cc.as_ref().is_some_and(|c| matches!(c.s_maxage(), Ok(Some(_))));
    let shareable = s_maxage || cc.as_ref().is_some_and(|c| c.public());
    if authenticated && !shareable {
        return Err("authenticated without public or s-maxage");
    }
    let date = http_date(&head.headers, DATE);
    // RFC 9111 §4.2.3: the larger of the age it says it has and the age its `Date` shows.
    let apparent_age = date.and_then(|d| now.duration_since(d).ok()).unwrap_or_default();
    let initial_age = age_header(&head.headers).max(apparent_age);
    let respect = cfg.respect_cache_control;
    let no_cache = respect && cc.as_ref().is_some_and(|c| c.no_cache());
    let fresh = match respect
        .then(|| origin_lifetime(cc.as_ref(), head, date, now))
        .flatten()
    {
        // Stored, but every use is revalidated first.
        _ if no_cache => Duration::ZERO,
        Some(lifetime) => lifetime.saturating_sub(initial_age),
        None => cfg.ttl,
    };
    // Stale answers: never after `must-revalidate` / `proxy-revalidate`; after `no-cache` or
    // `s-maxage` (which implies proxy-revalidate) only where the origin itself allows them.
    let forbidden = cc
        .as_ref()
        .is_some_and(|c| c.must_revalidate() || c.proxy_revalidate());
    let origin_only = no_cache || (respect && s_maxage);
    let origin_secs =
        |v: pingora::Result<Option<u32>>| v.ok().flatten().map(|s| Duration::from_secs(u64::from(s)));
    let (origin_swr, origin_sie) = match (&cc, respect) {
        (Some(c), true) => (
            origin_secs(c.stale_while_revalidate()),
            origin_secs(c.stale_if_error()),
        ),
        _ => (None, None),
    };
    let (swr, sie) = match (forbidden, origin_only) {
        (true, _) => (Duration::ZERO, Duration::ZERO),
        (false, true) => (origin_swr.unwrap_or_default(), origin_sie.unwrap_or_default()),
        (false, false) => (
            origin_swr.unwrap_or(cfg.stale_while_revalidate),
            origin_sie.unwrap_or(cfg.stale_if_error),
        ),
    };
    Ok(Lifetime {
        fresh,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        initial_age,
        public: cc.as_ref().is_some_and(|c| c.public()),
    })
}

/// The freshness lifetime the origin gives: `s-maxage`, then `max-age`, then `Expires` less
/// `Date` (RFC 9111 §4.2.1; without `Date`, the time of receipt).
fn origin_lifetime(
    cc: Option<&CacheControl>,
    head: &ResponseHeader,
    date: Option<SystemTime>,
    now: SystemTime,
) -> Option<Duration> {
    let secs = |v: pingora::Result<Option<u32>>| v.ok().flatten();
    if let Some(c) = cc {
        if let Some(s) = secs(c.s_maxage()).or_else(|| secs(c.max_age())) {
            return Some(Duration::from_secs(u64::from(s)));
        }
    }
    let expires = pingora_cache::filters::calculate_expires_header_time(head)?;
    Some(expires.duration_since(date.unwrap_or(now)).unwrap_or_default())
}

fn http_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let (Some(one), None) = (values.next(), values.next()) else {
        return None;
    };
    httpdate::parse_http_date(one.to_str().ok()?).ok()
}

fn age_header(headers: &HeaderMap) -> Duration {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(MAX_DELTA_SECONDS)))
        .unwrap_or_default()
}

/// RFC 9111 §1.2.2: a delta-seconds value too large to represent (or one whose arithmetic
/// would overflow) counts as 2^31. An upstream's `Age: 18446744073709551615` would otherwise
/// overflow the entry's age as soon as a second passed.
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RouteCacheConfig {
        crate::test_util::route_cache_config()
    }

    #[test]
    fn an_age_too_large_counts_as_two_to_the_31() {
        let age = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AGE, http::HeaderValue::from_str(v).expect("value"));
            age_header(&h)
        };
        assert_eq!(age("18446744073709551615"), Duration::from_secs(1 << 31));
        assert_eq!(age("2147483649"), Duration::from_secs(1 << 31));
        assert_eq!(age("120"), Duration::from_secs(120));
        assert_eq!(age("-1"), Duration::ZERO);
    }

    fn head(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).expect("head");
        for (n, v) in headers {
            h.append_header(n.to_string(), *v).expect("header");
        }
        h
    }

    #[test]
    fn freshness_comes_from_the_origin_then_the_route() {
        let now = SystemTime::now();
        let l = lifetime(
            &cfg(),
            &head(&[("cache-control", "max-age=10, stale-if-error=30")]),
            false,
            now,
        )
        .expect("storable");
        assert_eq!(
            (l.fresh, l.stale_while_revalidate, l.stale_if_error),
            (
                Duration::from_secs(10),
                Duration::from_secs(5),
                Duration::from_secs(30)
            )
        );
        let l = lifetime(
            &cfg(),
            &head(&[("cache-control", "s-maxage=20, max-age=5"), ("age", "3")]),
            false,
            now,
        )
        .expect("storable");
        assert_eq!(l.fresh, Duration::from_secs(17));
        assert_eq!(
            lifetime(&cfg(), &head(&[]), false, now).expect("storable").fresh,
            Duration::from_secs(60)
        );
        let l = lifetime(&cfg(), &head(&[("cache-control", "no-cache")]), false, now).expect("stored");
        assert_eq!(
            (l.fresh, l.stale_while_revalidate),
            (Duration::ZERO, Duration::ZERO)
        );
        let l = lifetime(&cfg(), &head(&[("cache-control", "s-maxage=9")]), false, now).expect("stored");
        assert_eq!(
            l.stale_while_revalidate,
            Duration::ZERO,
            "s-maxage implies proxy-revalidate"
        );
        // Expires counts from Date, and the age Date shows is deducted once.
        let date = httpdate::fmt_http_date(now - Duration::from_secs(10));
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(50));
        let l = lifetime(
            &cfg(),
            &head(&[("date", &date), ("expires", &expires)]),
            false,
            now,
        )
        .expect("stored");
        assert!(
            l.fresh >= Duration::from_secs(49) && l.fresh <= Duration::from_secs(51),
            "{:?}",
            l.fresh
        );
        let l = lifetime(
            &cfg(),
            &head(&[("cache-control", "max-age=9, must-revalidate")]),
            false,
            now,
        )
        .expect("stored");
        assert_eq!(l.stale_while_revalidate, Duration::ZERO);
    }

    #[test]
    fn private_cookies_and_unshared_credentials_are_never_stored() {
        let now = SystemTime::now();
        for h in [
            head(&[("set-cookie", "a=b")]),
            head(&[("cache-control", "private, max-age=60")]),
            head(&[("cache-control", "no-store")]),
        ] {
            assert!(lifetime(&cfg(), &h, false, now).is_err());
        }
        assert!(lifetime(&cfg(), &head(&[("cache-control", "max-age=60")]), true, now).is_err());
        let revalidate = head(&[("cache-control", "max-age=60, must-revalidate")]);
        assert!(
            lifetime(&cfg(), &revalidate, true, now).is_err(),
            "must-revalidate is not shareable"
        );
        assert!(lifetime(
            &cfg(),
            &head(&[("cache-control", "public, max-age=60")]),
            true,
            now
        )
        .is_ok());
        assert!(lifetime(&cfg(), &head(&[("cache-control", "s-maxage=60")]), true, now).is_ok());
        let mut teapot = head(&[]);
        teapot.set_status(500).expect("status");
        assert!(lifetime(&cfg(), &teapot, false, now).is_err());
    }

    #[test]
    fn vary_is_honoured_within_the_list_and_coded_bodies_vary_on_accept_encoding() {
        assert_eq!(
            variance(&cfg(), &head(&[("vary", "Accept-Language")])),
            Ok(vec![http::header::ACCEPT_LANGUAGE])
        );
        assert!(variance(&cfg(), &head(&[("vary", "*")])).is_err());
        assert!(variance(&cfg(), &head(&[("vary", "cookie")])).is_err());
        assert_eq!(
            variance(&cfg(), &head(&[("content-encoding", "gzip")])),
            Ok(vec![http::header::ACCEPT_ENCODING])
        );
    }
}
