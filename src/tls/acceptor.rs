//! A TLS listener's acceptor: Mozilla "intermediate" ciphers with TLS 1.2 or 1.3 at least,
//! ALPN, optional client certificates, the certificate chosen per handshake by SNI from the
//! current snapshot (so a live reload serves renewed certificates to new handshakes), and
//! handshake counts by result and version.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use openssl::ex_data::Index;
use openssl::ssl::{ClientHelloResponse, NameType, Ssl, SslAlert, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::X509Name;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, ALPN};
use pingora::tls::ext;

use super::certificates::CertificateSet;
use super::identity::ClientIdentity;
use crate::config::{Alpn, ClientAuth, ListenerTls, TlsVersion};
use crate::observe::metrics;
use crate::runtime::Runtime;

/// Build the TLS settings of listener `addr`. `startup` is its certificate set at start: it
/// serves if a reloaded configuration no longer names this listener (the listener itself only
/// goes away with an upgrade).
pub fn settings(
    addr: &str,
    tls: &ListenerTls,
    runtime: Arc<Runtime>,
    startup: Arc<CertificateSet>,
) -> Result<TlsSettings, String> {
    let callbacks = Callbacks {
        addr: addr.to_string(),
        runtime,
        startup,
    };
    let context = |what: &str, e: openssl::error::ErrorStack| format!("listener {addr}: {what}: {e}");
    let mut s =
        TlsSettings::with_callbacks(Box::new(callbacks)).map_err(|e| format!("listener {addr}: {e}"))?;
    let min = match tls.min_version {
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    };
    s.set_min_proto_version(Some(min))
        .map_err(|e| context("minimum version", e))?;
    match tls.alpn {
        Alpn::H2Http1 => s.enable_h2(),
        Alpn::Http1 => s.set_alpn(ALPN::H1),
        Alpn::H2 => s.set_alpn(ALPN::H2),
    }
    if let Some(ca) = &tls.client_ca {
        s.set_ca_file(ca).map_err(|e| context("client_ca", e))?;
        let names = X509Name::load_client_ca_file(ca).map_err(|e| context("client_ca", e))?;
        s.set_client_ca_list(names);
        let mode = match tls.client_auth {
            ClientAuth::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            ClientAuth::Optional | ClientAuth::None => SslVerifyMode::PEER,
        };
        s.set_verify(mode);
        // Resumed sessions keep their verified peer; OpenSSL refuses to resume (and fails
        // the handshake) without a context naming whose sessions they are.
        s.set_session_id_context(b"portcullis")
            .map_err(|e| context("session id context", e))?;
    }
    s.set_client_hello_callback(count_handshake);
    Ok(s)
}

struct Callbacks {
    addr: String,
    runtime: Arc<Runtime>,
    startup: Arc<CertificateSet>,
}

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let snapshot = self.runtime.load();
        let set = snapshot.certificates.get(&self.addr).unwrap_or(&self.startup);
        let server_name = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let cert = set.select(server_name.as_deref());
        let used = ext::ssl_use_certificate(ssl, &cert.leaf)
            .and_then(|()| ext::ssl_use_private_key(ssl, &cert.key))
            .and_then(|()| {
                cert.chain
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = used {
            // The handshake then fails for want of a certificate; the client sees an alert.
            log::error!(
                "listener {}: cannot use certificate {}: {e}",
                self.addr,
                cert.cert_file
            );
        }
    }

    async fn handshake_complete_callback(&self, ssl: &SslRef) -> Option<Arc<dyn Any + Send + Sync>> {
        if let Some(guard) = handshake_index().and_then(|i| ssl.ex_data(i)) {
            guard.completed.store(true, Ordering::Relaxed);
        }
        metrics::get()
            .tls_handshakes
            .with_label_values(&["ok", ssl.version_str()])
            .inc();
        ClientIdentity::from_handshake(ssl, &self.addr).map(|id| Arc::new(id) as Arc<dyn Any + Send + Sync>)
    }
}

/// Lives as long as the connection's `SSL` object: dropped unfinished, the handshake failed
/// (refused version, no shared cipher, a client certificate that did not verify, a timeout).
struct HandshakeGuard {
    /// The version the client's hello asked for (legacy field: TLS 1.3 clients say 1.2).
    offered: &'static str,
    completed: AtomicBool,
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        if !self.completed.load(Ordering::Relaxed) {
            metrics::get()
                .tls_handshakes
                .with_label_values(&["failed", self.offered])
                .inc();
        }
    }
}

fn handshake_index() -> Option<Index<Ssl, HandshakeGuard>> {
    static INDEX: OnceLock<Option<Index<Ssl, HandshakeGuard>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Called for every ClientHello, before the version is chosen: a hello the listener then
/// refuses is counted too. (A HelloRetryRequest brings a second hello on the same `SSL`.)
fn count_handshake(
    ssl: &mut SslRef,
    _alert: &mut SslAlert,
) -> Result<ClientHelloResponse, openssl::error::ErrorStack> {
    if let Some(index) = handshake_index() {
        if ssl.ex_data(index).is_none() {
            let offered = match ssl.client_hello_legacy_version() {
                Some(v) if v == SslVersion::TLS1 => "TLSv1",
                Some(v) if v == SslVersion::TLS1_1 => "TLSv1.1",
                Some(v) if v == SslVersion::SSL3 => "SSLv3",
                _ => "TLSv1.2+",
            };
            ssl.set_ex_data(
                index,
                HandshakeGuard {
                    offered,
                    completed: AtomicBool::new(false),
                },
            );
        }
    }
    Ok(ClientHelloResponse::SUCCESS)
}
