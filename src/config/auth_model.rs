//! The `auth:` section and the per-route auth settings, as validated values.

use http::HeaderName;

use super::decode::Spanned;

/// Whether `word` is an RFC 6749 scope token (visible ASCII without space, `"` or `\`): what
/// `require.scopes`/`roles` and the keys file may name, and all an identity keeps.
pub fn is_scope_token(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Where a credential is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `header:authorization` reads a `Bearer` token; any other header is read as is.
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub name: Spanned<String>,
    pub kind: AuthKind,
}

#[derive(Debug, Clone)]
pub enum AuthKind {
    ApiKey(ApiKeyConfig),
    Jwt(JwtConfig),
    Mtls(MtlsConfig),
}

/// `type: mtls`: a verified client certificate whose common name or alternative name is one
/// of `subjects` is that subject's consumer.
#[derive(Debug, Clone)]
pub struct MtlsConfig {
    pub subjects: Vec<MtlsSubject>,
    /// Listener addresses whose verified certificates count (empty: any listener that asks
    /// for client certificates), which ties the subjects to those listeners' `client_ca`.
    pub listeners: Vec<String>,
    /// Identity field (`consumer`, `plan`) -> upstream header.
    pub forward: Vec<(String, HeaderName)>,
}

/// One accepted certificate name and the identity it stands for.
#[derive(Debug, Clone)]
pub struct MtlsSubject {
    /// Matched exactly against the certificate's names: `cn:`, `dns:`, `uri:` or `email:`
    /// names one kind; without a prefix, any of them.
    pub name: String,
    pub consumer: String,
    pub plan: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// Verification keys, loaded when the configuration is loaded (and re-read on reload).
#[derive(Debug, Clone)]
pub enum JwtKeySource {
    /// HMAC secret bytes (from `secret_env` or `secret_file`).
    Secret(Vec<u8>),
    /// A PEM public key (`public_key_file`).
    PublicKeyPem(Vec<u8>),
    /// The JSON text of a JWK set (`jwks_file`).
    JwksJson(String),
    /// A JWK set fetched from `jwks_url` and kept fresh.
    JwksUrl {
        url: String,
        refresh: std::time::Duration,
        cooldown: std::time::Duration,
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    /// Allow-list; the token's `alg` must be in it and match the key type.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub keys: JwtKeySource,
    pub leeway: std::time::Duration,
    pub max_age: Option<std::time::Duration>,
    pub required_claims: Vec<String>,
    pub token_from: Vec<CredentialSource>,
    /// Claim -> upstream header.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Verified-token cache size (0 disables it).
    pub cache_entries: usize,
}

#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    pub from: Vec<CredentialSource>,
    /// Loaded from `keys_file` when the configuration is loaded.
    pub keys: Vec<ApiKeyEntry>,
    /// Identity field (`consumer`, `plan`) -> upstream header.
    pub forward: Vec<(String, HeaderName)>,
}

/// One API key, known only by the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyEntry {
    pub sha256: [u8; 32],
    pub consumer: String,
    pub plan: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequireMode {
    #[default]
    All,
    Any,
}

/// What an authenticated consumer must have for a route (`require:`).
#[derive(Debug, Clone, Default)]
pub struct RequireConfig {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub claims: Vec<(String, String)>,
    pub mode: RequireMode,
}

/// The auth settings of one route.
#[derive(Debug, Clone, Default)]
pub struct RouteAuthConfig {
    /// Authenticator names, any of which may admit the request; empty means no auth.
    pub authenticators: Vec<Spanned<String>>,
    pub require: Option<RequireConfig>,
    /// Send the credential upstream too (default: stripped).
    pub forward_credential: bool,
}
