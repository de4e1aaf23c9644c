//! Host names as routing sees them: lower-case, no port, no trailing dot.

/// Canonical host from a `Host` header value or URI authority: `API.Example.com.:8080` ->
/// `api.example.com`; `[::1]:8080` -> `[::1]`. `None` when empty or not a plausible host.
pub fn canonical_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if valid_port(port) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let ok = if host.starts_with('[') {
        host.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'[' | b']' | b':' | b'.'))
    } else {
        names_labels(host.as_bytes())
    };
    ok.then(|| host.to_ascii_lowercase())
}

/// A host name of labels (letters, digits, `-`, `_`) separated by single dots. Every label
/// non-empty: `api.example.com..` or `a..b` would miss the exact-host routes and fall to routes
/// for other hosts, while an upstream may read it as the host. One pass over the bytes: this
/// runs for every request (twice for an HTTP/2 one, whose `:authority` is checked too), and
/// splitting into labels cost about 0.5k instructions per call.
fn names_labels(host: &[u8]) -> bool {
    let mut label = 0usize;
    for &b in host {
        match b {
            b'.' if label == 0 => return false,
            b'.' => label = 0,
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => label += 1,
            _ => return false,
        }
    }
    label > 0
}

/// A port a client may name: digits that fit in 16 bits. `a.com:65616` is refused rather than
/// read as "no port" (port 80) by one side while an upstream reads the digits.
fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// Whether `host` (canonical) is matched by `pattern` (`api.example.com` or `*.example.com`).
/// A wildcard matches one or more labels in front of the domain, never the bare domain.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizes() {
        assert_eq!(
            canonical_host("API.Example.com:8080").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(canonical_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(canonical_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(canonical_host("a b"), None);
        assert_eq!(canonical_host(""), None);
        assert_eq!(canonical_host("x:abc"), None);
        assert_eq!(canonical_host("x/y"), None);
        for empty_label in [
            "api.example.com..",
            ".api.example.com",
            "api..example.com",
            "..",
            ".",
        ] {
            assert_eq!(canonical_host(empty_label), None, "{empty_label}");
        }
        assert_eq!(
            canonical_host("[::ffff:1.2.3.4]").as_deref(),
            Some("[::ffff:1.2.3.4]")
        );
        assert_eq!(canonical_host("[fe80::1%eth0]"), None);
        assert_eq!(canonical_host("a-b_c.x9").as_deref(), Some("a-b_c.x9"));
        assert_eq!(canonical_host(" a.com:81 ").as_deref(), Some("a.com"));
        for bad in [
            "a,b", "a@b", "a.b:", "a:65536", "a:123456", "é.com", "a.b.:80x", "a*.com",
        ] {
            assert_eq!(canonical_host(bad), None, "{bad}");
        }
        assert_eq!(canonical_host("a:65535").as_deref(), Some("a"));
    }

    #[test]
    fn wildcards() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(host_matches("example.com", "example.com"));
    }
}
