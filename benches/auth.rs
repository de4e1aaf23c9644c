//! Authentication micro-benchmarks: JWT verification per algorithm, cold (cache disabled) and
//! cached, and API-key lookup. Run with `cargo bench --bench auth`.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::auth::api_key::ApiKeys;
use portcullis::auth::jwt::JwtVerifier;
use portcullis::config::{ApiKeyEntry, CredentialSource, JwtConfig, JwtKeySource};

const SECRET: &[u8] = b"bench-only-hmac-secret-0123456789abcdef";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn verifier(alg: Algorithm, keys: JwtKeySource, cache_entries: usize) -> JwtVerifier {
    JwtVerifier::compile(
        &JwtConfig {
            issuers: vec!["https://bench.example.com".into()],
            audiences: vec![],
            algorithms: vec![alg],
            keys,
            leeway: Duration::from_secs(30),
            max_age: None,
            required_claims: vec![],
            token_from: vec![CredentialSource::Header(http::header::AUTHORIZATION)],
            forward_claims: vec![],
            cache_entries,
        },
        &[],
        None,
    )
    .expect("verifier")
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({"iss": "https://bench.example.com", "sub": "alice", "exp": now + 3600, "iat": now, "scope": "orders:read"});
    encode(&Header::new(alg), &claims, key).expect("sign")
}

fn jwt(c: &mut Criterion) {
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("ec");
    let ed = EncodingKey::from_ed_pem(&fixture("ed_private.pem")).expect("ed");
    let hmac = EncodingKey::from_secret(SECRET);
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            JwtKeySource::Secret(SECRET.to_vec()),
            &hmac,
        ),
        (
            "RS256",
            Algorithm::RS256,
            JwtKeySource::PublicKeyPem(fixture("rsa_public.pem")),
            &rsa,
        ),
        (
            "PS256",
            Algorithm::PS256,
            JwtKeySource::PublicKeyPem(fixture("rsa_public.pem")),
            &rsa,
        ),
        (
            "ES256",
            Algorithm::ES256,
            JwtKeySource::PublicKeyPem(fixture("ec_public.pem")),
            &ec,
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            JwtKeySource::PublicKeyPem(fixture("ed_public.pem")),
            &ed,
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, alg, keys, signing) in cases {
        let t = token(alg, signing);
        let cold = verifier(alg, keys.clone(), 0);
        assert!(cold.verify(&t).is_ok(), "{name} token must verify");
        group.bench_function(format!("{name}/cold"), |b| {
            b.iter(|| black_box(cold.verify(black_box(&t))))
        });
        let cached = verifier(alg, keys, 10_000);
        group.bench_function(format!("{name}/cached"), |b| {
            b.iter(|| black_box(cached.verify(black_box(&t))))
        });
    }
    group.finish();
}

fn api_keys(c: &mut Criterion) {
    let entries: Vec<ApiKeyEntry> = (0..10_000)
        .map(|i| {
            let mut sha256 = [0u8; 32];
            let hex = portcullis::auth::api_key::sha256_hex(&format!("key-{i}"));
            for (j, byte) in sha256.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).unwrap_or(0);
            }
            ApiKeyEntry {
                sha256,
                consumer: format!("c{i}"),
                plan: None,
                scopes: vec![],
                roles: vec![],
            }
        })
        .collect();
    let keys = ApiKeys::new(entries);
    assert!(keys.lookup("key-4242").is_some());
    c.bench_function("api_key_lookup/hit_10k_keys", |b| {
        b.iter(|| black_box(keys.lookup(black_box("key-4242"))))
    });
    c.bench_function("api_key_lookup/miss_10k_keys", |b| {
        b.iter(|| black_box(keys.lookup(black_box("nope"))))
    });
}

criterion_group!(benches, jwt, api_keys);
criterion_main!(benches);
