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

#[cfg(test)]
mod tests {
    #[test]
    fn queries_lose_credential_values() {
        assert_eq!(
            super::query("a=1&API_KEY=s3cret&api_key[]=x", &["api_key".to_string()]),
            "a=1&API_KEY=REDACTED&api_key[]=REDACTED"
        );
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
