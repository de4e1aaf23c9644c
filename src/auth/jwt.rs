//! JWT verification. Keys are parsed once per snapshot. A token is accepted only if its `alg`
//! is in the authenticator's allow-list *and* matches the key's type (`none` can never be in
//! the list), its header asks for no extension the gateway does not implement (`crit`,
//! RFC 7515 §4.1.11; unencoded payloads, `b64: false`, RFC 7797), its signature verifies, and
//! its claims pass: `exp` required and a NumericDate (any JSON number, fractions and values
//! before 1970 included, as RFC 7519 §2 allows), `nbf` and `iat` numbers not in the future,
//! issuer and audience allowed, a non-empty string `sub`, optional maximum age and required
//! claims. Header fields `jku`, `x5u`, `jwk` and `x5c` are never used.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{JwksSchedule, KeySet, RemoteJwks};
use super::token_cache::TokenCache;
use super::{Identity, Words};
use crate::config::jwt_schema::pem_family;
use crate::config::{JwtConfig, JwtKeySource};

enum Keys {
    Single(DecodingKey, AlgorithmFamily),
    Set(Arc<KeySet>),
    /// Fetched from a URL and refreshed in the background.
    Remote(Arc<RemoteJwks>),
}

/// The key of `set` for this token: by `kid`, else the first key of the algorithm's family.
fn pick<'a>(
    set: &'a KeySet,
    header: &jsonwebtoken::Header,
) -> Result<(&'a DecodingKey, AlgorithmFamily), &'static str> {
    let family = header.alg.family();
    match &header.kid {
        Some(kid) => {
            let keys = set.by_kid.get(kid).ok_or(UNKNOWN_KID)?;
            keys.iter()
                .find(|(_, f)| *f == family)
                .or(keys.first())
                .map(|(k, f)| (k, *f))
                .ok_or(UNKNOWN_KID)
        }
        None => set
            .unnamed
            .iter()
            .chain(set.by_kid.values().flatten())
            .find(|(_, f)| *f == family)
            .map(|(k, f)| (k, *f))
            .ok_or("no key for this algorithm"),
    }
}

const UNKNOWN_KID: &str = "unknown key id";

pub struct JwtVerifier {
    keys: Keys,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    /// One validation per key family: `jsonwebtoken` requires every algorithm of a
    /// validation to belong to the key's family.
    validations: Vec<(AlgorithmFamily, Validation)>,
    max_age_secs: Option<u64>,
    leeway_secs: u64,
    required_claims: Vec<String>,
    /// The claims an identity keeps (what the configuration reads); the rest are dropped so
    /// a cached identity never costs more than the claims in use.
    kept_claims: Vec<String>,
    /// Shared with the previous snapshot's verifier when nothing that decides a verification
    /// changed (`fingerprint`), so a reload does not make every client pay a cold cache.
    cache: Option<Arc<TokenCache>>,
    /// A digest of everything that decides whether a token verifies and what identity it
    /// yields: keys, algorithms, issuers, audiences, time rules, required and kept claims.
    fingerprint: [u8; 32],
}

impl JwtVerifier {
    /// Build from a validated configuration (its keys were already parsed once by `check`).
    /// `used_claims`: the claims the rest of the configuration reads.
    /// `previous`: the same-named authenticator's verifier in the snapshot being replaced.
    pub fn compile(
        cfg: &JwtConfig,
        used_claims: &[String],
        previous: Option<&JwtVerifier>,
    ) -> Result<JwtVerifier, String> {
        let keys = match &cfg.keys {
            JwtKeySource::Secret(s) => Keys::Single(DecodingKey::from_secret(s), AlgorithmFamily::Hmac),
            JwtKeySource::PublicKeyPem(pem) => {
                let family = pem_family(pem).ok_or("not a supported public key")?;
                let key = match family {
                    AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
                    AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
                    _ => DecodingKey::from_ed_pem(pem),
                }
                .map_err(|e| e.to_string())?;
                Keys::Single(key, family)
            }
            JwtKeySource::JwksJson(json) => Keys::Set(Arc::new(KeySet::parse(json)?)),
            JwtKeySource::JwksUrl {
                url,
                refresh,
                cooldown,
                timeout,
            } => Keys::Remote(RemoteJwks::for_url(
                url,
                JwksSchedule {
                    refresh: *refresh,
                    cooldown: *cooldown,
                    timeout: *timeout,
                },
            )),
        };
        // `exp` and `nbf` are checked in `check_claims`: jsonwebtoken reads them as unsigned
        // integers and would refuse valid NumericDates (fractions, values before 1970).
        let mut required: HashSet<String> = ["iss"].into_iter().map(String::from).collect();
        if !cfg.audiences.is_empty() {
            required.insert("aud".into());
        }
        let mut validations: Vec<(AlgorithmFamily, Validation)> = Vec::new();
        for alg in &cfg.algorithms {
            let family = alg.family();
            if validations.iter().any(|(f, _)| *f == family) {
                continue;
            }
            let mut v = Validation::new(*alg);
            v.algorithms = cfg
                .algorithms
                .iter()
                .copied()
                .filter(|a| a.family() == family)
                .collect();
            v.leeway = cfg.leeway.as_secs();
            v.validate_exp = false;
            v.validate_nbf = false;
            v.set_issuer(&cfg.issuers);
            if cfg.audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&cfg.audiences);
            }
            v.required_spec_claims = required.clone();
            validations.push((family, v));
        }
        let kept_claims = {
            let mut kept: Vec<String> = cfg
                .forward_claims
                .iter()
                .map(|(claim, _)| claim.clone())
                .chain(used_claims.iter().cloned())
                .collect();
            kept.sort();
            kept.dedup();
            kept
        };
        let fingerprint = fingerprint(cfg, &kept_claims);
        let cache = match previous {
            Some(p)
                if p.fingerprint == fingerprint
                    && p.cache.as_ref().map(|c| c.capacity()) == Some(cfg.cache_entries) =>
            {
                p.cache.clone()
            }
            _ => TokenCache::new(cfg.cache_entries).map(Arc::new),
        };
        Ok(JwtVerifier {
            keys,
            algorithms: cfg.algorithms.clone(),
            validations,
            max_age_secs: cfg.max_age.map(|d| d.as_secs()),
            leeway_secs: cfg.leeway.as_secs(),
            required_claims: cfg.required_claims.clone(),
            kept_claims,
            cache,
            fingerprint,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, &'static str> {
        if let Some(cache) = &self.cache {
            if let Some(identity) = cache.get(token, self.generation()) {
                return Ok(identity);
            }
        }
        let header = decode_header(token).map_err(|_| "malformed token")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("algorithm not allowed");
        }
        // No extension is implemented, so every critical one is unknown (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err("unsupported critical header parameter");
        }
        if header
            .extras
            .inner()
            .get("b64")
            .is_some_and(|b64| b64 != &Value::Bool(true))
        {
            return Err("unencoded payloads are not accepted");
        }
        let family = header.alg.family();
        let remote_set: Arc<KeySet>;
        let (key, key_family) = match &self.keys {
            Keys::Single(key, f) => (key, *f),
            Keys::Set(set) => pick(set, &header)?,
            Keys::Remote(remote) => {
                // Never fail open: without a loaded key set every token is refused.
                remote_set = remote.keys().ok_or("signing keys not available")?;
                pick(&remote_set, &header).inspect_err(|e| {
                    if *e == UNKNOWN_KID {
                        remote.want_refresh();
                    }
                })?
            }
        };
        if key_family != family {
            return Err("algorithm does not match the key type");
        }
        let (_, validation) = self
            .validations
            .iter()
            .find(|(f, _)| *f == family)
            .ok_or("algorithm not allowed")?;
        let data = decode::<Map<String, Value>>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => "token expired",
            ErrorKind::ImmatureSignature => "token not yet valid",
            ErrorKind::InvalidIssuer => "issuer not allowed",
            ErrorKind::InvalidAudience => "audience not allowed",
            ErrorKind::InvalidSignature => "invalid signature",
            ErrorKind::InvalidAlgorithm => "algorithm not allowed",
            ErrorKind::MissingRequiredClaim(_) => "missing required claim",
            _ => "malformed token",
        })?;
        let (exp, iat) = self.check_claims(&data.claims)?;
        let identity = Arc::new(identity(&data.claims, &self.kept_claims)?);
        if let Some(cache) = &self.cache {
            let age_limit = match (self.max_age_secs, iat) {
                (Some(max), Some(iat)) => iat + max as f64,
                _ => f64::INFINITY,
            };
            cache.put(token, &identity, exp.min(age_limit), self.generation());
        }
        Ok(identity)
    }

    /// The key-set generation entries are verified against: a fetched set changes it; static
    /// keys never change under a cache (a reload that changes them gets a new cache).
    fn generation(&self) -> u64 {
        match &self.keys {
            Keys::Remote(remote) => remote.generation(),
            _ => 0,
        }
    }

    /// The fetched key set this verifier depends on, if any.
    pub fn remote(&self) -> Option<&Arc<RemoteJwks>> {
        match &self.keys {
            Keys::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    /// What `jsonwebtoken` leaves to us: claim types, `iat` sanity, maximum age, required
    /// claims. Returns `exp` and `iat` (Unix seconds).
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(f64, Option<f64>), &'static str> {
        let number = |name: &str| {
            claims
                .get(name)
                .map(|v| v.as_f64().ok_or("claim of the wrong type"))
        };
        let exp = number("exp").ok_or("token has no expiry")??;
        let nbf = number("nbf").transpose()?;
        let iat = number("iat").transpose()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let leeway = self.leeway_secs as f64;
        if exp < now - leeway {
            return Err("token expired");
        }
        if nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err("token not yet valid");
        }
        if let Some(iat) = iat {
            if iat > now + self.leeway_secs as f64 {
                return Err("token issued in the future");
            }
        }
        if let Some(max_age) = self.max_age_secs {
            let iat = iat.ok_or("token has no issue time")?;
            if now - iat > (max_age + self.leeway_secs) as f64 {
                return Err("token too old");
            }
        }
        if claims.get("iss").is_some_and(|v| !v.is_string())
            || claims.get("sub").is_some_and(|v| !v.is_string())
        {
            return Err("claim of the wrong type");
        }
        if let Some(aud) = claims.get("aud") {
            let ok = aud.is_string() || aud.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                return Err("claim of the wrong type");
            }
        }
        if self.required_claims.iter().any(|c| !claims.contains_key(c)) {
            return Err("missing required claim");
        }
        Ok((exp, iat))
    }
}

/// The identity a verified token carries: `sub` is the consumer; scopes from `scope` (space
/// separated) or `scp`; roles from `roles`; the `kept` claims as text, for `require.claims`,
/// rate-limit keys and forwarding.
fn identity(claims: &Map<String, Value>, kept: &[String]) -> Result<Identity, &'static str> {
    let consumer = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("token has no subject")?;
    if consumer.is_empty() {
        return Err("token has an empty subject");
    }
    // RFC 6749 §3.3: scope tokens are separated by spaces (SP) only.
    let words = |v: &Value| -> Words {
        match v {
            Value::String(s) => Words::new(s.split(' ')),
            Value::Array(a) => Words::new(a.iter().filter_map(Value::as_str)),
            _ => Words::default(),
        }
    };
    let scopes = claims
        .get("scope")
        .or_else(|| claims.get("scp"))
        .map(words)
        .unwrap_or_default();
    let roles = claims.get("roles").map(words).unwrap_or_default();
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(a) if a.iter().all(Value::is_string) => {
                Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            }
            _ => None,
        }
    };
    Ok(Identity {
        consumer: consumer.to_string(),
        plan: claims.get("plan").and_then(Value::as_str).map(String::from),
        scopes,
        roles,
        claims: kept
            .iter()
            .filter_map(|k| claims.get(k).and_then(text).map(|t| (k.clone(), t)))
            .collect(),
    })
}

/// SHA-256 over every setting that decides a verification and the identity it yields, each
/// length-prefixed so no two configurations share an encoding.
fn fingerprint(cfg: &JwtConfig, kept_claims: &[String]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(bytes);
    };
    let keys: Vec<u8> = match &cfg.keys {
        JwtKeySource::Secret(s) => [b"secret:".as_slice(), s].concat(),
        JwtKeySource::PublicKeyPem(p) => [b"pem:".as_slice(), p].concat(),
        JwtKeySource::JwksJson(j) => format!("jwks:{j}").into_bytes(),
        // The schedule too: a changed schedule is a new key set whose generations restart.
        JwtKeySource::JwksUrl {
            url,
            refresh,
            cooldown,
            timeout,
        } => format!("url:{url} {refresh:?} {cooldown:?} {timeout:?}").into_bytes(),
    };
    field(&keys);
    field(format!("{:?}", cfg.algorithms).as_bytes());
    for list in [
        &cfg.issuers,
        &cfg.audiences,
        &cfg.required_claims,
        &kept_claims.to_vec(),
    ] {
        field(&(list.len() as u64).to_le_bytes());
        for item in list {
            field(item.as_bytes());
        }
    }
    field(&cfg.leeway.as_nanos().to_le_bytes());
    field(format!("{:?}", cfg.max_age).as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialSource;

    fn config(issuer: &str) -> JwtConfig {
        JwtConfig {
            issuers: vec![issuer.into()],
            audiences: vec![],
            algorithms: vec![jsonwebtoken::Algorithm::HS256],
            keys: JwtKeySource::Secret(b"0123456789abcdef0123456789abcdef".to_vec()),
            leeway: std::time::Duration::from_secs(30),
            max_age: None,
            required_claims: vec![],
            token_from: vec![CredentialSource::Header(http::header::AUTHORIZATION)],
            forward_claims: vec![],
            cache_entries: 100,
        }
    }

    fn same_cache(a: &JwtVerifier, b: &JwtVerifier) -> bool {
        match (&a.cache, &b.cache) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }

    /// A reload keeps verified tokens only while nothing that decides a verification changed.
    #[test]
    fn token_cache_survives_an_unchanged_reload_only() {
        let first = JwtVerifier::compile(&config("https://a"), &[], None).unwrap();
        let same = JwtVerifier::compile(&config("https://a"), &[], Some(&first)).unwrap();
        assert!(same_cache(&first, &same));
        let other_issuer = JwtVerifier::compile(&config("https://b"), &[], Some(&first)).unwrap();
        assert!(!same_cache(&first, &other_issuer));
        let mut rekeyed = config("https://a");
        rekeyed.keys = JwtKeySource::Secret(b"another-secret-of-32-bytes-000000".to_vec());
        let rekeyed = JwtVerifier::compile(&rekeyed, &[], Some(&first)).unwrap();
        assert!(
            !same_cache(&first, &rekeyed),
            "new keys: cached verifications are void"
        );
        let more_claims =
            JwtVerifier::compile(&config("https://a"), &["tenant".into()], Some(&first)).unwrap();
        assert!(
            !same_cache(&first, &more_claims),
            "identities keep other claims now"
        );
        // A changed JWKS schedule is a new key set whose generations restart: a new cache.
        let remote = |refresh: u64| {
            let mut c = config("https://a");
            c.keys = JwtKeySource::JwksUrl {
                url: "http://127.0.0.1:9/keys".into(),
                refresh: std::time::Duration::from_secs(refresh),
                cooldown: std::time::Duration::from_secs(1),
                timeout: std::time::Duration::from_secs(1),
            };
            c
        };
        let hourly = JwtVerifier::compile(&remote(3600), &[], None).unwrap();
        let again = JwtVerifier::compile(&remote(3600), &[], Some(&hourly)).unwrap();
        assert!(same_cache(&hourly, &again));
        let faster = JwtVerifier::compile(&remote(60), &[], Some(&hourly)).unwrap();
        assert!(!same_cache(&hourly, &faster));
    }
}
