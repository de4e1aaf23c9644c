//! Small value decoders shared by several schema files: header names and values, header
//! maps, host patterns and the "unknown value" message. A leaf: it imports no schema file.

use http::{HeaderName, HeaderValue};

use super::decode::{Entries, Fields, Spanned};
use super::diag::{did_you_mean, Problems};

/// Headers that frame the message or the connection: configuration may not set, remove or
/// rename them, in either direction.
pub(super) const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

pub(super) fn one_of_message(found: &str, allowed: &[&str]) -> String {
    match did_you_mean(found, allowed) {
        Some(s) => format!("unknown value `{found}`; did you mean `{s}`?"),
        None => format!("unknown value `{found}`; expected one of {}", allowed.join(", ")),
    }
}

pub(super) fn header_pairs(
    f: &Fields<'_>,
    key: &str,
    p: &mut Problems,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let entries: Entries<Spanned<String>> = f.or(key, Entries::default(), p);
    let path = f.path_of(key);
    let pairs: Vec<Option<(HeaderName, HeaderValue)>> = entries
        .0
        .iter()
        .map(|(name, value)| {
            let n = header_name(name, &format!("{path}.{}", name.value), p);
            let v = header_value(value, &format!("{path}.{}", name.value), p);
            Some((n?, v?))
        })
        .collect();
    pairs.into_iter().collect()
}

pub(super) fn header_name(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.value.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.add(s.pos, path, format!("`{}` is not a valid header name", s.value));
            None
        }
    }
}

pub(super) fn header_value(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<HeaderValue> {
    match HeaderValue::from_str(&s.value) {
        Ok(v) => Some(v),
        Err(_) => {
            p.add(
                s.pos,
                path,
                "header value must be visible ASCII without CR, LF or NUL",
            );
            None
        }
    }
}

/// `api.example.com` or `*.example.com`; lower-cased; no port (ports are ignored when matching).
pub(super) fn host_pattern(h: &Spanned<String>, path: &str, p: &mut Problems) -> Option<String> {
    let host = h.value.to_ascii_lowercase();
    let body = host.strip_prefix("*.").unwrap_or(&host);
    let valid_label =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if host.contains(':') {
        p.add(
            h.pos,
            path,
            format!(
                "host `{}` must not include a port (ports are ignored when matching)",
                h.value
            ),
        );
        return None;
    }
    if body.is_empty() || !body.split('.').all(valid_label) {
        p.add(
            h.pos,
            path,
            format!("`{}` is not a host name or `*.domain` wildcard", h.value),
        );
        return None;
    }
    Some(host)
}

/// An optional duration that must be greater than zero when given; `None` when it is given
/// and zero (reported).
pub(super) fn positive_duration(
    f: &Fields<'_>,
    key: &str,
    p: &mut Problems,
) -> Option<Option<std::time::Duration>> {
    let value: Option<std::time::Duration> = f.opt(key, p);
    if value.is_some_and(|t| t.is_zero()) {
        p.add(f.pos_of(key), &f.path_of(key), "must be greater than 0");
        return None;
    }
    Some(value)
}
