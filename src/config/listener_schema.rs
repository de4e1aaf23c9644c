//! Decoding `server.listen`: plain addresses, or `{ addr, h2c, tls: { certificates, min_version,
//! alpn, client_ca, client_auth } }`. Certificates are read and checked here, so `check` and a
//! refused reload name the file and the field of every problem at once.

use std::path::Path;
use std::sync::Arc;

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::model::{Alpn, ClientAuth, Listener, ListenerCertificates, ListenerTls, TlsVersion};
use super::yaml::Node;
use crate::tls::certificates::{Certificate, CertificateSet};

/// The listeners, and the certificates of the TLS ones; `None` when any is unusable.
pub(super) fn decode_listen(
    f: &Fields<'_>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<(Vec<Listener>, Vec<ListenerCertificates>)> {
    let path = f.path_of("listen");
    let items = match f.node("listen") {
        None | Some(Node::Null { .. }) => {
            p.add(f.pos(), &path, "missing required field `listen`");
            return None;
        }
        Some(Node::Seq { items, pos }) => {
            if items.is_empty() {
                p.add(*pos, &path, "needs at least one address such as 0.0.0.0:8080");
            }
            items
        }
        Some(other) => {
            p.add(
                other.pos(),
                &path,
                format!(
                    "expected a list of addresses (\"0.0.0.0:8080\") or {{ addr, tls, h2c }}, found {}",
                    other.kind()
                ),
            );
            return None;
        }
    };
    let mut listeners = Vec::new();
    let mut certificates = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = index(&path, i);
        match decode_listener(item, &item_path, base_dir, p) {
            Some((listener, certs)) => {
                if let Some(set) = certs {
                    certificates.push(ListenerCertificates {
                        addr: listener.addr.clone(),
                        set,
                    });
                }
                listeners.push(listener);
            }
            None => ok = false,
        }
    }
    ok.then_some((listeners, certificates))
}

type Decoded = (Listener, Option<Arc<CertificateSet>>);

fn decode_listener(node: &Node, path: &str, base_dir: &Path, p: &mut Problems) -> Option<Decoded> {
    if let Node::Scalar { value, pos, .. } = node {
        let addr = Spanned {
            value: value.clone(),
            pos: *pos,
        };
        super::server_schema::socket_addr(&addr, path, p)?;
        return Some((Listener::plain(value), None));
    }
    let f = Fields::new(node, path, &["addr", "h2c", "tls"], p)?;
    let addr: Option<Spanned<String>> = f.req("addr", p);
    let addr = addr.filter(|a| super::server_schema::socket_addr(a, &f.path_of("addr"), p).is_some());
    let h2c: bool = f.or("h2c", false, p);
    let tls = match f.node("tls") {
        None | Some(Node::Null { .. }) => None,
        Some(n) => Some(decode_tls(n, &f.path_of("tls"), base_dir, p)?),
    };
    if h2c && tls.is_some() {
        p.add(
            f.pos_of("h2c"),
            &f.path_of("h2c"),
            "h2c is HTTP/2 without TLS; a TLS listener offers HTTP/2 through `alpn`",
        );
        return None;
    }
    let addr = addr?;
    let (tls, certificates) = match tls {
        Some((settings, set)) => (Some(settings), Some(set)),
        None => (None, None),
    };
    Some((
        Listener {
            addr: addr.value,
            h2c,
            tls,
        },
        certificates,
    ))
}

fn decode_tls(
    node: &Node,
    path: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<(ListenerTls, Arc<CertificateSet>)> {
    let f = Fields::nested(
        node,
        path,
        &["certificates", "min_version", "alpn", "client_ca", "client_auth"],
        &["addr", "h2c"],
        p,
    )?;
    let set = decode_certificates(&f, base_dir, p);
    let min_version = match f.opt::<Spanned<String>>("min_version", p) {
        None => Some(TlsVersion::Tls12),
        Some(v) => match v.value.as_str() {
            "1.2" => Some(TlsVersion::Tls12),
            "1.3" => Some(TlsVersion::Tls13),
            "1.0" | "1.1" => {
                p.add(
                    v.pos,
                    &f.path_of("min_version"),
                    format!(
                        "TLS {} is obsolete (RFC 8996) and is not offered; use \"1.2\" or \"1.3\"",
                        v.value
                    ),
                );
                None
            }
            other => {
                p.add(
                    v.pos,
                    &f.path_of("min_version"),
                    format!("expected \"1.2\" or \"1.3\", found `{other}`"),
                );
                None
            }
        },
    };
    let alpn = decode_alpn(&f, p);
    let client_ca: Option<Spanned<String>> = f.opt("client_ca", p);
    let client_auth = f.choice(
        "client_auth",
        &[
            ("none", ClientAuth::None),
            ("optional", ClientAuth::Optional),
            ("required", ClientAuth::Required),
        ],
        ClientAuth::None,
        p,
    )?;
    let client_ca = match (&client_ca, client_auth) {
        (None, ClientAuth::None) => None,
        (None, _) => {
            p.add(
                f.pos_of("client_auth"),
                &f.path_of("client_ca"),
                "client certificates need `client_ca`: the PEM file of the CAs they must chain to",
            );
            return None;
        }
        (Some(ca), ClientAuth::None) => {
            p.add(
                ca.pos,
                &f.path_of("client_auth"),
                "`client_ca` is set but `client_auth` is none (the default): set optional or required",
            );
            return None;
        }
        (Some(ca), _) => {
            let full = base_dir.join(&ca.value);
            match crate::tls::certificates::read_ca_file(&full) {
                Ok(_) => Some((
                    full.display().to_string(),
                    crate::config::read_bounded_bytes(&full)
                        .ok()
                        .map(|b| crate::auth::api_key::sha256_hex_bytes(&b)),
                )),
                Err(e) => {
                    p.add(ca.pos, &f.path_of("client_ca"), e);
                    return None;
                }
            }
        }
    };
    Some((
        ListenerTls {
            min_version: min_version?,
            alpn: alpn?,
            client_ca_sha256: client_ca.as_ref().and_then(|(_, d)| d.clone()),
            client_ca: client_ca.map(|(path, _)| path),
            client_auth,
        },
        set?,
    ))
}

fn decode_alpn(f: &Fields<'_>, p: &mut Problems) -> Option<Alpn> {
    let Some(given) = f.opt::<Vec<Spanned<String>>>("alpn", p) else {
        return Some(Alpn::H2Http1);
    };
    let names: Vec<&str> = given.iter().map(|s| s.value.as_str()).collect();
    match names.as_slice() {
        ["h2", "http/1.1"] => Some(Alpn::H2Http1),
        ["http/1.1"] => Some(Alpn::Http1),
        ["h2"] => Some(Alpn::H2),
        _ => {
            p.add(
                f.pos_of("alpn"),
                &f.path_of("alpn"),
                format!(
                    "expected [h2, http/1.1] (the default), [http/1.1] or [h2], found [{}]",
                    names.join(", ")
                ),
            );
            None
        }
    }
}

fn decode_certificates(f: &Fields<'_>, base_dir: &Path, p: &mut Problems) -> Option<Arc<CertificateSet>> {
    let path = f.path_of("certificates");
    let items = match f.node("certificates") {
        Some(Node::Seq { items, .. }) if !items.is_empty() => items,
        Some(other) => {
            p.add(
                other.pos(),
                &path,
                "expected a list of { cert, key } with at least one entry",
            );
            return None;
        }
        None => {
            p.add(
                f.pos(),
                &path,
                "missing required field `certificates` (a list of { cert, key })",
            );
            return None;
        }
    };
    let mut loaded = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = index(&path, i);
        let Some(c) = Fields::new(item, &item_path, &["cert", "key"], p) else {
            ok = false;
            continue;
        };
        let cert: Option<Spanned<String>> = c.req("cert", p);
        let key: Option<Spanned<String>> = c.req("key", p);
        let (Some(cert), Some(key)) = (cert, key) else {
            ok = false;
            continue;
        };
        match Certificate::load(&base_dir.join(&cert.value), &base_dir.join(&key.value)) {
            Ok(certificate) => loaded.push(certificate),
            Err(e) => {
                p.add(cert.pos, &item_path, e);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    CertificateSet::new(loaded).map(Arc::new)
}
