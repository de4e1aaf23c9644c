//! Client headers that must not reach the upstream as the client wrote them.
//!
//! **Other spellings of gateway-managed headers.** CGI, WSGI, PHP-FPM and Rack turn a header
//! name into a variable by upper-casing it and mapping `-` (and for some `.`) to `_`: the
//! application sees `X_Consumer_Id`, `X.Consumer.Id` and `X-Consumer-Id` as one variable. The
//! gateway sets or removes the real spellings of the headers it manages (identity, forwarding,
//! request id, API version, credentials), so a client's variant spelling could plant a value
//! the application would read as the gateway's — first, on authenticated routes. Every header
//! whose name *folds* (lower case, every character other than a letter or digit read as `-`)
//! to a managed name is removed unless it is exactly that name. Names with `_` are dropped by
//! default (as nginx does), or refused, or allowed (`server.underscores_in_headers`).
//!
//! **URL/method override and client-address headers.** `X-Original-URL`, `X-Rewrite-URL`,
//! `X-HTTP-Method-Override` and friends make some frameworks route on another path or method
//! than the one the gateway authorized; `True-Client-IP`, `CF-Connecting-IP`, `X-Client-IP`…
//! claim a client address. They are removed unless the route lists them in `pass_headers`
//! (client-address headers also pass from `server.trusted_proxies`).

use crate::transform::headers::HeaderEdit;
use http::HeaderName;

use crate::config::client_header_names::{client_claims, is_client_claim, ALWAYS_MANAGED, OVERRIDES};
use crate::config::Underscores;

/// The compiled rules of one snapshot.
#[derive(Debug, Clone)]
pub struct ClientHeaderRules {
    pub underscores: Underscores,
    /// Folded names of every managed header: the fixed ones, the stripped ones, and those the
    /// configuration manages (identity, version, credential headers).
    managed: Vec<Box<[u8]>>,
}

impl ClientHeaderRules {
    /// `configured`: header names the configuration makes the gateway manage.
    pub fn compile<'a>(underscores: Underscores, configured: impl Iterator<Item = &'a HeaderName>) -> Self {
        let mut managed: Vec<Box<[u8]>> = ALWAYS_MANAGED
            .iter()
            .chain(OVERRIDES)
            .copied()
            .chain(client_claims())
            .map(|n| fold(n.as_bytes()))
            .collect();
        managed.extend(configured.map(|n| fold(n.as_str().as_bytes())));
        managed.sort();
        managed.dedup();
        ClientHeaderRules { underscores, managed }
    }

    /// Whether a request with this header name is refused outright (`underscores: reject`).
    pub fn refuses(&self, name: &HeaderName) -> bool {
        self.underscores == Underscores::Reject && name.as_str().contains('_')
    }

    /// Remove from the upstream request what the client may not send upstream as written.
    /// `pass` are the route's `pass_headers`; `trusted` whether the peer is a trusted proxy.
    pub fn apply(&self, req: &mut impl HeaderEdit, pass: &[HeaderName], trusted: bool) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in req.map().keys() {
            let n = name.as_str();
            let plain = n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            let remove = if plain {
                // The exact spellings of managed headers are replaced by the gateway elsewhere.
                let override_header = OVERRIDES.contains(&n);
                let claim = is_client_claim(n);
                (override_header || (claim && !trusted)) && !pass.contains(name)
            } else if n.contains('_') && self.underscores != Underscores::Allow {
                true
            } else {
                self.managed.binary_search(&fold(n.as_bytes())).is_ok()
            };
            if remove && !doomed.contains(name) {
                doomed.push(name.clone());
            }
        }
        for name in &doomed {
            req.remove(name);
        }
    }
}

/// A header name as frameworks see it: lower case, every other character than a letter or a
/// digit read as `-`.
fn fold(name: &[u8]) -> Box<[u8]> {
    name.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase()
            } else {
                b'-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(
        rules: &ClientHeaderRules,
        headers: &[(&str, &str)],
        pass: &[&str],
        trusted: bool,
    ) -> Vec<String> {
        let mut req = crate::test_util::request_header("/", headers);
        let pass: Vec<HeaderName> = pass
            .iter()
            .map(|p| HeaderName::from_bytes(p.as_bytes()).unwrap())
            .collect();
        rules.apply(&mut req, &pass, trusted);
        let mut left: Vec<String> = req.headers.keys().map(|k| k.to_string()).collect();
        left.sort();
        left
    }

    #[test]
    fn variant_spellings_of_managed_headers_are_removed() {
        let consumer = HeaderName::from_static("x-consumer-id");
        let rules = ClientHeaderRules::compile(Underscores::Allow, [&consumer].into_iter());
        let left = apply(
            &rules,
            &[
                ("X_Consumer_Id", "evil"),
                ("X.Consumer.Id", "evil"),
                ("X-Consumer_Id", "evil"),
                ("x~consumer~id", "evil"),
                ("X_Forwarded_For", "1.2.3.4"),
                ("X_Real_IP", "1.2.3.4"),
                ("X_Request_Id", "x"),
                ("X-Consumer-Id", "replaced elsewhere"),
                ("x_custom", "kept"),
            ],
            &[],
            false,
        );
        assert_eq!(left, ["x-consumer-id", "x_custom"]);
    }

    #[test]
    fn underscores_are_dropped_by_default_and_refusable() {
        let drop = ClientHeaderRules::compile(Underscores::Drop, std::iter::empty());
        assert_eq!(
            apply(&drop, &[("x_custom", "1"), ("x-ok", "1")], &[], false),
            ["x-ok"]
        );
        let reject = ClientHeaderRules::compile(Underscores::Reject, std::iter::empty());
        assert!(reject.refuses(&HeaderName::from_static("x_custom")));
        assert!(!drop.refuses(&HeaderName::from_static("x_custom")));
    }

    #[test]
    fn overrides_and_client_claims_need_a_route_or_a_trusted_proxy() {
        let rules = ClientHeaderRules::compile(Underscores::Drop, std::iter::empty());
        let sent = [
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("true-client-ip", "1.2.3.4"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-forwarded-port", "443"),
        ];
        assert!(apply(&rules, &sent, &[], false).is_empty());
        assert_eq!(
            apply(&rules, &sent, &[], true),
            ["cf-connecting-ip", "true-client-ip", "x-forwarded-port"],
            "a trusted proxy's client claims pass; overrides never do"
        );
        assert_eq!(
            apply(&rules, &sent, &["x-http-method-override"], false),
            ["x-http-method-override"]
        );
    }
}
