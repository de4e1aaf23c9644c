//! IP networks for `trusted_proxies` (`10.0.0.0/8`, `::1/128`, or a bare address).

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Whether `ip` is in any of `list` (`false` for an unknown address).
pub fn any_contains(list: &[Cidr], ip: Option<std::net::IpAddr>) -> bool {
    ip.is_some_and(|ip| list.iter().any(|c| c.contains(ip)))
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network such as 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| p.parse::<u8>().ok())
                .flatten()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        let canonical_network = canonical(network);
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps: its
        // prefix counts the 96 mapping bits too. (Kept at 104 it would be compared as an IPv4
        // prefix, and match every IPv4 address.)
        let prefix = match (network, canonical_network) {
            (IpAddr::V6(_), IpAddr::V4(_)) if prefix < 96 => {
                return Err(format!(
                    "`{s}` spans more than the IPv4-mapped range; write the IPv4 network (10.0.0.0/8)"
                ))
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix - 96,
            _ => prefix,
        };
        Ok(Cidr {
            network: canonical_network,
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in review: `::ffff:10.1.2.3` kept its IPv6 prefix (128) against IPv4 addresses,
    /// and a wrapped mask of 0 matched every IPv4 address.
    #[test]
    fn ipv4_mapped_networks_are_the_ipv4_networks_they_map() {
        let one: Cidr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(one.contains("10.1.2.3".parse().unwrap()));
        assert!(!one.contains("192.0.2.7".parse().unwrap()));
        let net: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("203.0.113.9".parse().unwrap()));
        assert!("::ffff:0:0/96"
            .parse::<Cidr>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("::ffff:0:0/95".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
    }

    #[test]
    fn matches_networks() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("1.2.3.4".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }
}
