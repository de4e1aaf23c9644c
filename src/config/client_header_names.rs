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
    #[test]
    fn strippable_names() {
        assert!(super::strippable("x-rewrite-url") && !super::strippable("x-custom"));
    }
}
