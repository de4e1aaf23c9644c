//! Reading a requested version from each kind of source. Each reader returns what the
//! request says, without judging whether the version exists: [`Found::Many`] when one source
//! names two different versions (two `Accept-Version` headers that disagree, `?version=1&version=2`),
//! which is ambiguous and refused.

use http::{HeaderMap, HeaderName};

use crate::config::is_version_name;
use crate::percent;

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

pub use crate::config::split_path_version as path_version;

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

/// `Accept: application/vnd.<vendor>.v2+json`, or a JSON media range with `;version=2`
/// (`application/json`, `application/*+json`, or the vendor type). Other media types'
/// `version` parameters (`text/plain;version=0.0.4`) are theirs, not the API's. Ranges are
/// negotiated by `q`: the highest wins, `q=0` refuses; two versions at the same best `q` are
/// ambiguous.
/// `prefix` is `vnd.<vendor>.v` in lower case, built when the config is compiled.
pub fn media_type(headers: &HeaderMap, prefix: &str) -> Found {
    let mut best: Option<(f32, Found)> = None;
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let Some((kind, subtype)) = media.split_once('/') else {
                continue;
            };
            let (kind, subtype_lower) = (kind.to_ascii_lowercase(), subtype.to_ascii_lowercase());
            let mut version = None;
            let mut q = 1.0f32;
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "version" => version = Some(strip_v(v).to_string()),
                    "q" => q = qvalue(v).unwrap_or(0.0),
                    _ => {}
                }
            }
            let vendor_type = kind == "application" && subtype_lower.starts_with(prefix);
            let json = kind == "application" && (subtype_lower == "json" || subtype_lower.ends_with("+json"));
            let from_type = vendor_type
                .then(|| subtype.get(prefix.len()..))
                .flatten()
                .map(|rest| rest.split('+').next().unwrap_or(rest).to_string())
                .filter(|v| is_version_name(v));
            let from_param = version.filter(|_| vendor_type || json);
            let mut said = Found::None;
            for v in from_type.into_iter().chain(from_param) {
                said = said.add(v);
            }
            if q <= 0.0 || said == Found::None {
                continue;
            }
            best = match best {
                Some((bq, b)) if bq > q => Some((bq, b)),
                Some((bq, b)) if bq == q => Some((bq, merge(b, said))),
                _ => Some((q, said)),
            };
        }
    }
    best.map_or(Found::None, |(_, found)| found)
}

fn merge(a: Found, b: Found) -> Found {
    match (a, b) {
        (Found::One(x), Found::One(y)) if x == y => Found::One(x),
        (Found::None, other) | (other, Found::None) => other,
        _ => Found::Many,
    }
}

/// Query parameter `param`, compared after percent-decoding and without regard to case, so
/// `vers%69on=2` or `Version=2` cannot slip past the gateway and be read as `version` by the
/// upstream. A `;`-separated `version=` inside a value (which some frameworks split on) is
/// ambiguous and refused.
pub fn query(query: Option<&str>, param: &str) -> Found {
    let mut found = Found::None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (name, value) = percent::split_pair(pair);
        if percent::names_param(name, param) {
            match percent::decode_str(value) {
                Some(v) => found = found.add(strip_v(&v).to_string()),
                None => return Found::Many,
            }
        }
        if percent::hides_param(pair, param) {
            return Found::Many;
        }
    }
    found
}

/// The query without parameter `param` (decoded, any case).
pub fn strip_query(query: &str, param: &str) -> String {
    percent::strip_params(query, &[param])
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1`, `1.000`…); anything else (`NaN`, `inf`, `1e9`, `2`)
/// is malformed and makes its range unacceptable, so negotiation never depends on how a
/// float parser reads junk, nor on the order of the ranges (found by fuzzing).
fn qvalue(v: &str) -> Option<f32> {
    let (whole, fraction) = v.split_once('.').unwrap_or((v, ""));
    let valid = match whole {
        "0" => fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "1" => fraction.len() <= 3 && fraction.bytes().all(|b| b == b'0'),
        _ => false,
    };
    valid.then(|| v.parse().ok()).flatten()
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
        let accept = |v: &str| media_type(&headers(&[("accept", v)]), "vnd.users.v");
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
        for junk in ["NaN", "inf", "1e9", "2", "-1", "0.5000", ""] {
            let h = format!("application/vnd.users.v2+json, application/vnd.users.v1+json;q={junk}");
            assert_eq!(
                accept(&h),
                Found::One("2".into()),
                "q={junk} is malformed: that range is refused"
            );
        }
        assert_eq!(
            accept("application/vnd.users.v1+json;q=1.000, application/vnd.users.v2+json;q=0.999"),
            Found::One("1".into())
        );
        assert_eq!(
            accept("application/vnd.users.v2+json, application/json;version=1"),
            Found::Many
        );
        assert_eq!(
            accept("application/vnd.users.v2+json, application/vnd.users.v1+json;q=0.5"),
            Found::One("2".into()),
            "the highest q wins"
        );
        assert_eq!(
            accept("application/openmetrics-text;version=1.0.0, text/plain;version=0.0.4;q=0.5"),
            Found::None,
            "other media types' version parameters are not API versions"
        );
        assert_eq!(accept("application/vnd.users.variant+json"), Found::None);
        assert_eq!(
            accept("application/VND.users.v3Beta+json"),
            Found::One("3Beta".into())
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
        assert_eq!(query(Some("Version=2"), "version"), Found::One("2".into()));
        assert_eq!(strip_query("VERSION=2&a=1", "version"), "a=1");
        assert_eq!(
            query(Some("a=1;version=3"), "version"),
            Found::Many,
            "`;` separators are ambiguous"
        );
        assert_eq!(query(Some("a=x;y"), "version"), Found::None);
        assert_eq!(strip_query("version=2", "version"), "");
    }
}
