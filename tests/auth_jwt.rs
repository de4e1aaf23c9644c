//! JWT authentication attacked through the real gateway. Every rejected token must get 401
//! (or 403 where noted) and the upstream must never see the request.

mod support;

use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Valid claims for issuer `iss`, for tests to alter.
fn claims(iss: &str) -> Value {
    json!({ "iss": iss, "aud": "orders-api", "sub": "alice", "exp": now() + 600, "iat": now() - 10,
            "scope": "orders:read", "tenant": "acme" })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, key).expect("sign")
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("rsa key")
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&read("ec_private.pem")).expect("ec key")
}

/// A token with an arbitrary header and payload and a raw signature.
fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

struct Setup {
    up: Upstream,
    gw: Gateway,
}

fn setup() -> Setup {
    let up = Upstream::start("app");
    let jwt = |iss: &str, algs: &str, key: &str| {
        format!("    type: jwt\n    issuers: [\"{iss}\"]\n    audiences: [orders-api]\n    algorithms: [{algs}]\n    {key}\n    max_age: 1h\n    leeway: 1s\n    forward_claims: {{ sub: X-Consumer-Id, scope: X-Consumer-Scopes, tenant: X-Tenant }}\n")
    };
    let body = format!(
        "upstreams:\n  app:\n    targets: [\"{up}\"]\nauth:\n  rs:\n{rs}  es:\n{es}  ed:\n{ed}  hs:\n{hs}  jwks:\n{jwks}routes:\n{routes}",
        up = up.addr(),
        rs = jwt("https://rs.example.com", "RS256", &format!("public_key_file: {}", fixture("rsa_public.pem"))),
        es = jwt("https://es.example.com", "ES256", &format!("public_key_file: {}", fixture("ec_public.pem"))),
        ed = jwt("https://ed.example.com", "EdDSA", &format!("public_key_file: {}", fixture("ed_public.pem"))),
        hs = jwt("https://hs.example.com", "HS256", "secret_env: PORTCULLIS_TEST_SECRET"),
        jwks = jwt("https://jwks.example.com", "RS256, ES256", &format!("jwks_file: {}", fixture("jwks.json"))),
        routes = "  - { name: rs, match: { path_prefix: /rs }, upstream: app, auth: [rs] }\n  - { name: es, match: { path_prefix: /es }, upstream: app, auth: [es] }\n  - { name: ed, match: { path_prefix: /ed }, upstream: app, auth: [ed] }\n  - { name: hs, match: { path_prefix: /hs }, upstream: app, auth: [hs] }\n  - { name: jwks, match: { path_prefix: /jwks }, upstream: app, auth: [jwks] }\n  - { name: write, match: { path_prefix: /write }, upstream: app, auth: [rs], require: { scopes: [orders:write] } }\n  - { name: acme, match: { path_prefix: /acme }, upstream: app, auth: [rs], require: { claims: { tenant: acme } } }\n",
    );
    let gw = Gateway::start_env("", &body, &[("PORTCULLIS_TEST_SECRET", SECRET)]);
    Setup { up, gw }
}

fn bearer(gw: &Gateway, path: &str, token: &str) -> Response {
    request(
        gw.addr(),
        "GET",
        "localhost",
        path,
        &[("authorization", &format!("Bearer {token}"))],
        b"",
    )
}

fn assert_401(r: &Response, what: &str, token: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    if token.len() > 16 {
        assert!(
            !r.text().contains(&token[token.len() - 16..]),
            "{what}: body echoes the token"
        );
    }
}

#[test]
fn valid_tokens_for_every_algorithm_are_accepted() {
    let s = setup();
    let ed = EncodingKey::from_ed_pem(&read("ed_private.pem")).expect("ed key");
    let cases = [
        (
            "/rs/1",
            sign(Algorithm::RS256, &rsa(), None, &claims("https://rs.example.com")),
        ),
        (
            "/es/1",
            sign(Algorithm::ES256, &ec(), None, &claims("https://es.example.com")),
        ),
        (
            "/ed/1",
            sign(Algorithm::EdDSA, &ed, None, &claims("https://ed.example.com")),
        ),
        (
            "/hs/1",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                None,
                &claims("https://hs.example.com"),
            ),
        ),
        (
            "/jwks/1",
            sign(
                Algorithm::RS256,
                &rsa(),
                Some("k1"),
                &claims("https://jwks.example.com"),
            ),
        ),
        (
            "/jwks/2",
            sign(
                Algorithm::ES256,
                &ec(),
                Some("k2"),
                &claims("https://jwks.example.com"),
            ),
        ),
    ];
    for (path, token) in &cases {
        let r = bearer(&s.gw, path, token);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let seen = s.up.requests();
    assert_eq!(seen.len(), cases.len());
    for req in &seen {
        assert_eq!(req.header("x-consumer-id"), Some("alice"));
        assert_eq!(req.header("x-consumer-scopes"), Some("orders:read"));
        assert_eq!(req.header("x-tenant"), Some("acme"));
        assert_eq!(req.header("authorization"), None, "the token is stripped");
    }
}

#[test]
fn forged_and_malformed_tokens_are_refused() {
    let s = setup();
    let iss = "https://rs.example.com";
    let good = sign(Algorithm::RS256, &rsa(), None, &claims(iss));
    let parts: Vec<&str> = good.split('.').collect();
    let mut attacks: Vec<(&str, String)> = Vec::new();
    for none in ["none", "None", "NONE", "nOnE"] {
        attacks.push((
            "alg none",
            raw_token(&json!({"alg": none, "typ": "JWT"}), &claims(iss), b""),
        ));
    }
    attacks.push((
        "HS256 signed with the RSA public key (algorithm confusion)",
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&read("rsa_public.pem")),
            None,
            &claims(iss),
        ),
    ));
    attacks.push((
        "RS384, outside the allow-list",
        sign(Algorithm::RS384, &rsa(), None, &claims(iss)),
    ));
    attacks.push((
        "PS256, outside the allow-list",
        sign(Algorithm::PS256, &rsa(), None, &claims(iss)),
    ));
    let mut tampered = claims(iss);
    tampered["sub"] = json!("mallory");
    attacks.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(tampered.to_string()),
            parts[2]
        ),
    ));
    attacks.push((
        "tampered header",
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT", "kid": "x"}).to_string()),
            parts[1],
            parts[2]
        ),
    ));
    let mut sig = parts[2].to_string();
    let flipped = if sig.ends_with('A') { 'B' } else { 'A' };
    sig.pop();
    sig.push(flipped);
    attacks.push(("tampered signature", format!("{}.{}.{}", parts[0], parts[1], sig)));
    attacks.push(("two segments", format!("{}.{}", parts[0], parts[1])));
    attacks.push(("four segments", format!("{good}.{}", parts[2])));
    attacks.push(("bad base64", "@@@.###.$$$".replace(['@', '#', '$'], "!")));
    attacks.push(("bad base64 payload", format!("{}.%%%%.{}", parts[0], parts[2])));
    attacks.push((
        "oversized",
        format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
    ));
    for (what, claims_change) in [
        ("expired", json!({"exp": now() - 3600})),
        ("not yet valid", json!({"nbf": now() + 3600})),
        ("exp as a string", json!({"exp": (now() + 600).to_string()})),
        ("wrong issuer", json!({"iss": "https://evil.example.com"})),
        ("wrong audience", json!({"aud": "billing-api"})),
        ("issued in the future", json!({"iat": now() + 3600})),
        ("older than max_age", json!({"iat": now() - 7200})),
        ("sub of the wrong type", json!({"sub": 42})),
        (
            "CR LF in a forwarded claim",
            json!({"tenant": "acme\r\nx-evil: 1"}),
        ),
    ] {
        let mut c = claims(iss);
        for (k, v) in claims_change.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        attacks.push((what, sign(Algorithm::RS256, &rsa(), None, &c)));
    }
    let mut no_exp = claims(iss);
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    attacks.push(("missing exp", sign(Algorithm::RS256, &rsa(), None, &no_exp)));
    let hs_token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &claims("https://hs.example.com"),
    );
    attacks.push(("a valid token of another authenticator", hs_token));

    for (what, token) in &attacks {
        assert_401(&bearer(&s.gw, "/rs/x", token), what, token);
    }
    let two = request(
        s.gw.addr(),
        "GET",
        "localhost",
        "/rs/x",
        &[
            ("authorization", &format!("Bearer {good}")),
            ("authorization", &format!("Bearer {good}")),
        ],
        b"",
    );
    assert_401(&two, "two Authorization headers", &good);
    assert_eq!(
        s.up.count(),
        0,
        "upstream saw: {:?}",
        s.up.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert_eq!(
        bearer(&s.gw, "/rs/x", &good).status,
        200,
        "the unaltered token works"
    );
}

#[test]
fn ecdsa_all_zero_signature_is_refused() {
    let s = setup();
    let token = raw_token(
        &json!({"alg": "ES256", "typ": "JWT"}),
        &claims("https://es.example.com"),
        &[0u8; 64],
    );
    assert_401(&bearer(&s.gw, "/es/x", &token), "ES256 zero signature", &token);
    assert_eq!(s.up.count(), 0);
}

#[test]
fn hostile_kid_values_and_key_urls_are_never_followed() {
    let s = setup();
    let iss = "https://jwks.example.com";
    for kid in ["../../dev/null", "' OR 1=1 --", "$(reboot)", "k1\u{0}"] {
        let token = sign(Algorithm::RS256, &rsa(), Some(kid), &claims(iss));
        assert_401(&bearer(&s.gw, "/jwks/x", &token), kid, &token);
    }
    // A token signed by the attacker, pointing at the attacker's key server.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/jwks.json", trap.local_addr().expect("addr"));
    let attacker = EncodingKey::from_rsa_pem(&read("attacker_rsa_private.pem")).expect("attacker key");
    let mut header = Header::new(Algorithm::RS256);
    header.jku = Some(url.clone());
    header.x5u = Some(url);
    let token = encode(&header, &claims("https://rs.example.com"), &attacker).expect("sign");
    assert_401(&bearer(&s.gw, "/rs/x", &token), "jku/x5u to an attacker", &token);
    assert!(
        trap.accept().is_err(),
        "the gateway connected to the URL in the token"
    );
    assert_eq!(s.up.count(), 0);
}

#[test]
fn scopes_and_claims_are_authorized() {
    let s = setup();
    let iss = "https://rs.example.com";
    let reader = sign(Algorithm::RS256, &rsa(), None, &claims(iss));
    let r = bearer(&s.gw, "/write/1", &reader);
    assert_eq!(r.status, 403);
    assert!(r
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("insufficient_scope"));
    let mut writer = claims(iss);
    writer["scp"] = json!(["orders:read", "orders:write"]);
    writer.as_object_mut().map(|o| o.remove("scope"));
    assert_eq!(
        bearer(&s.gw, "/write/1", &sign(Algorithm::RS256, &rsa(), None, &writer)).status,
        200
    );
    assert_eq!(bearer(&s.gw, "/acme/1", &reader).status, 200);
    let mut other = claims(iss);
    other["tenant"] = json!("globex");
    assert_eq!(
        bearer(&s.gw, "/acme/1", &sign(Algorithm::RS256, &rsa(), None, &other)).status,
        403
    );
    assert_eq!(
        s.up.count(),
        2,
        "only the two permitted requests reached the upstream"
    );
}

#[test]
fn check_reports_jwt_mistakes() {
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nauth:\n  a:\n    type: jwt\n    issuers: []\n    algorithms: [none, RS256]\n    secret_env: PORTCULLIS_UNSET_SECRET\n  b:\n    type: jwt\n    issuers: [x]\n    algorithms: [ES256]\n    public_key_file: {}\n  c:\n    type: jwt\n    issuers: [x]\n    algorithms: [RS256]\n",
        fixture("rsa_public.pem")
    ));
    assert_eq!(out.code, 1);
    for want in [
        "auth.a.issuers: needs at least one issuer",
        "auth.a.algorithms[0]: `none` is not an accepted algorithm",
        "auth.a.secret_env: environment variable PORTCULLIS_UNSET_SECRET is not set",
        "auth.b.algorithms: ES256 is allowed but no configured key can verify it",
        "auth.c.secret_env: needs one key source",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}

#[test]
fn a_cached_token_still_expires() {
    let s = setup();
    let mut c = claims("https://rs.example.com");
    c["exp"] = json!(now() + 2);
    let token = sign(Algorithm::RS256, &rsa(), None, &c);
    assert_eq!(bearer(&s.gw, "/rs/1", &token).status, 200);
    assert_eq!(
        bearer(&s.gw, "/rs/2", &token).status,
        200,
        "served from the cache"
    );
    // Once `exp` has passed the cache must not answer for it (leeway covers only the full check).
    let r = wait_for(
        "the cached token to expire",
        std::time::Duration::from_secs(45),
        || {
            let r = bearer(&s.gw, "/rs/3", &token);
            (r.status == 401).then_some(r)
        },
    );
    assert_401(&r, "expired after caching", &token);
}

#[test]
fn removing_a_key_by_reload_rejects_its_cached_tokens() {
    let up = Upstream::start("app");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks.json"), &jwks).expect("copy jwks");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  j:\n    type: jwt\n    issuers: [\"https://jwks.example.com\"]\n    audiences: [orders-api]\n    algorithms: [RS256, ES256]\n    jwks_file: {}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, auth: [j] }}\n",
        up.addr(),
        jwks.display()
    ));
    let token = sign(
        Algorithm::RS256,
        &rsa(),
        Some("k1"),
        &claims("https://jwks.example.com"),
    );
    assert_eq!(bearer(&gw, "/a", &token).status, 200);
    assert_eq!(bearer(&gw, "/b", &token).status, 200);
    // Rotate: `k1` is withdrawn and the RSA key is published again as `k1-new`.
    let mut set: Value = serde_json::from_slice(&read("jwks.json")).expect("jwks json");
    for key in set["keys"].as_array_mut().expect("keys") {
        if key["kid"] == "k1" {
            key["kid"] = json!("k1-new");
        }
    }
    std::fs::write(&jwks, set.to_string()).expect("write jwks");
    let out = std::process::Command::new(BIN)
        .args(["reload", "-c"])
        .arg(gw.config_path())
        .output()
        .expect("reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_401(&bearer(&gw, "/c", &token), "token of a removed key", &token);
    let rotated = sign(
        Algorithm::RS256,
        &rsa(),
        Some("k1-new"),
        &claims("https://jwks.example.com"),
    );
    assert_eq!(bearer(&gw, "/d", &rotated).status, 200, "the new kid is accepted");
}

/// RFC strictness found missing by the review: unknown critical header parameters and
/// unencoded payloads are refused, an empty `sub` is no consumer, scopes split on spaces only,
/// forwarded claims never carry control characters (tab included) — and valid NumericDates
/// that are negative, zero or fractional are accepted.
#[test]
fn header_extensions_subjects_scopes_and_numeric_dates() {
    let s = setup();
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let hs_claims = claims("https://hs.example.com");
    let signed = |header: Header, claims: &Value| encode(&header, claims, &hs).expect("sign");

    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["x-must-understand".into()]);
    crit.extras.insert("x-must-understand", true);
    let token = signed(crit, &hs_claims);
    assert_401(&bearer(&s.gw, "/hs", &token), "unknown crit", &token);

    let mut unencoded = Header::new(Algorithm::HS256);
    unencoded.extras.insert("b64", false);
    let token = signed(unencoded, &hs_claims);
    assert_401(&bearer(&s.gw, "/hs", &token), "b64: false", &token);

    let mut empty_sub = hs_claims.clone();
    empty_sub["sub"] = json!("");
    let token = signed(Header::new(Algorithm::HS256), &empty_sub);
    assert_401(&bearer(&s.gw, "/hs", &token), "empty sub", &token);
    assert_eq!(s.up.count(), 0, "none of them reached the upstream");

    for (what, nbf, exp) in [
        ("negative nbf", json!(-1), json!(now() + 600)),
        ("zero nbf", json!(0), json!(now() + 600)),
        (
            "fractional dates",
            json!(now() as f64 - 0.5),
            json!(now() as f64 + 600.25),
        ),
    ] {
        let mut c = hs_claims.clone();
        c["nbf"] = nbf;
        c["exp"] = exp;
        let r = bearer(&s.gw, "/hs", &signed(Header::new(Algorithm::HS256), &c));
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
    let mut expired = hs_claims.clone();
    expired["exp"] = json!(now() as f64 - 60.5);
    let token = signed(Header::new(Algorithm::HS256), &expired);
    assert_401(
        &bearer(&s.gw, "/hs", &token),
        "a fractional exp in the past",
        &token,
    );

    let mut tabbed = claims("https://rs.example.com");
    tabbed["scope"] = json!("orders:read\torders:write");
    let r = bearer(&s.gw, "/write", &sign(Algorithm::RS256, &rsa(), None, &tabbed));
    assert_eq!(r.status, 403, "a tab does not separate scopes: {}", r.text());
    let mut tenant = claims("https://rs.example.com");
    tenant["tenant"] = json!("acme\tadmin");
    let token = sign(Algorithm::RS256, &rsa(), None, &tenant);
    assert_401(
        &bearer(&s.gw, "/rs", &token),
        "a tab in a forwarded claim",
        &token,
    );
    assert_eq!(
        s.up.count(),
        3,
        "only the three valid tokens reached the upstream"
    );
}
