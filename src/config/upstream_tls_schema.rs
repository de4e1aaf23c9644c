//! Decoding an upstream's `protocol` and `tls`: how the gateway talks to its targets.

use std::path::Path;

use super::decode::{Fields, Spanned};
use super::diag::Problems;
use super::model::{TargetConfig, UpstreamProtocol, UpstreamTls};
use super::yaml::Node;

pub(super) fn decode_protocol(f: &Fields<'_>, p: &mut Problems) -> Option<UpstreamProtocol> {
    f.choice(
        "protocol",
        &[
            ("http1", UpstreamProtocol::Http1),
            ("h2", UpstreamProtocol::H2),
            ("h2c", UpstreamProtocol::H2c),
        ],
        UpstreamProtocol::Http1,
        p,
    )
}

/// `tls: { sni, ca, client_cert, client_key, verify, insecure }`. Files are read here so a
/// problem names its field; `targets` give the default SNI.
pub(super) fn decode_upstream_tls(
    f: &Fields<'_>,
    targets: Option<&[TargetConfig]>,
    protocol: Option<UpstreamProtocol>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Option<UpstreamTls>> {
    let node = match f.node("tls") {
        None | Some(Node::Null { .. }) => {
            if protocol == Some(UpstreamProtocol::H2) {
                p.add(
                    f.pos_of("protocol"),
                    &f.path_of("protocol"),
                    "h2 is HTTP/2 over TLS: add `tls`, or use h2c for HTTP/2 without TLS",
                );
                return None;
            }
            return Some(None);
        }
        Some(n) => n,
    };
    let t = Fields::nested(
        node,
        &f.path_of("tls"),
        &["sni", "ca", "client_cert", "client_key", "verify", "insecure"],
        &["targets", "protocol"],
        p,
    )?;
    if protocol == Some(UpstreamProtocol::H2c) {
        p.add(
            f.pos_of("protocol"),
            &f.path_of("protocol"),
            "h2c is HTTP/2 without TLS: use h2 with `tls`",
        );
        return None;
    }
    // An empty name is no name: Pingora verifies nothing at all without one.
    let sni: Option<String> = t.opt::<String>("sni", p).filter(|s| !s.is_empty());
    let verify: bool = t.or("verify", true, p);
    let insecure: bool = t.or("insecure", false, p);
    let mut ok = true;
    if !verify && !insecure {
        p.add(
            t.pos_of("verify"),
            &t.path_of("verify"),
            "verify: false sends requests to whoever answers; it needs `insecure: true` as well",
        );
        ok = false;
    }
    // The name the certificate must carry: `sni`, else the targets' host name.
    let host_of = |t: &TargetConfig| {
        let written = t
            .addr
            .value
            .rsplit_once(':')
            .map_or(t.addr.value.as_str(), |(h, _)| h);
        (written.parse::<std::net::IpAddr>().is_err() && !written.starts_with('['))
            .then(|| written.to_string())
    };
    let sni = sni.or_else(|| targets.and_then(|ts| ts.first()).and_then(host_of));
    if sni.is_none() && verify && targets.is_some() {
        p.add(
            t.pos_of("sni"),
            &t.path_of("sni"),
            "name the host the targets' certificate is for (the targets are IP addresses, or \
             `sni` is empty)",
        );
        ok = false;
    }
    let file =
        |key: &str, p: &mut Problems, read: &dyn Fn(&Path) -> Result<(), String>| -> Option<Option<String>> {
            let Some(given) = t.opt::<Spanned<String>>(key, p) else {
                return Some(None);
            };
            let full = base_dir.join(&given.value);
            match read(&full) {
                Ok(()) => Some(Some(full.display().to_string())),
                Err(e) => {
                    p.add(given.pos, &t.path_of(key), e);
                    None
                }
            }
        };
    let ca = file("ca", p, &|path| {
        crate::tls::certificates::read_ca_file(path).map(|_| ())
    });
    let client_cert = file("client_cert", p, &|path| {
        crate::tls::certificates::read_ca_file(path).map(|_| ())
    });
    let client_key = file("client_key", p, &|_| Ok(()));
    let (ca, client_cert, client_key) = (ca?, client_cert?, client_key?);
    match (&client_cert, &client_key) {
        (Some(cert), Some(key)) => {
            if let Err(e) = crate::tls::certificates::Certificate::load(Path::new(cert), Path::new(key)) {
                p.add(t.pos_of("client_key"), &t.path_of("client_key"), e);
                ok = false;
            }
        }
        (None, None) => {}
        _ => {
            p.add(
                t.pos(),
                &t.path_of("client_cert"),
                "client_cert and client_key go together",
            );
            ok = false;
        }
    }
    ok.then_some(Some(UpstreamTls {
        sni: sni.unwrap_or_default(),
        ca,
        client_cert,
        client_key,
        verify,
    }))
}
