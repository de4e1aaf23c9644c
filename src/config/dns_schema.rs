//! Decoding `server.dns`: where host-name targets are resolved and how often again.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::model::{AddressFamily, DnsConfig};
use super::yaml::Node;

const FIELDS: &[&str] = &["nameservers", "refresh", "timeout", "family"];

/// `None` when the block has a problem (reported).
pub(super) fn decode_dns(f: &Fields<'_>, p: &mut Problems) -> Option<DnsConfig> {
    let Some(node) = f.node("dns").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(DnsConfig::default());
    };
    let path = f.path_of("dns");
    let d = Fields::nested(node, &path, FIELDS, &[], p)?;
    let defaults = DnsConfig::default();
    let given: Vec<Spanned<String>> = d.or("nameservers", Vec::new(), p);
    let nameservers: Vec<Option<SocketAddr>> = given
        .iter()
        .enumerate()
        .map(|(i, s)| nameserver(s, &index(&d.path_of("nameservers"), i), p))
        .collect();
    let refresh = d.or("refresh", defaults.refresh, p);
    let allowed = Duration::from_millis(100)..=Duration::from_secs(86_400);
    if !refresh.is_zero() && !allowed.contains(&refresh) {
        p.add(
            d.pos_of("refresh"),
            &d.path_of("refresh"),
            "refresh must be from 100ms to 24h, or 0 to resolve only at load",
        );
    }
    let timeout = d.or("timeout", defaults.timeout, p);
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        p.add(
            d.pos_of("timeout"),
            &d.path_of("timeout"),
            "timeout must be greater than 0 and at most 60s",
        );
    }
    let family = d.choice(
        "family",
        &[
            ("ipv4_preferred", AddressFamily::Ipv4Preferred),
            ("all", AddressFamily::All),
            ("ipv4", AddressFamily::Ipv4),
            ("ipv6", AddressFamily::Ipv6),
        ],
        defaults.family,
        p,
    );
    Some(DnsConfig {
        nameservers: nameservers.into_iter().collect::<Option<Vec<_>>>()?,
        refresh,
        timeout,
        family: family?,
    })
}

/// `IP` (port 53) or `IP:PORT`: a name server is never a host name (it would need itself).
fn nameserver(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    if let Ok(ip) = s.value.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    match s.value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                s.pos,
                path,
                format!(
                    "bad name server `{}`: expected IP or IP:PORT such as 10.0.0.10 or 127.0.0.1:5353",
                    s.value
                ),
            );
            None
        }
    }
}
