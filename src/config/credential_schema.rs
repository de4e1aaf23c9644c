//! Credential-decoding helpers shared by the authenticator schemas (`auth_schema.rs` for
//! `api_key`, `jwt_schema.rs` for `jwt`): where a credential is read from, and which identity
//! fields are forwarded to the upstream as headers. A leaf: it imports no schema file.

use http::HeaderName;

use super::auth_model::CredentialSource;
use super::decode::{index, Fields, Spanned};
use super::diag::Problems;

/// `from: ["header:x-api-key", "query:api_key", "cookie:key"]`.
pub(super) fn sources(f: &Fields<'_>, key: &str, p: &mut Problems) -> Option<Vec<CredentialSource>> {
    let list: Vec<Spanned<String>> = f.req(key, p)?;
    if list.is_empty() {
        p.add(
            f.pos(),
            &f.path_of(key),
            "needs at least one source such as header:x-api-key",
        );
        return None;
    }
    let decoded: Vec<Option<CredentialSource>> = list
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = index(&f.path_of(key), i);
            let parsed = match s.value.split_once(':') {
                Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                    .ok()
                    .map(CredentialSource::Header),
                Some(("cookie", name)) if valid_token(name) => {
                    Some(CredentialSource::Cookie(name.to_string()))
                }
                Some(("query", name)) if valid_token(name) => Some(CredentialSource::Query(name.to_string())),
                _ => None,
            };
            if parsed.is_none() {
                p.add(
                    s.pos,
                    &path,
                    format!("`{}`: expected header:NAME, cookie:NAME or query:NAME", s.value),
                );
            }
            parsed
        })
        .collect();
    decoded.into_iter().collect()
}

pub(super) fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `forward: { consumer: X-Consumer-Id }`: identity field -> upstream header.
pub(super) fn forward_headers(
    f: &Fields<'_>,
    key: &str,
    fields: &[&str],
    p: &mut Problems,
) -> Option<Vec<(String, HeaderName)>> {
    let entries: super::decode::Entries<Spanned<String>> = f.or(key, super::decode::Entries::default(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (field, header) in &entries.0 {
        let path = format!("{}.{}", f.path_of(key), field.value);
        if !fields.is_empty() && !fields.contains(&field.value.as_str()) {
            p.add(
                field.pos,
                &path,
                format!(
                    "unknown identity field `{}`; expected one of {}",
                    field.value,
                    fields.join(", ")
                ),
            );
            ok = false;
            continue;
        }
        match HeaderName::from_bytes(header.value.as_bytes()) {
            Ok(h) => out.push((field.value.clone(), h)),
            Err(_) => {
                p.add(
                    header.pos,
                    &path,
                    format!("`{}` is not a valid header name", header.value),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
