//! How the gateway reaches an upstream's targets: plain or TLS (server name, trusted CAs, a
//! client certificate, verification) and which HTTP version. One place builds the peer for
//! proxied requests, gateway-made calls and health checks alike, so all three use the same
//! TLS settings.

use std::sync::Arc;

use openssl::x509::X509;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use pingora::utils::tls::CertKey;

use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::tls::certificates::{read_ca_file, Certificate};

/// HTTP/2 streams one upstream connection carries at once (Pingora's default, 1, would open a
/// connection per request).
const H2_STREAMS: usize = 100;

#[derive(Clone)]
pub struct Transport {
    pub protocol: UpstreamProtocol,
    tls: Option<TlsClient>,
    /// SHA-256 of the CA, certificate and key files as read: health checks built from an
    /// older read are rebuilt when it changes (see `pool::PoolIdentity`).
    pub files_sha256: String,
}

#[derive(Clone)]
struct TlsClient {
    sni: String,
    ca: Option<Arc<Box<[X509]>>>,
    client: Option<Arc<CertKey>>,
    verify: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.as_ref().map(|t| &t.sni))
            .finish()
    }
}

impl Transport {
    /// Read the CA and client certificate files (checked when the configuration loaded; a
    /// file changed since fails the build, and a reload keeps the old snapshot).
    pub fn build(cfg: &UpstreamConfig) -> Result<Transport, String> {
        let context = |e: String| format!("upstream `{}`: {e}", cfg.name.value);
        let mut files = Vec::new();
        if let Some(t) = &cfg.tls {
            for path in [&t.ca, &t.client_cert, &t.client_key].into_iter().flatten() {
                files.extend(
                    crate::config::read_bounded_bytes(std::path::Path::new(path)).unwrap_or_default(),
                );
            }
        }
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                // Pingora turns all verification off for a peer without a server name.
                if t.verify && t.sni.is_empty() {
                    return Err(context("tls.sni is empty: nothing could be verified".into()));
                }
                let ca = match &t.ca {
                    Some(path) => Some(Arc::new(
                        read_ca_file(std::path::Path::new(path))
                            .map_err(context)?
                            .into_boxed_slice(),
                    )),
                    None => None,
                };
                let client = match (&t.client_cert, &t.client_key) {
                    (Some(cert), Some(key)) => {
                        let c = Certificate::load(std::path::Path::new(cert), std::path::Path::new(key))
                            .map_err(context)?;
                        let mut chain = vec![c.leaf];
                        chain.extend(c.chain);
                        Some(Arc::new(CertKey::new(chain, c.key)))
                    }
                    _ => None,
                };
                Some(TlsClient {
                    sni: t.sni.clone(),
                    ca,
                    client,
                    verify: t.verify,
                })
            }
        };
        Ok(Transport {
            protocol: cfg.protocol,
            tls,
            files_sha256: crate::auth::api_key::sha256_hex_bytes(&files),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The name sent as SNI (empty without TLS).
    pub fn sni(&self) -> &str {
        self.tls.as_ref().map_or("", |t| t.sni.as_str())
    }

    /// A peer for `addr` with this transport's TLS and HTTP version; the caller sets timeouts.
    pub fn peer(&self, addr: std::net::SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.is_tls(), self.sni().to_string());
        self.apply(&mut peer);
        peer
    }

    /// Put this transport's TLS settings and HTTP version on `peer` (health checks build their
    /// own peer from a template).
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.client_cert_key = self.tls.as_ref().and_then(|t| t.client.clone());
        self.apply_options(&mut peer.options);
    }

    /// The options part (a TCP health check's peer has no client certificate).
    pub fn apply_options(&self, options: &mut PeerOptions) {
        if let Some(t) = &self.tls {
            options.verify_cert = t.verify;
            options.verify_hostname = t.verify;
            options.ca = t.ca.clone();
        }
        match self.protocol {
            UpstreamProtocol::Http1 => options.set_http_version(1, 1),
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
                options.set_http_version(2, 2);
                options.max_h2_streams = H2_STREAMS;
            }
        }
    }
}
