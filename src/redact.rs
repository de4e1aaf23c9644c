//! What may be shown of a URL or a request target in logs, metric labels, `/readyz` and
//! `check` messages: never credentials. A URL loses its user-info and its query (a `?token=`
//! is as secret as a password); a request target loses its query (API keys travel there).

/// `scheme://host[:port]/path` with `…@` for user-info and `?…` for a query.
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // Everything up to the last `@` is user-info (a password may hold `/` or `@`); a path
    // with an `@` is over-redacted, never under-redacted.
    let (user_info, rest) = match rest.rsplit_once('@') {
        Some((_, host)) => (true, host),
        None => (false, rest),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = if user_info {
        format!("…@{authority}")
    } else {
        authority.to_string()
    };
    let tail = match tail.find(['?', '#']) {
        Some(i) => format!("{}?…", &tail[..i]),
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// The path of a raw request target without its query or fragment (`?<redacted>` marks that
/// there was one), printable ASCII on one line (other bytes become `?`).
pub fn target(raw: &[u8]) -> String {
    let end = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    let path = &raw[..end];
    let mut out: String = path
        .iter()
        .map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '?' })
        .collect();
    if end < raw.len() {
        out.push_str("?<redacted>");
    }
    out
}

/// `query` with the value of every parameter naming one of `secret` (in any spelling a
/// framework reads, see `percent::names_param`) replaced by `REDACTED`, for the access log.
pub fn query(query: &str, secret: &[String]) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, _) = crate::percent::split_pair(pair);
            let hidden = secret
                .iter()
                .any(|s| crate::percent::names_param(name, s) || crate::percent::hides_param(pair, s));
            if hidden {
                format!("{name}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
/// zero), for the access log.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_lose_credential_values_and_trace_ids_are_checked() {
        assert_eq!(
            super::query("a=1&API_KEY=s3cret&api_key[]=x", &["api_key".to_string()]),
            "a=1&API_KEY=REDACTED&api_key[]=REDACTED"
        );
        assert_eq!(
            super::trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(super::trace_id(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            url("http://user:pass@idp.example.com:8443/jwks?token=s3cret"),
            "http://…@idp.example.com:8443/jwks?…"
        );
        assert_eq!(
            url("https://idp.example.com/jwks"),
            "https://idp.example.com/jwks"
        );
        assert_eq!(url("redis://:p@ss@cache:6379/0"), "redis://…@cache:6379/0");
        assert_eq!(url("http://h?x=1"), "http://h?…");
        assert_eq!(url("redis://:pa/ss@cache:6379/0"), "redis://…@cache:6379/0");
    }

    #[test]
    fn targets_lose_queries() {
        assert_eq!(target(b"/a/b?api_key=secret"), "/a/b?<redacted>");
        assert_eq!(target(b"/a%zz/b\x01"), "/a%zz/b?");
        assert_eq!(target(b"/plain"), "/plain");
    }
}
