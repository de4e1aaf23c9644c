//! Minting certificates: the demo's own certificate authority and server certificate (so
//! `scripts/run.sh` serves HTTPS with nothing to install), and the test suite's CAs, server
//! and client certificates. Never for production: keys are generated on the spot, P-256.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate with its private key.
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Issued {
    /// Write `<stem>.pem` (this certificate, then `chain`) and `<stem>.key` (mode 0600).
    pub fn write(&self, dir: &Path, stem: &str, chain: &[&X509]) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        let mut pem = self.cert.to_pem().map_err(std::io::Error::other)?;
        for c in chain {
            pem.extend(c.to_pem().map_err(std::io::Error::other)?);
        }
        std::fs::write(&cert_path, pem)?;
        let key = self
            .key
            .private_key_to_pem_pkcs8()
            .map_err(std::io::Error::other)?;
        write_private(&key_path, &key)?;
        Ok((cert_path, key_path))
    }
}

/// A certificate authority that signs with its own key.
pub struct Authority {
    pub issued: Issued,
}

impl Authority {
    /// A self-signed CA valid for ten years.
    pub fn new(common_name: &str) -> Result<Authority, ErrorStack> {
        let key = new_key()?;
        let mut b = builder(common_name, &key, 3650)?;
        let issuer = name(common_name)?;
        b.set_issuer_name(&issuer)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Authority {
            issued: Issued { cert: b.build(), key },
        })
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, common_name: &str) -> Result<Authority, ErrorStack> {
        let key = new_key()?;
        let mut b = builder(common_name, &key, 3650)?;
        b.set_issuer_name(self.issued.cert.subject_name())?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.issued.cert), None))?;
        b.append_extension(ski)?;
        b.sign(&self.issued.key, MessageDigest::sha256())?;
        Ok(Authority {
            issued: Issued { cert: b.build(), key },
        })
    }

    /// A leaf for `names` (DNS names; the first is also the common name), valid for
    /// `valid_days` from now (negative: it expired that many days ago).
    pub fn issue(&self, names: &[&str], valid_days: i64, usage: Usage) -> Result<Issued, ErrorStack> {
        let key = new_key()?;
        let common_name = names.first().copied().unwrap_or("portcullis");
        let mut b = builder(common_name, &key, valid_days)?;
        b.set_issuer_name(self.issued.cert.subject_name())?;
        b.append_extension(BasicConstraints::new().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        let eku = match usage {
            Usage::Server => ExtendedKeyUsage::new().server_auth().build()?,
            Usage::Client => ExtendedKeyUsage::new().client_auth().build()?,
        };
        b.append_extension(eku)?;
        if !names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in names {
                match n.parse::<std::net::IpAddr>() {
                    Ok(_) => san.ip(n),
                    Err(_) => san.dns(n),
                };
            }
            let san = san.build(&b.x509v3_context(Some(&self.issued.cert), None))?;
            b.append_extension(san)?;
        }
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(&self.issued.cert), None))?;
        b.append_extension(aki)?;
        b.sign(&self.issued.key, MessageDigest::sha256())?;
        Ok(Issued { cert: b.build(), key })
    }
}

fn new_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn name(common_name: &str) -> Result<openssl::x509::X509Name, ErrorStack> {
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(n.build())
}

/// Version, serial, subject, key and validity; the caller adds issuer and extensions.
fn builder(common_name: &str, key: &PKey<Private>, valid_days: i64) -> Result<X509Builder, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    let subject = name(common_name)?;
    b.set_subject_name(&subject)?;
    b.set_pubkey(key)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Back-dated a day (clock skew), and long enough before an expired end.
    let start = now - 86_400 * (1 + (-valid_days).max(0));
    b.set_not_before(Asn1Time::from_unix(start)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix(now + 86_400 * valid_days)?.as_ref())?;
    Ok(b)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies to a new file only: an existing key file is narrowed too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

/// `portcullis demo-cert DIR`: a local CA (`demo-ca.pem`) and a certificate for `localhost`,
/// `127.0.0.1` and `::1` signed by it (`demo.pem`, `demo.key`), so the example configuration
/// serves HTTPS that `curl --cacert DIR/demo-ca.pem` verifies. One still valid for 14 days or
/// more is kept (restarting the demo does not change what clients trust).
pub fn demo(dir: &Path) -> Result<String, String> {
    let cert = dir.join("demo.pem");
    let key = dir.join("demo.key");
    if let Ok(existing) = crate::tls::certificates::Certificate::load(&cert, &key) {
        if existing.days_left() >= crate::tls::certificates::EXPIRY_WARNING_DAYS {
            return Ok(format!("kept {} ({})", cert.display(), existing.describe()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca = Authority::new("Portcullis demo CA").map_err(|e| e.to_string())?;
    let leaf = ca
        .issue(&["localhost", "127.0.0.1", "::1"], 90, Usage::Server)
        .map_err(|e| e.to_string())?;
    leaf.write(dir, "demo", &[])
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    let ca_file = dir.join("demo-ca.pem");
    let ca_pem = ca.issued.cert.to_pem().map_err(|e| e.to_string())?;
    std::fs::write(&ca_file, ca_pem).map_err(|e| format!("cannot write {}: {e}", ca_file.display()))?;
    Ok(format!(
        "wrote {} and {} (trust {} to verify it)",
        cert.display(),
        key.display(),
        ca_file.display()
    ))
}
