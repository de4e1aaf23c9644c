//! Reading a requested version from each kind of source. Each reader returns what the
//! request says, without judging whether the version exists: [`Found::Many`] when one source
//! names two different versions (two `Accept-Version` headers that disagree, `?version=1&version=2`),
//! which is ambiguous and refused.

use http::{HeaderMap, HeaderName};

use crate::config::is_version_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    None,
    One(String),
    Many,
}

impl Found {
    fn add(self, value: String) -> Found {
        match self {
            Found::None => Found::One(value),
            Found::One(v) if v == value => Found::One(v),
            _ => Found::Many,
        }
    }
}

/// `v2` -> `2`. Header and query values may carry the `v` or not.
fn strip_v(value: &str) -> &str {
    value
        .strip_prefix(['v', 'V'])
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(value)
}

/// A first path segment `v<version>`: the version and the path without that segment.
pub fn path_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (segment, after) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let version = segment.strip_prefix('v')?;
    is_version_name(version).then_some((version, after))
}

/// Every value of header `name` (comma-separated lists included).
pub fn header(headers: &HeaderMap, name: &HeaderName) -> Found {
    let mut found = Found::None;
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else {
            return Found::Many;
        };
        for item in text.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            found = found.add(strip_v(item).to_string());
        }
    }
    found
}

/// `Accept: application/vnd.<vendor>.v2+json` or any media range with `;version=2`.
/// Ranges with `q=0` are refusals and say nothing.
pub fn media_type(headers: &HeaderMap, vendor: &str) -> Found {
    let prefix = format!("vnd.{vendor}.v");
    let mut found = Found::None;
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut version = None;
            let mut refused = false;
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "version" => version = Some(strip_v(v).to_string()),
                    "q" => refused = v.parse::<f32>().is_ok_and(|q| q == 0.0),
                    _ => {}
                }
            }
            if refused {
                continue;
            }
            let vendor_version = media
                .split_once('/')
                .and_then(|(_, subtype)| subtype.strip_prefix(&prefix))
                .map(|rest| rest.split('+').next().unwrap_or(rest).to_string());
            for v in vendor_version.into_iter().chain(version) {
                found = found.add(v);
            }
        }
    }
    found
}

/// Query parameter `param`, compared after percent-decoding so `vers%69on=2` cannot slip past
/// the gateway and be read as `version` by the upstream.
pub fn query(query: Option<&str>, param: &str) -> Found {
    let mut found = Found::None;
    for (name, value) in query.into_iter().flat_map(|q| q.split('&')).map(split_pair) {
        if decode(name).as_deref() == Some(param) {
            match decode(value) {
                Some(v) => found = found.add(strip_v(&v).to_string()),
                None => return Found::Many,
            }
        }
    }
    found
}

/// The query without parameter `param` (by decoded name); `None` when nothing is left.
pub fn strip_query(query: &str, param: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && decode(split_pair(pair).0).as_deref() != Some(param))
        .collect::<Vec<_>>()
        .join("&")
}

fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// Percent-decoding; `None` for a bad escape or non-UTF-8 result.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn path_versions() {
        assert_eq!(path_version("/v2/users/7"), Some(("2", "/users/7")));
        assert_eq!(path_version("/v2"), Some(("2", "/")));
        assert_eq!(path_version("/v2/"), Some(("2", "/")));
        assert_eq!(path_version("/v2.1/x"), Some(("2.1", "/x")));
        assert_eq!(path_version("/vacation/x"), None);
        assert_eq!(path_version("/users/v2"), None);
        assert_eq!(path_version("/V2/x"), None);
    }

    #[test]
    fn header_values() {
        let name = HeaderName::from_static("accept-version");
        assert_eq!(header(&headers(&[]), &name), Found::None);
        assert_eq!(
            header(&headers(&[("accept-version", "v2")]), &name),
            Found::One("2".into())
        );
        assert_eq!(
            header(
                &headers(&[("accept-version", "2"), ("accept-version", "2")]),
                &name
            ),
            Found::One("2".into())
        );
        assert_eq!(
            header(
                &headers(&[("accept-version", "2"), ("accept-version", "1")]),
                &name
            ),
            Found::Many
        );
        assert_eq!(
            header(&headers(&[("accept-version", "1, 2")]), &name),
            Found::Many
        );
    }

    #[test]
    fn media_types() {
        let accept = |v: &str| media_type(&headers(&[("accept", v)]), "users");
        assert_eq!(accept("application/vnd.users.v2+json"), Found::One("2".into()));
        assert_eq!(accept("application/vnd.users.v2"), Found::One("2".into()));
        assert_eq!(accept("application/json; version=1"), Found::One("1".into()));
        assert_eq!(accept("application/json;version=\"v3\""), Found::One("3".into()));
        assert_eq!(
            accept("application/vnd.orders.v2+json"),
            Found::None,
            "another vendor"
        );
        assert_eq!(accept("application/json, text/html"), Found::None);
        assert_eq!(
            accept("application/vnd.users.v2+json, application/vnd.users.v1+json;q=0"),
            Found::One("2".into()),
            "q=0 refuses"
        );
        assert_eq!(
            accept("application/vnd.users.v2+json, application/json;version=1"),
            Found::Many
        );
    }

    #[test]
    fn query_values_compare_decoded_names() {
        assert_eq!(query(Some("a=1&version=2"), "version"), Found::One("2".into()));
        assert_eq!(query(Some("vers%69on=v2"), "version"), Found::One("2".into()));
        assert_eq!(query(Some("version=1&vers%69on=2"), "version"), Found::Many);
        assert_eq!(query(Some("version=%zz"), "version"), Found::Many);
        assert_eq!(query(None, "version"), Found::None);
        assert_eq!(strip_query("a=1&vers%69on=2&b=&version=2", "version"), "a=1&b=");
        assert_eq!(strip_query("version=2", "version"), "");
    }
}
