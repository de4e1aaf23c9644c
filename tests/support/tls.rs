//! TLS for the tests: a CA and certificates minted per test (the gateway's own minting code,
//! `portcullis::tls::mint`), and a blocking TLS client on OpenSSL that can pick SNI and ALPN,
//! present a client certificate, hold a connection open, and report the certificate served.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use portcullis::tls::mint::{Authority, Issued, Usage};

use super::client::{read_response, Response, IO_TIMEOUT};

/// A test PKI: one CA and a directory for the files the gateway reads.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    /// The CA certificate as a PEM file (for `client_ca`, curl's `--cacert`).
    pub ca_file: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("pki dir");
        let ca = Authority::new(name).expect("mint ca");
        let ca_file = dir.path().join(format!("{}-ca.pem", name.replace(' ', "-")));
        std::fs::write(&ca_file, ca.issued.cert.to_pem().expect("ca pem")).expect("write ca");
        Pki { dir, ca, ca_file }
    }

    /// A server certificate for `names` written as `<stem>.pem` / `<stem>.key`.
    pub fn server(&self, stem: &str, names: &[&str], days: i64) -> (PathBuf, PathBuf) {
        self.ca
            .issue(names, days, Usage::Server)
            .expect("mint server certificate")
            .write(self.dir.path(), stem, &[])
            .expect("write server certificate")
    }

    /// A client certificate (common name `names[0]`, alternative names all of them).
    pub fn client(&self, names: &[&str]) -> Issued {
        self.ca
            .issue(names, 30, Usage::Client)
            .expect("mint client certificate")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What a TLS connection asks for.
#[derive(Default)]
pub struct TlsOptions<'a> {
    pub alpn: Option<&'a [u8]>,
    pub client: Option<&'a Issued>,
    pub max_version: Option<SslVersion>,
}

/// A verified TLS connection to `addr` with SNI `server_name`, trusting `ca` only.
pub fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca: &X509,
    options: &TlsOptions<'_>,
) -> Result<TlsConn, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    let mut store = openssl::x509::store::X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(ca.clone()).map_err(|e| e.to_string())?;
    b.set_verify_cert_store(store.build())
        .map_err(|e| e.to_string())?;
    b.set_verify(SslVerifyMode::PEER);
    if let Some(alpn) = options.alpn {
        b.set_alpn_protos(alpn).map_err(|e| e.to_string())?;
    }
    if let Some(v) = options.max_version {
        b.set_max_proto_version(Some(v)).map_err(|e| e.to_string())?;
        // OpenSSL 3 refuses to even offer TLS 1.0/1.1 at its default security level; the
        // test must reach the gateway with them to see the gateway refuse.
        b.set_cipher_list("DEFAULT:@SECLEVEL=0")
            .map_err(|e| e.to_string())?;
    }
    if let Some(c) = options.client {
        b.set_certificate(&c.cert).map_err(|e| e.to_string())?;
        b.set_private_key(&c.key).map_err(|e| e.to_string())?;
    }
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let stream = b
        .build()
        .connect(server_name, tcp)
        .map_err(|e| format!("TLS handshake with {addr} as {server_name}: {e}"))?;
    Ok(TlsConn {
        stream,
        buf: Vec::new(),
    })
}

pub struct TlsConn {
    pub stream: SslStream<TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Write `request` verbatim and read one response.
    pub fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request)?;
        self.stream.flush()?;
        read_response(&mut self.stream, &mut self.buf, false).map(|(r, _)| r)
    }

    /// `GET path` with `Host: host`, keeping the connection open.
    pub fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
    }

    /// The serial number of the certificate the gateway served, in hex.
    pub fn served_serial(&self) -> String {
        self.stream
            .ssl()
            .peer_certificate()
            .and_then(|c| c.serial_number().to_bn().ok())
            .and_then(|bn| bn.to_hex_str().ok().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// The DNS names of the certificate the gateway served.
    pub fn served_names(&self) -> Vec<String> {
        self.stream
            .ssl()
            .peer_certificate()
            .and_then(|c| c.subject_alt_names())
            .map(|n| n.iter().filter_map(|g| g.dnsname().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.ssl().selected_alpn_protocol().map(<[u8]>::to_vec)
    }

    pub fn version(&self) -> &'static str {
        self.stream.ssl().version_str()
    }
}

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

/// The serial of a certificate file, in the form [`TlsConn::served_serial`] reports.
pub fn serial_of(cert_file: &Path) -> String {
    let pem = std::fs::read(cert_file).expect("read certificate");
    X509::from_pem(&pem)
        .expect("certificate")
        .serial_number()
        .to_bn()
        .expect("serial")
        .to_hex_str()
        .expect("hex")
        .to_string()
}

/// Run curl with `args`; returns (status code, HTTP version, body). curl's own failures (a
/// refused handshake) come back as status 0.
pub fn curl(args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("run curl (installed by scripts/test.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = tail.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = parts.next().unwrap_or("").to_string();
    (status, version, body.to_string())
}
