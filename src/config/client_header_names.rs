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

/// Headers that claim where the client is or how it connected; the gateway says that itself.
pub const CLIENT_CLAIMS: &[&str] = &[
    "forwarded-for",
    "x-forwarded",
    "x-original-forwarded-for",
    "fly-client-ip",
    "x-appengine-user-ip",
    "x-forwarded-protocol",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
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

/// The headers that tell an upstream which site it serves (scheme, host, port, path prefix):
/// what it builds links and redirects from. A trusted proxy's values reach the upstream, so a
/// cached answer is keyed by them (`cache::key::site`).
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
    OVERRIDES.contains(&name) || CLIENT_CLAIMS.contains(&name)
}

#[cfg(test)]
mod tests {
    /// Every site claim but the ones the gateway sets itself is stripped from untrusted
    /// clients, so only a trusted proxy's values (or a route's `pass_headers`) reach the key.
    #[test]
    fn site_claims_are_managed_or_stripped() {
        for name in super::SITE_CLAIMS {
            assert!(
                super::ALWAYS_MANAGED.contains(name) || super::CLIENT_CLAIMS.contains(name),
                "{name}"
            );
        }
    }

    #[test]
    fn strippable_names() {
        assert!(super::strippable("x-rewrite-url") && !super::strippable("x-custom"));
    }
}
