//! The system trust store, read lazily.
//!
//! OpenSSL's default verify paths load the whole CA bundle file (about 140 certificates)
//! eagerly, once per TLS context, and Pingora builds a context for every connector: two per
//! HTTP connector (HTTP/1 and HTTP/2), one per health check, whether or not any upstream speaks
//! TLS. Measured (scenario A of `benches/load/run.sh`: one plain-HTTP upstream): five parsed
//! bundles, 5.1 MiB of the gateway's 28 MiB, and one more per upstream with a health check.
//!
//! The same certificates sit in the system's hashed directory (the `<subject hash>.N` links
//! `update-ca-certificates` and `c_rehash` maintain beside the bundle), which OpenSSL reads one
//! issuer at a time, only when a chain needs it. So when the operator has set neither
//! `SSL_CERT_FILE` nor `SSL_CERT_DIR`, and such a directory exists, the gateway points OpenSSL at
//! that directory alone. An operator who wants the bundle file (or another store) sets either
//! variable, and the gateway leaves both alone.

use std::path::Path;

/// Where distributions keep the hashed directory (the places `openssl-probe` looks, which
/// Pingora uses to find the bundle).
const CANDIDATES: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust/extracted/pem/directory-hash",
    "/usr/lib/ssl/certs",
    "/usr/local/ssl/certs",
    "/usr/local/share/certs",
    "/etc/openssl/certs",
];

/// Bundle files a distribution keeps beside (or above) its hashed directory.
const BUNDLES: &[&str] = &[
    "ca-certificates.crt",
    "ca-bundle.crt",
    "tls-ca-bundle.pem",
    "ca-bundle.pem",
    "cert.pem",
];

static CHOSEN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Point OpenSSL at the hashed system directory (see the module documentation); the directory
/// chosen, if any.
///
/// # Safety
/// It sets environment variables: call it before any other thread exists (`main` does, first).
pub unsafe fn prefer_hashed_directory() -> Option<&'static str> {
    let operator_set = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if operator_set {
        return None;
    }
    let dir = hashed_directory(CANDIDATES)?;
    std::env::set_var("SSL_CERT_DIR", dir);
    // An existing file without certificates: the bundle is not read, and `openssl-probe`
    // (which replaces a path that does not exist) keeps it.
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
    let _ = CHOSEN.set(dir);
    Some(dir)
}

/// The directory [`prefer_hashed_directory`] chose, for the log.
pub fn chosen() -> Option<&'static str> {
    CHOSEN.get().copied()
}

/// The first of `candidates` holding OpenSSL's hashed links, at least as many as the bundle
/// beside it holds certificates (a directory with a stray link or two is not the trust store).
fn hashed_directory<'a>(candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().find(|dir| {
        let dir = Path::new(dir);
        let links = hashed_links(dir);
        links > 0 && bundle_certificates(dir).is_none_or(|in_bundle| links >= in_bundle)
    })
}

/// How many certificates the bundle in `dir` or its parent holds, if there is one.
fn bundle_certificates(dir: &Path) -> Option<usize> {
    let places = [Some(dir), dir.parent()];
    let bundle = places
        .iter()
        .flatten()
        .flat_map(|d| BUNDLES.iter().map(move |b| d.join(b)))
        .find(|f| f.is_file())?;
    let text = std::fs::read(bundle).ok()?;
    let marker = b"-----BEGIN CERTIFICATE-----";
    Some(text.windows(marker.len()).filter(|w| w == marker).count())
}

/// How many readable `<8 hex digits>.<digits>` certificates `dir` has.
fn hashed_links(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let hashed = match name.split_once('.') {
                Some((hash, n)) => {
                    hash.len() == 8
                        && hash.bytes().all(|b| b.is_ascii_hexdigit())
                        && !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                }
                None => false,
            };
            // `metadata` follows the link: a dangling one does not count.
            hashed && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_directory_with_hashed_certificates_is_chosen() {
        let plain = tempfile::tempdir().unwrap();
        std::fs::write(plain.path().join("ca-certificates.crt"), "x").unwrap();
        std::fs::write(plain.path().join("README.0"), "x").unwrap();
        let dangling = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent/ca.pem", dangling.path().join("0a1b2c3d.0")).unwrap();
        let hashed = tempfile::tempdir().unwrap();
        std::fs::write(hashed.path().join("ca.pem"), "x").unwrap();
        std::os::unix::fs::symlink(hashed.path().join("ca.pem"), hashed.path().join("0a1b2c3d.0")).unwrap();

        let (p, d, h) = (
            plain.path().to_str().unwrap(),
            dangling.path().to_str().unwrap(),
            hashed.path().to_str().unwrap(),
        );
        assert_eq!(hashed_directory(&["/nonexistent", p, d, h]), Some(h));
        assert_eq!(hashed_directory(&[p, d]), None);

        // Fewer links than the bundle beside them has certificates: not the trust store.
        let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        std::fs::write(hashed.path().join("ca-certificates.crt"), pem.repeat(2)).unwrap();
        assert_eq!(hashed_directory(&[h]), None);
        std::fs::write(hashed.path().join("ca-certificates.crt"), pem).unwrap();
        assert_eq!(hashed_directory(&[h]), Some(h));
    }
}
