//! The identity a verified client certificate carries, taken once per connection when its
//! handshake completes and read by `mtls` authenticators from the connection's TLS digest.

use openssl::nid::Nid;
use openssl::ssl::SslRef;
use openssl::x509::X509VerifyResult;

/// Who a client certificate names. Only built from a certificate that verified against the
/// listener's `client_ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
    /// Subject alternative names: DNS names, URIs (SPIFFE IDs), e-mail addresses.
    pub alt_names: Vec<String>,
}

impl ClientIdentity {
    /// The verified peer certificate's names, if the client presented one and it verified.
    pub fn from_handshake(ssl: &SslRef) -> Option<ClientIdentity> {
        let cert = ssl.peer_certificate()?;
        if ssl.verify_result() != X509VerifyResult::OK {
            return None;
        }
        let common_name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        let alt_names = cert
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| {
                        n.dnsname()
                            .or_else(|| n.uri())
                            .or_else(|| n.email())
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ClientIdentity {
            common_name,
            alt_names,
        })
    }

    /// Every name it can be matched by: the common name first, then each alternative name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.common_name
            .iter()
            .chain(self.alt_names.iter())
            .map(String::as_str)
    }
}
