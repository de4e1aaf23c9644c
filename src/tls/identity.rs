//! The identity a verified client certificate carries, taken once per connection when its
//! handshake completes and read by `mtls` authenticators from the connection's TLS digest.

use openssl::nid::Nid;
use openssl::ssl::SslRef;
use openssl::x509::X509VerifyResult;

/// Who a client certificate names, and which listener (so which `client_ca`) verified it.
/// Only built from a certificate that verified against that listener's `client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The listener's address as configured.
    pub listener: String,
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
    /// Subject alternative names by kind.
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
}

/// Which of a certificate's names a subject is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Any of them (a subject written without a `cn:`/`dns:`/`uri:`/`email:` prefix).
    Any,
    CommonName,
    Dns,
    Uri,
    Email,
}

impl NameKind {
    /// `cn:billing` → (CommonName, `billing`); no known prefix → (Any, the whole text).
    pub fn split(text: &str) -> (NameKind, &str) {
        for (prefix, kind) in [
            ("cn:", NameKind::CommonName),
            ("dns:", NameKind::Dns),
            ("uri:", NameKind::Uri),
            ("email:", NameKind::Email),
        ] {
            if let Some(rest) = text.strip_prefix(prefix) {
                return (kind, rest);
            }
        }
        (NameKind::Any, text)
    }
}

impl ClientIdentity {
    /// The verified peer certificate's names, if the client presented one and it verified.
    pub fn from_handshake(ssl: &SslRef, listener: &str) -> Option<ClientIdentity> {
        let cert = ssl.peer_certificate()?;
        if ssl.verify_result() != X509VerifyResult::OK {
            return None;
        }
        let common_name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        let mut id = ClientIdentity {
            listener: listener.to_string(),
            common_name,
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
        };
        for name in cert.subject_alt_names().iter().flatten() {
            if let Some(d) = name.dnsname() {
                id.dns.push(d.to_string());
            } else if let Some(u) = name.uri() {
                id.uris.push(u.to_string());
            } else if let Some(e) = name.email() {
                id.emails.push(e.to_string());
            }
        }
        Some(id)
    }

    /// The names of `kind`, in order: common name, DNS, URI, e-mail.
    pub fn names(&self, kind: NameKind) -> impl Iterator<Item = &str> {
        let pick = move |k: NameKind| kind == NameKind::Any || kind == k;
        let cn = self
            .common_name
            .iter()
            .filter(move |_| pick(NameKind::CommonName));
        let dns = self.dns.iter().filter(move |_| pick(NameKind::Dns));
        let uris = self.uris.iter().filter(move |_| pick(NameKind::Uri));
        let emails = self.emails.iter().filter(move |_| pick(NameKind::Email));
        cn.chain(dns).chain(uris).chain(emails).map(String::as_str)
    }
}
