//! Decoding `ip: { allow: [...], deny: [...] }` (under `server:` and on a route).

use super::cidr::Cidr;
use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::model::IpRules;
use super::yaml::Node;

/// `f`'s `ip` field (absent: no rules). `siblings`: the fields around it.
pub(super) fn decode_ip_rules(f: &Fields<'_>, siblings: &[&str], p: &mut Problems) -> Option<IpRules> {
    let Some(node) = f.node("ip").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(IpRules::default());
    };
    let r = Fields::nested(node, &f.path_of("ip"), &["allow", "deny"], siblings, p)?;
    let mut ok = true;
    let mut list = |key: &str, p: &mut Problems| -> Vec<Cidr> {
        let items: Vec<Spanned<String>> = r.or(key, Vec::new(), p);
        let mut out = Vec::new();
        for (i, s) in items.iter().enumerate() {
            match s.value.parse::<Cidr>() {
                Ok(c) => out.push(c),
                Err(e) => {
                    p.add(s.pos, &index(&r.path_of(key), i), e);
                    ok = false;
                }
            }
        }
        out
    };
    let rules = IpRules {
        allow: list("allow", p),
        deny: list("deny", p),
    };
    ok.then_some(rules)
}
