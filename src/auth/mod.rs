//! Authentication ("who are you") and authorization ("may you do this") for routes that
//! declare `auth`. Authenticators are compiled once per snapshot; the request path only
//! reads credentials, looks them up or verifies them, and checks `require`.

pub mod api_key;
pub mod credentials;
pub mod jwks;
pub mod jwt;
pub mod mtls;
pub mod require;
pub mod token_cache;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::{is_scope_token, AuthConfig, AuthKind, CredentialSource, RouteAuthConfig};
use api_key::ApiKeys;
use credentials::Found;
use require::Requirement;

use crate::tls::identity::ClientIdentity;

/// Who the request is from, for authorization, forwarding and later steps (limits, logs).
///
/// Identities of verified tokens live in the token cache, so they are kept small: scopes and
/// roles in one allocation each, and only the claims the configuration uses.
#[derive(Debug, Clone)]
pub struct Identity {
    /// JWT `sub` or the API key's consumer.
    pub consumer: String,
    pub plan: Option<String>,
    pub scopes: Words,
    pub roles: Words,
    /// String-valued claims the configuration uses (`require.claims`, rate-limit keys,
    /// `forward_claims`).
    pub claims: Vec<(String, String)>,
}

/// Scopes or roles, held in one allocation: a token with hundreds of one-letter scopes costs
/// its text, not hundreds of strings.
///
/// Only RFC 6749 scope tokens are kept (visible ASCII without space, `"` or `\`): `require`
/// lists only such tokens, so nothing else could ever match — and keeping a role such as
/// `"team admin"` as one entry means it is never read as the two words `team` and `admin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words(Box<str>);

impl Words {
    /// `words`: each one a candidate scope token (anything else is dropped whole).
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Words {
        let mut text = String::new();
        for w in words.into_iter().filter(|w| is_scope_token(w)) {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(w);
        }
        Words(text.into_boxed_str())
    }

    pub fn contains(&self, word: &str) -> bool {
        self.iter().any(|w| w == word)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|w| !w.is_empty())
    }
}

#[cfg(test)]
mod words_tests {
    use super::*;

    #[test]
    fn only_whole_scope_tokens_are_kept() {
        let roles = Words::new(["team admin", "reader", "x\tadmin", "ok:scope"]);
        assert!(!roles.contains("admin"), "an entry with a space is not two roles");
        assert!(!roles.contains("team"));
        assert!(roles.contains("reader") && roles.contains("ok:scope"));
        assert_eq!(roles.iter().count(), 2);
    }
}

impl Identity {
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of identity field `field` for forwarding.
    fn field(&self, field: &str) -> Option<&str> {
        match field {
            "consumer" => Some(&self.consumer),
            "plan" => self.plan.as_deref(),
            other => self.claim(other),
        }
    }
}

enum Verifier {
    ApiKey(ApiKeys),
    Jwt(Box<jwt::JwtVerifier>),
    Mtls(mtls::Subjects),
}

/// One compiled authenticator.
pub struct Authenticator {
    pub name: String,
    sources: Vec<CredentialSource>,
    verifier: Verifier,
    /// Identity field -> upstream header.
    forward: Vec<(String, HeaderName)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("name", &self.name).finish()
    }
}

impl Authenticator {
    /// Query parameters this authenticator reads a credential from (redacted in logs).
    pub fn query_params(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s {
            CredentialSource::Query(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// `used_claims`: the claims the configuration reads besides this authenticator's own
    /// `forward_claims` (`require.claims`, rate-limit keys); only those are kept.
    /// `previous`: the authenticators of the snapshot being replaced; a same-named JWT
    /// authenticator whose verification settings are unchanged hands over its token cache.
    pub fn compile(
        cfg: &AuthConfig,
        used_claims: &[String],
        previous: &[Authenticator],
    ) -> Result<Authenticator, String> {
        let name = cfg.name.value.clone();
        let previous_jwt = previous
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.verifier {
                Verifier::Jwt(v) => Some(v.as_ref()),
                Verifier::ApiKey(_) | Verifier::Mtls(_) => None,
            });
        Ok(match &cfg.kind {
            AuthKind::ApiKey(k) => Authenticator {
                name,
                sources: k.from.clone(),
                verifier: Verifier::ApiKey(ApiKeys::new(k.keys.clone())),
                forward: k.forward.clone(),
            },
            AuthKind::Jwt(j) => Authenticator {
                verifier: Verifier::Jwt(Box::new(
                    jwt::JwtVerifier::compile(j, used_claims, previous_jwt)
                        .map_err(|e| format!("authenticator `{name}`: {e}"))?,
                )),
                name,
                sources: j.token_from.clone(),
                forward: j.forward_claims.clone(),
            },
            AuthKind::Mtls(m) => Authenticator {
                name,
                sources: Vec::new(),
                verifier: Verifier::Mtls(mtls::Subjects::new(m)),
                forward: m.forward.clone(),
            },
        })
    }

    /// The fetched key set this authenticator depends on, if any.
    pub fn remote_jwks(&self) -> Option<std::sync::Arc<jwks::RemoteJwks>> {
        match &self.verifier {
            Verifier::Jwt(v) => v.remote().cloned(),
            Verifier::ApiKey(_) | Verifier::Mtls(_) => None,
        }
    }

    /// Headers this authenticator sets upstream; clients' copies are removed on every route.
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|(_, h)| h)
    }

    /// Headers this authenticator reads a credential from.
    pub fn credential_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.sources.iter().filter_map(|s| match s {
            CredentialSource::Header(h) => Some(h),
            _ => None,
        })
    }

    fn verify(&self, credential: &str) -> Result<Arc<Identity>, &'static str> {
        match &self.verifier {
            Verifier::Jwt(verifier) => verifier.verify(credential),
            Verifier::ApiKey(keys) => keys.lookup(credential).ok_or("unknown API key"),
            // Never reached: an mtls authenticator has no credential sources.
            Verifier::Mtls(_) => Err("a client certificate is not a credential string"),
        }
    }

    /// The upstream headers for `id`. Values with control characters (tab included: some
    /// applications split or trim on it) are refused, never forwarded.
    pub fn forward_headers(&self, id: &Identity) -> Result<Vec<(HeaderName, HeaderValue)>, &'static str> {
        let mut out = Vec::with_capacity(self.forward.len());
        for (field, header) in &self.forward {
            if let Some(value) = id.field(field) {
                if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    return Err("identity value cannot be forwarded");
                }
                let value = HeaderValue::from_str(value).map_err(|_| "identity value cannot be forwarded")?;
                out.push((header.clone(), value));
            }
        }
        Ok(out)
    }
}

/// A route's compiled auth settings.
#[derive(Debug, Default)]
pub struct RouteAuth {
    /// Indexes into the snapshot's authenticators; empty means the route is public.
    pub authenticators: Vec<usize>,
    pub require: Option<Requirement>,
    /// Credential locations to strip before the request goes upstream.
    pub strip: Vec<CredentialSource>,
}

impl RouteAuth {
    /// `index`: the position of each authenticator in `all`, by name.
    pub fn compile(
        cfg: &RouteAuthConfig,
        all: &[Authenticator],
        index: &std::collections::HashMap<&str, usize>,
    ) -> RouteAuth {
        let authenticators: Vec<usize> = cfg
            .authenticators
            .iter()
            .filter_map(|name| index.get(name.value.as_str()).copied())
            .collect();
        let strip = if cfg.forward_credential {
            Vec::new()
        } else {
            authenticators
                .iter()
                .flat_map(|&i| all[i].sources.iter().cloned())
                .collect()
        };
        RouteAuth {
            authenticators,
            require: cfg.require.as_ref().map(Requirement::compile),
            strip,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no usable credential, or none that verified.
    Unauthenticated(&'static str),
    /// 403: authenticated, but `require` is not met; the scopes to name in the challenge, and
    /// the consumer refused (for the access log).
    Forbidden { scopes: String, consumer: String },
}

/// The identity admitted by the route's authenticators (any of them), checked against
/// `require`. `Ok(None)` for public routes.
///
/// `certificate`: the verified client certificate of the connection, for `mtls`
/// authenticators (never anything the request itself carries).
pub fn authenticate(
    route: &RouteAuth,
    all: &[Authenticator],
    req: &RequestHeader,
    certificate: Option<&ClientIdentity>,
) -> Result<Option<(Arc<Identity>, usize)>, Denied> {
    if route.authenticators.is_empty() {
        return Ok(None);
    }
    let admit = |id: Arc<Identity>, i: usize| match &route.require {
        Some(req) if !req.allows(&id) => Err(Denied::Forbidden {
            scopes: req.scope_list(),
            consumer: id.consumer.clone(),
        }),
        _ => Ok(Some((id, i))),
    };
    let mut reason = "missing credentials";
    for &i in &route.authenticators {
        let Some(auth) = all.get(i) else { continue };
        if let Verifier::Mtls(subjects) = &auth.verifier {
            match subjects.identify(certificate) {
                Ok(id) => return admit(id, i),
                Err(why) => reason = why,
            }
            continue;
        }
        for source in &auth.sources {
            match credentials::read(source, req) {
                Found::Absent => {}
                Found::Unusable(why) => return Err(Denied::Unauthenticated(why)),
                Found::One(credential) => match auth.verify(&credential) {
                    Ok(id) => return admit(id, i),
                    Err(why) => reason = why,
                },
            }
        }
    }
    Err(Denied::Unauthenticated(reason))
}
