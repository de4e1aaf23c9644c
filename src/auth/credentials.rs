//! Reading a credential from the request, and removing it before the request goes upstream.
//!
//! A credential given twice (two `Authorization` headers, a repeated cookie or query
//! parameter) is refused: which copy a gateway and an upstream would each pick is a classic
//! confusion.

use http::header::{AUTHORIZATION, COOKIE};
use pingora::http::RequestHeader;

use crate::config::CredentialSource;
use crate::percent;
use crate::transform::headers::HeaderEdit;

/// The longest credential accepted; longer ones are refused before any parsing or hashing.
pub const MAX_CREDENTIAL_BYTES: usize = 8192;

#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Absent,
    One(String),
    /// Given more than once, malformed, or too long.
    Unusable(&'static str),
}

pub fn read(source: &CredentialSource, req: &RequestHeader) -> Found {
    let found = match source {
        CredentialSource::Header(name) => {
            let mut values = req.headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Found::Absent,
                (Some(_), Some(_)) => Found::Unusable("credential header given more than once"),
                (Some(v), None) if *name == AUTHORIZATION && v.len() <= MAX_CREDENTIAL_BYTES => {
                    match well_formed_bearer(v.as_bytes()) {
                        // Nothing left to check: token68 has no control bytes.
                        Some(token) => return Found::One(token),
                        None => header_value(v, name),
                    }
                }
                (Some(v), None) => header_value(v, name),
            }
        }
        CredentialSource::Cookie(name) => single(
            cookies(&req.headers)
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.to_string()),
        ),
        CredentialSource::Query(name) => query_credential(req.uri.query().unwrap_or(""), name),
    };
    match found {
        Found::One(v) if v.len() > MAX_CREDENTIAL_BYTES => Found::Unusable("credential too long"),
        // No early exit: a branch-free scan is cheaper on the token lengths seen in practice.
        Found::One(v) if v.bytes().fold(false, |bad, b| bad | (b < 0x20) | (b == 0x7f)) => {
            Found::Unusable("credential contains control bytes")
        }
        other => other,
    }
}

/// One credential header's value, read as text.
fn header_value(v: &http::HeaderValue, name: &http::HeaderName) -> Found {
    match v.to_str() {
        Err(_) => Found::Unusable("credential is not visible ASCII"),
        Ok(v) if *name == AUTHORIZATION => bearer(v),
        Ok(v) if v.trim().is_empty() => Found::Absent,
        Ok(v) => Found::One(v.trim().to_string()),
    }
}

/// The token of `Bearer <token68>` when the value is exactly that (spaces or tabs around the
/// token), read in one pass over the bytes: the usual request's credential, which otherwise
/// was scanned three times (as text, as token68, for control bytes). `None` for anything
/// else, which [`header_value`] reads and refuses as before.
fn well_formed_bearer(value: &[u8]) -> Option<String> {
    let (scheme, token) = value.split_at_checked(value.iter().position(|&b| b == b' ')?)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = token.trim_ascii();
    let token68 = token.iter().fold(true, |ok, &b| ok & TOKEN68[usize::from(b)]);
    if token.is_empty() || !token68 {
        return None;
    }
    std::str::from_utf8(token).ok().map(str::to_owned)
}

/// The `token68` alphabet (RFC 9110 §11.2), as a table: every request with a bearer token
/// checks each of its bytes.
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

/// `Authorization: Bearer <token>` (RFC 6750 §2.1); other schemes do not count as a token.
fn bearer(value: &str) -> Found {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            let token68 = token.bytes().fold(true, |ok, b| ok & TOKEN68[usize::from(b)]);
            if token.is_empty() || !token68 {
                Found::Unusable("malformed bearer token")
            } else {
                Found::One(token.to_string())
            }
        }
        _ => Found::Absent,
    }
}

fn single(mut values: impl Iterator<Item = String>) -> Found {
    match (values.next(), values.next()) {
        (None, _) => Found::Absent,
        (Some(_), Some(_)) => Found::Unusable("credential given more than once"),
        (Some(v), None) if v.is_empty() => Found::Absent,
        (Some(v), None) => Found::One(v),
    }
}

fn cookies(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The parameter `name` in every spelling an upstream framework would also read (decoded,
/// any case); hidden behind a `;` separator it is ambiguous.
fn query_credential(query: &str, name: &str) -> Found {
    let pairs = query.split('&').filter(|p| !p.is_empty());
    if pairs.clone().any(|p| percent::hides_param(p, name)) {
        return Found::Unusable("ambiguous credential parameter");
    }
    single(
        pairs
            .map(percent::split_pair)
            .filter(|(k, _)| percent::names_param(k, name))
            .map(|(_, v)| percent_decode(v)),
    )
}

/// Form decoding (`+` is a space); malformed escapes stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = percent::decode(s, percent::Mode::Form).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Remove the credential from the upstream request's headers (query parameters are removed
/// from the rewritten target by [`strip_from_query`]).
pub fn strip_from_headers(source: &CredentialSource, req: &mut impl HeaderEdit) -> pingora::Result<()> {
    match source {
        CredentialSource::Header(name) => req.remove(name),
        CredentialSource::Cookie(name) => {
            let kept: Vec<String> = cookies(req.map())
                .filter(|(k, _)| k != name)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.remove(&COOKIE);
            if !kept.is_empty() {
                let value = http::HeaderValue::from_str(&kept.join("; ")).map_err(|_| {
                    pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "cookie value")
                })?;
                req.put(COOKIE, value);
            }
        }
        CredentialSource::Query(_) => {}
    }
    Ok(())
}

/// The query without the credential parameters named by `sources`, in every spelling.
pub fn strip_from_query(query: &str, sources: &[CredentialSource]) -> String {
    let names: Vec<&str> = sources
        .iter()
        .filter_map(|s| match s {
            CredentialSource::Query(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    percent::strip_params(query, &names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::request_header as req;
    use http::HeaderName;

    /// The one-pass reading of a bearer token answers exactly what the general path does, for
    /// every spelling (case, spacing, tabs, bytes outside token68, other schemes, lengths).
    #[test]
    fn bearer_fast_path_agrees_with_the_general_path() {
        let long = format!("Bearer {}", "t".repeat(MAX_CREDENTIAL_BYTES));
        let spellings = [
            "Bearer abc.def",
            "bearer abc",
            "BEARER abc",
            "Bearer    abc   ",
            "Bearer \tabc\t",
            "Bearer\tabc",
            "Bearer abc def",
            "Bearer abc\"",
            "Bearer a=b/c+d~e-f_g.h==",
            "Bearer ",
            "Bearer",
            "Bearerabc",
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Bearer abc\u{e9}",
            " Bearer abc",
            long.as_str(),
        ];
        for spelling in spellings {
            let v = http::HeaderValue::from_str(spelling).expect("a header value");
            let general = match header_value(&v, &AUTHORIZATION) {
                Found::One(t) if t.len() > MAX_CREDENTIAL_BYTES => Found::Unusable("credential too long"),
                Found::One(t) if t.bytes().any(|b| b < 0x20 || b == 0x7f) => {
                    Found::Unusable("credential contains control bytes")
                }
                other => other,
            };
            let auth = CredentialSource::Header(AUTHORIZATION);
            let headers = [("authorization", spelling)];
            assert_eq!(read(&auth, &req("/", &headers)), general, "{spelling:?}");
        }
        assert_eq!(well_formed_bearer(b"Bearer abc"), Some("abc".into()));
        assert_eq!(well_formed_bearer(b"Bearer abc def"), None);
    }

    #[test]
    fn reads_each_source_and_refuses_duplicates() {
        let auth = CredentialSource::Header(AUTHORIZATION);
        assert_eq!(
            read(&auth, &req("/", &[("authorization", "Bearer abc.def")])),
            Found::One("abc.def".into())
        );
        assert_eq!(
            read(&auth, &req("/", &[("authorization", "Basic xyz")])),
            Found::Absent
        );
        assert!(matches!(
            read(
                &auth,
                &req(
                    "/",
                    &[("authorization", "Bearer a"), ("authorization", "Bearer b")]
                )
            ),
            Found::Unusable(_)
        ));
        assert!(matches!(
            read(&auth, &req("/", &[("authorization", "Bearer a b")])),
            Found::Unusable(_)
        ));
        let key = CredentialSource::Header(HeaderName::from_static("x-api-key"));
        assert_eq!(
            read(&key, &req("/", &[("x-api-key", " k1 ")])),
            Found::One("k1".into())
        );
        let q = CredentialSource::Query("api_key".into());
        assert_eq!(
            read(&q, &req("/a?x=1&api_key=k%2B1", &[])),
            Found::One("k+1".into())
        );
        assert!(matches!(
            read(&q, &req("/a?api_key=1&api_key=2", &[])),
            Found::Unusable(_)
        ));
        for spelling in ["API_KEY=k", "api%5Fkey=k", "Api_Key=k"] {
            assert_eq!(
                read(&q, &req(&format!("/a?{spelling}"), &[])),
                Found::One("k".into()),
                "{spelling}"
            );
        }
        assert!(
            matches!(read(&q, &req("/a?api_key=1&API_KEY=2", &[])), Found::Unusable(_)),
            "two spellings are two copies"
        );
        assert!(matches!(
            read(&q, &req("/a?x=1;api_key=2", &[])),
            Found::Unusable(_)
        ));
        let c = CredentialSource::Cookie("session".into());
        assert_eq!(
            read(&c, &req("/", &[("cookie", "a=1; session=s")])),
            Found::One("s".into())
        );
        let long = "k".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert!(matches!(
            read(&key, &req("/", &[("x-api-key", long.as_str())])),
            Found::Unusable(_)
        ));
    }

    #[test]
    fn strips() {
        assert_eq!(
            strip_from_query(
                "a=1&api_key=x&b=2&API%5FKEY=y",
                &[CredentialSource::Query("api_key".into())]
            ),
            "a=1&b=2"
        );
        let mut r = req("/", &[("cookie", "a=1; session=s")]);
        strip_from_headers(&CredentialSource::Cookie("session".into()), &mut r).unwrap();
        assert_eq!(r.headers.get("cookie").unwrap(), "a=1");
    }
}
