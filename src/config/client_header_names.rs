//! Request headers the gateway manages or strips by default, by name. `transform::client_headers`
//! applies them; the configuration refers to them (`pass_headers`).

/// Headers that make frameworks route on another path or method than the request's.
pub const OVERRIDES: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// The method overrides among `OVERRIDES`.
pub const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Headers that claim where the client is; the gateway says that itself (`X-Forwarded-For`,
/// `X-Real-IP`). Stripped from untrusted clients; a cached answer is not keyed by them.
pub const ADDRESS_CLAIMS: &[&str] = &[
    "forwarded-for",
    "x-original-forwarded-for",
    "fly-client-ip",
    "x-appengine-user-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
];

/// The headers that tell an upstream which site it serves (scheme, host, port, path prefix):
/// what it builds links and redirects from. A trusted proxy's values reach the upstream, so a
/// cached answer is keyed by them (`cache::key::site`). The first three the gateway sets
/// itself for other clients; the rest ([`STRIPPED_SITE_CLAIMS`]) it strips.
pub const SITE_CLAIMS: &[&str] = &[
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-forwarded",
    "x-forwarded-protocol",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "x-original-host",
    "x-host",
];

/// The site claims the gateway does not set itself.
pub const STRIPPED_SITE_CLAIMS: &[&str] = SITE_CLAIMS.split_at(3).1;

/// Headers that claim where the client is or how it connected, which the gateway says itself:
/// stripped from untrusted clients, passed from `trusted_proxies`.
pub fn client_claims() -> impl Iterator<Item = &'static str> {
    ADDRESS_CLAIMS.iter().chain(STRIPPED_SITE_CLAIMS).copied()
}

/// Whether `name` is one of [`client_claims`].
pub fn is_client_claim(name: &str) -> bool {
    ADDRESS_CLAIMS.contains(&name) || STRIPPED_SITE_CLAIMS.contains(&name)
}

/// Headers the gateway itself sets (or removes) on every upstream request.
pub const ALWAYS_MANAGED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];

/// Whether the gateway strips `name` by default (what `pass_headers` may let through).
pub fn strippable(name: &str) -> bool {
    OVERRIDES.contains(&name) || is_client_claim(name)
}

#[cfg(test)]
mod tests {
    /// The site claims the gateway sets itself are exactly the first three, and the lists do
    /// not overlap: a header is either an address or a site, set or stripped.
    #[test]
    fn the_claim_lists_are_classified() {
        for name in &super::SITE_CLAIMS[..3] {
            assert!(super::ALWAYS_MANAGED.contains(name), "{name}");
        }
        for name in super::STRIPPED_SITE_CLAIMS {
            assert!(!super::ALWAYS_MANAGED.contains(name), "{name}");
            assert!(!super::ADDRESS_CLAIMS.contains(name), "{name}");
            assert!(super::is_client_claim(name), "{name}");
        }
        assert_eq!(super::client_claims().count(), 24);
        assert!(super::is_client_claim("true-client-ip") && !super::is_client_claim("x-forwarded-host"));
    }

    #[test]
    fn strippable_names() {
        assert!(super::strippable("x-rewrite-url") && !super::strippable("x-custom"));
    }
}
