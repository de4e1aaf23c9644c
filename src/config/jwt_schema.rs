//! Decoding `type: jwt` authenticators. Keys are read and parsed here, once: a bad PEM, a short
//! secret, an empty JWK set or an allowed algorithm without a matching key is a `check` error.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::auth_model::{CredentialSource, JwtConfig, JwtKeySource};
use super::credential_schema::{forward_headers, sources};
use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::yaml::Node;

pub const FIELDS: &[&str] = &[
    "type",
    "issuers",
    "audiences",
    "algorithms",
    "secret_env",
    "secret_file",
    "public_key_file",
    "jwks_file",
    "jwks_url",
    "leeway",
    "max_age",
    "required_claims",
    "token_from",
    "forward_claims",
    "cache_entries",
    "jwks_refresh",
    "jwks_cooldown",
    "jwks_timeout",
];

/// HMAC secrets shorter than this are refused (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

pub fn decode_jwt(node: &Node, path: &str, base_dir: &Path, p: &mut Problems) -> Option<JwtConfig> {
    let f = Fields::new(node, path, FIELDS, p)?;
    let issuers: Option<Vec<String>> = f.req("issuers", p);
    if issuers.as_ref().is_some_and(Vec::is_empty) {
        p.add(
            f.pos(),
            &f.path_of("issuers"),
            "needs at least one issuer (tokens from any issuer are never accepted)",
        );
    }
    let audiences: Vec<String> = f.or("audiences", Vec::new(), p);
    let algorithms = decode_algorithms(&f, p);
    let keys = decode_keys(&f, base_dir, p);
    if let (Some(algs), Some((_, families))) = (&algorithms, &keys) {
        for alg in algs {
            if !families.contains(&alg.family()) {
                p.add(
                    f.node("algorithms").map_or(f.pos(), Node::pos),
                    &f.path_of("algorithms"),
                    format!(
                        "{alg:?} is allowed but no configured key can verify it (a {:?} key is needed)",
                        alg.family()
                    ),
                );
            }
        }
    }
    let token_from = match f.node("token_from") {
        Some(_) => sources(&f, "token_from", p),
        None => Some(vec![CredentialSource::Header(http::header::AUTHORIZATION)]),
    };
    let forward_claims = forward_headers(&f, "forward_claims", &[], p);
    Some(JwtConfig {
        issuers: issuers?,
        audiences,
        algorithms: algorithms?,
        keys: keys?.0,
        leeway: f.or("leeway", Duration::from_secs(30), p),
        max_age: f.opt("max_age", p),
        required_claims: f.or("required_claims", Vec::new(), p),
        token_from: token_from?,
        forward_claims: forward_claims?,
        cache_entries: f.or("cache_entries", 10_000, p),
    })
}

fn decode_algorithms(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<Algorithm>> {
    let names: Vec<Spanned<String>> = f.req("algorithms", p)?;
    if names.is_empty() {
        p.add(f.pos(), &f.path_of("algorithms"), "needs at least one algorithm");
        return None;
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        // `none` in any spelling is never a signature algorithm.
        match Algorithm::from_str(&n.value) {
            Ok(alg) if !n.value.eq_ignore_ascii_case("none") => out.push(alg),
            _ => p.add(
                n.pos,
                &index(&f.path_of("algorithms"), i),
                format!("`{}` is not an accepted algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)", n.value),
            ),
        }
    }
    (out.len() == names.len()).then_some(out)
}

/// The one configured key source, loaded and parsed, with the key families it provides.
fn decode_keys(
    f: &Fields<'_>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<(JwtKeySource, Vec<AlgorithmFamily>)> {
    let given: Vec<&str> = [
        "secret_env",
        "secret_file",
        "public_key_file",
        "jwks_file",
        "jwks_url",
    ]
    .into_iter()
    .filter(|k| f.has(k))
    .collect();
    let key_field = match given.as_slice() {
        [one] => *one,
        [] => {
            p.add(
                f.pos(),
                &f.path_of("secret_env"),
                "needs one key source: secret_env, secret_file, public_key_file or jwks_file",
            );
            return None;
        }
        many => {
            p.add(
                f.pos(),
                &f.path_of(many[1]),
                format!("give only one key source, not {}", many.join(" and ")),
            );
            return None;
        }
    };
    let value: Spanned<String> = f.req(key_field, p)?;
    let path = f.path_of(key_field);
    let fail = |p: &mut Problems, msg: String| {
        p.add(value.pos, &path, msg);
        None
    };
    let read = |file: &str| {
        super::read_bounded_bytes(&base_dir.join(file))
            .map_err(|e| format!("cannot read {}: {e}", base_dir.join(file).display()))
    };
    match key_field {
        "secret_env" => match std::env::var(&value.value) {
            Ok(s) if s.len() >= MIN_SECRET_BYTES => {
                Some((JwtKeySource::Secret(s.into_bytes()), vec![AlgorithmFamily::Hmac]))
            }
            Ok(_) => fail(
                p,
                format!(
                    "the secret in ${} is shorter than {MIN_SECRET_BYTES} bytes",
                    value.value
                ),
            ),
            Err(_) => fail(p, format!("environment variable {} is not set", value.value)),
        },
        "secret_file" => match read(&value.value) {
            Ok(s) => {
                let s: Vec<u8> = s.trim_ascii_end().to_vec();
                if s.len() >= MIN_SECRET_BYTES {
                    Some((JwtKeySource::Secret(s), vec![AlgorithmFamily::Hmac]))
                } else {
                    fail(
                        p,
                        format!(
                            "the secret in {} is shorter than {MIN_SECRET_BYTES} bytes",
                            value.value
                        ),
                    )
                }
            }
            Err(e) => fail(p, e),
        },
        "public_key_file" => match read(&value.value) {
            Ok(pem) => match pem_family(&pem) {
                Some(family) => Some((JwtKeySource::PublicKeyPem(pem), vec![family])),
                None => fail(
                    p,
                    format!(
                        "{} is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key",
                        value.value
                    ),
                ),
            },
            Err(e) => fail(p, e),
        },
        "jwks_file" => match read(&value.value).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(json) => match jwks_families(&json) {
                Ok(families) => Some((JwtKeySource::JwksJson(json), families)),
                Err(e) => fail(p, format!("{}: {e}", value.value)),
            },
            Err(e) => fail(p, e),
        },
        _ => {
            let shown = crate::redact::url(&value.value);
            let uri = value.value.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            let Some(uri) = uri else {
                return fail(p, format!("`{shown}` is not an http(s) URL"));
            };
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return fail(
                    p,
                    format!(
                        "`{shown}` carries credentials (user:password@), which would never be sent \
                         and would show in logs; serve the key set without them"
                    ),
                );
            }
            let source = JwtKeySource::JwksUrl {
                url: value.value.clone(),
                refresh: f.or("jwks_refresh", Duration::from_secs(300), p),
                cooldown: f.or("jwks_cooldown", Duration::from_secs(30), p),
                timeout: f.or("jwks_timeout", Duration::from_secs(5), p),
            };
            // The key types are known only after the first fetch.
            let all = vec![
                AlgorithmFamily::Hmac,
                AlgorithmFamily::Rsa,
                AlgorithmFamily::Ec,
                AlgorithmFamily::Ed,
            ];
            Some((source, all))
        }
    }
}

/// The family of a PEM public key, trying each parser.
pub fn pem_family(pem: &[u8]) -> Option<AlgorithmFamily> {
    use jsonwebtoken::DecodingKey;
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        Some(AlgorithmFamily::Rsa)
    } else if DecodingKey::from_ec_pem(pem).is_ok() {
        Some(AlgorithmFamily::Ec)
    } else if DecodingKey::from_ed_pem(pem).is_ok() {
        Some(AlgorithmFamily::Ed)
    } else {
        None
    }
}

/// The families of the keys in a JWK set; every key must parse.
pub fn jwks_families(json: &str) -> Result<Vec<AlgorithmFamily>, String> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(json).map_err(|e| format!("not a JWK set: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWK set has no keys".into());
    }
    let mut families = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
        if let Some(family) = jwk_family(jwk) {
            families.push(family);
        }
    }
    Ok(families)
}

pub fn jwk_family(jwk: &jsonwebtoken::jwk::Jwk) -> Option<AlgorithmFamily> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    match &jwk.algorithm {
        P::RSA(_) => Some(AlgorithmFamily::Rsa),
        P::EllipticCurve(_) => Some(AlgorithmFamily::Ec),
        P::OctetKeyPair(_) => Some(AlgorithmFamily::Ed),
        P::OctetKey(_) => Some(AlgorithmFamily::Hmac),
        _ => None,
    }
}
