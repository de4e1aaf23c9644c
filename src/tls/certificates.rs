//! A listener's certificates: read from PEM files, checked the way `check` promises (the key
//! matches, the chain is in order, not expired), and chosen per handshake by SNI.
//!
//! A set is immutable. A live reload reads the files again into a new set and swaps it in
//! with the rest of the snapshot, so a renewed certificate serves new handshakes while
//! established connections keep theirs; a file that cannot be used refuses the reload and the
//! old set stays.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509VerifyResult, X509};

/// Within this many days of its end a certificate is reported by `check` (and logged at load).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// One certificate with its key, as the handshake needs them.
pub struct Certificate {
    /// The name operators know it by: its first DNS name, else its subject's common name.
    pub name: String,
    /// DNS names (`subjectAltName`), lowercased, wildcards as written (`*.example.com`).
    pub dns_names: Vec<String>,
    pub leaf: X509,
    /// The intermediates, leaf's issuer first.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// Seconds since the Unix epoch at which it stops being valid.
    pub not_after: i64,
    /// Where it was read from, for messages.
    pub cert_file: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("dns_names", &self.dns_names)
            .field("not_after", &self.not_after)
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Read `cert_file` (the leaf, then its intermediates) and `key_file`. Every reason it
    /// cannot serve is an error; an expiry within [`EXPIRY_WARNING_DAYS`] is not.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Certificate, String> {
        let pem = crate::config::read_bounded_bytes(cert_file)
            .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))?;
        let mut certs = X509::stack_from_pem(&pem)
            .map_err(|e| {
                format!(
                    "{} is not a PEM certificate: {}",
                    cert_file.display(),
                    first_reason(&e)
                )
            })?
            .into_iter();
        let Some(leaf) = certs.next() else {
            return Err(format!("{} holds no certificate", cert_file.display()));
        };
        let chain: Vec<X509> = certs.collect();
        let key_pem = crate::config::read_bounded_bytes(key_file)
            .map_err(|e| format!("cannot read {}: {e}", key_file.display()))?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|e| {
            format!(
                "{} is not a PEM private key: {}",
                key_file.display(),
                first_reason(&e)
            )
        })?;
        let public = leaf.public_key().map_err(|e| {
            format!(
                "{}: unreadable public key: {}",
                cert_file.display(),
                first_reason(&e)
            )
        })?;
        if !public.public_eq(&key) {
            return Err(format!(
                "the key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ));
        }
        let mut issued = &leaf;
        for (i, issuer) in chain.iter().enumerate() {
            if issuer.issued(issued) != X509VerifyResult::OK {
                return Err(format!(
                    "{}: certificate {} of the chain did not issue the one before it \
                     (expected the leaf first, then each issuer in order)",
                    cert_file.display(),
                    i + 2
                ));
            }
            issued = issuer;
        }
        let not_after = unix_time(leaf.not_after())
            .ok_or_else(|| format!("{}: unreadable expiry date", cert_file.display()))?;
        let now = now_unix();
        if not_after <= now {
            return Err(format!(
                "the certificate in {} expired on {}",
                cert_file.display(),
                leaf.not_after()
            ));
        }
        for (i, c) in chain.iter().enumerate() {
            if unix_time(c.not_after()).is_some_and(|t| t <= now) {
                return Err(format!(
                    "{}: certificate {} of the chain expired on {}",
                    cert_file.display(),
                    i + 2,
                    c.not_after()
                ));
            }
        }
        let dns_names: Vec<String> = leaf
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.dnsname().map(|d| d.trim_end_matches('.').to_ascii_lowercase()))
                    .collect()
            })
            .unwrap_or_default();
        let common_name = leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        let name = dns_names
            .first()
            .cloned()
            .or(common_name)
            .unwrap_or_else(|| cert_file.display().to_string());
        Ok(Certificate {
            name,
            dns_names,
            leaf,
            chain,
            key,
            not_after,
            cert_file: cert_file.display().to_string(),
        })
    }

    /// Whole days until it expires (negative once it has).
    pub fn days_left(&self) -> i64 {
        (self.not_after - now_unix()).div_euclid(86_400)
    }

    /// A line for `check` and the start log: names, expiry, and a warning when it is close.
    pub fn describe(&self) -> String {
        let days = self.days_left();
        let names = if self.dns_names.is_empty() {
            "no DNS names (served only as the default)".to_string()
        } else {
            self.dns_names.join(", ")
        };
        let warning = if days < EXPIRY_WARNING_DAYS {
            " — WARNING: renew it"
        } else {
            ""
        };
        format!(
            "{} [{names}] expires {} (in {days} days){warning}",
            self.cert_file,
            self.leaf.not_after()
        )
    }
}

/// The certificates of one listener, and the index that picks one by SNI.
#[derive(Debug)]
pub struct CertificateSet {
    certificates: Vec<Certificate>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com`: it covers exactly one more label.
    wildcard: HashMap<String, usize>,
}

impl CertificateSet {
    /// The first certificate is the default; an earlier certificate wins a name two share.
    pub fn new(certificates: Vec<Certificate>) -> Option<CertificateSet> {
        if certificates.is_empty() {
            return None;
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certificates.iter().enumerate() {
            for name in &c.dns_names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Some(CertificateSet {
            certificates,
            exact,
            wildcard,
        })
    }

    /// The certificate for a client's SNI name: an exact name, then a wildcard one label up,
    /// else the default (no SNI, an IP address, or a name no certificate lists).
    pub fn select(&self, server_name: Option<&str>) -> &Certificate {
        let found = server_name.and_then(|raw| {
            let name = raw.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).copied().or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent).copied()
            })
        });
        &self.certificates[found.unwrap_or(0)]
    }

    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }
}

/// Set `portcullis_tls_certificate_expiry_seconds` to exactly the certificates being served.
pub fn publish_expiry<'a>(sets: impl Iterator<Item = &'a std::sync::Arc<CertificateSet>>) {
    // Two certificates may share a name (RSA and ECDSA, two listeners): the one that expires
    // first is the one to alert on.
    let mut soonest: HashMap<&str, i64> = HashMap::new();
    for c in sets.flat_map(|s| s.certificates()) {
        let at = soonest.entry(c.name.as_str()).or_insert(c.not_after);
        *at = (*at).min(c.not_after);
    }
    let gauge = &crate::observe::metrics::get().tls_certificate_expiry;
    gauge.reset();
    for (name, at) in soonest {
        gauge.with_label_values(&[name]).set(at);
    }
}

/// A PEM file of CA certificates (client CAs, upstream CAs): at least one.
pub fn read_ca_file(path: &Path) -> Result<Vec<X509>, String> {
    let pem = crate::config::read_bounded_bytes(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| {
        format!(
            "{} is not a PEM certificate file: {}",
            path.display(),
            first_reason(&e)
        )
    })?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The first line of an OpenSSL error stack, which is the one that says what went wrong.
fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An ASN.1 time as seconds since the Unix epoch.
fn unix_time(t: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::mint::{Authority, Usage};

    fn leaf(
        ca: &Authority,
        dir: &Path,
        stem: &str,
        names: &[&str],
        days: i64,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        ca.issue(names, days, Usage::Server)
            .expect("issue")
            .write(dir, stem, &[])
            .expect("write")
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let ca = Authority::new("test ca").expect("ca");
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = leaf(&ca, dir.path(), "a", &["a.test"], 30);
        let a = Certificate::load(&c, &k).expect("a");
        let (c, k) = leaf(&ca, dir.path(), "w", &["*.b.test", "b.test"], 30);
        let w = Certificate::load(&c, &k).expect("w");
        let set = CertificateSet::new(vec![a, w]).expect("set");
        assert_eq!(set.select(Some("A.TEST.")).name, "a.test");
        assert_eq!(set.select(Some("x.b.test")).name, "*.b.test");
        assert_eq!(set.select(Some("b.test")).name, "*.b.test");
        // A wildcard covers one label only.
        assert_eq!(set.select(Some("y.x.b.test")).name, "a.test");
        assert_eq!(set.select(None).name, "a.test");
    }

    #[test]
    fn a_mismatched_key_an_expired_certificate_and_a_chain_out_of_order_are_refused() {
        let ca = Authority::new("test ca").expect("ca");
        let dir = tempfile::tempdir().expect("dir");
        let (one, _) = leaf(&ca, dir.path(), "one", &["one.test"], 30);
        let (_, two_key) = leaf(&ca, dir.path(), "two", &["two.test"], 30);
        let err = Certificate::load(&one, &two_key).expect_err("mismatch");
        assert!(err.contains("does not match"), "{err}");
        let (c, k) = leaf(&ca, dir.path(), "old", &["old.test"], -1);
        let err = Certificate::load(&c, &k).expect_err("expired");
        assert!(err.contains("expired"), "{err}");
        let mid = ca.intermediate("mid").expect("intermediate");
        let issued = mid.issue(&["c.test"], 30, Usage::Server).expect("leaf");
        let (c, k) = issued
            .write(dir.path(), "chained", &[&mid.issued.cert])
            .expect("write");
        assert_eq!(Certificate::load(&c, &k).expect("in order").chain.len(), 1);
        let (c, k) = issued
            .write(dir.path(), "unordered", &[&ca.issued.cert, &mid.issued.cert])
            .expect("write");
        let err = Certificate::load(&c, &k).expect_err("out of order");
        assert!(err.contains("did not issue"), "{err}");
    }
}
