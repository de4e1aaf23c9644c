//! Test-only JWTs for the load benchmark: `tokens ALG COUNT KEY OUT`.
//! ALG is HS256 (KEY: the secret), RS256 or ES256 (KEY: a private key PEM file). Each token
//! has its own `sub` (`user-<n>`), issuer `https://bench.example.com` and a day of validity.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alg, count, key, out] = args.as_slice() else {
        eprintln!("usage: tokens HS256|RS256|ES256 COUNT KEY OUT");
        std::process::exit(2);
    };
    let (algorithm, key) = match alg.as_str() {
        "HS256" => (Algorithm::HS256, Ok(EncodingKey::from_secret(key.as_bytes()))),
        "RS256" => (
            Algorithm::RS256,
            read(key).and_then(|k| EncodingKey::from_rsa_pem(&k).map_err(|e| e.to_string())),
        ),
        "ES256" => (
            Algorithm::ES256,
            read(key).and_then(|k| EncodingKey::from_ec_pem(&k).map_err(|e| e.to_string())),
        ),
        other => {
            eprintln!("unknown algorithm {other}");
            std::process::exit(2);
        }
    };
    let key = key.unwrap_or_else(|e| {
        eprintln!("bad key: {e}");
        std::process::exit(2);
    });
    let count: usize = count.parse().unwrap_or(1);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let mut text = String::new();
    for i in 0..count {
        let claims = serde_json::json!({
            "sub": format!("user-{i}"),
            "iss": "https://bench.example.com",
            "exp": exp,
        });
        match encode(&Header::new(algorithm), &claims, &key) {
            Ok(t) => {
                text.push_str(&t);
                text.push('\n');
            }
            Err(e) => {
                eprintln!("cannot sign: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Err(e) = std::fs::write(out, text) {
        eprintln!("cannot write {out}: {e}");
        std::process::exit(1);
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}
