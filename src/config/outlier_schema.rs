//! Decoding an upstream's `outlier:` block (passive health).

use std::time::Duration;

use super::decode::{Fields, Spanned};
use super::diag::Problems;
use super::model::{FailureRatio, OutlierConfig};
use super::yaml::Node;

const FIELDS: &[&str] = &[
    "consecutive_5xx",
    "consecutive_gateway_errors",
    "failure_ratio",
    "base_ejection",
    "max_ejection",
    "max_ejected_percent",
];

/// `siblings`: the upstream's own fields (one written here by mistake is reported as such).
pub(super) fn decode_outlier(
    node: &Node,
    path: &str,
    siblings: &[&str],
    p: &mut Problems,
) -> Option<OutlierConfig> {
    let f = Fields::nested(node, path, FIELDS, siblings, p)?;
    let d = OutlierConfig::default();
    let mut ok = true;
    let consecutive_5xx = f.ranged("consecutive_5xx", 0..=10_000, d.consecutive_5xx, p);
    let consecutive_gateway_errors = f.ranged(
        "consecutive_gateway_errors",
        0..=10_000,
        d.consecutive_gateway_errors,
        p,
    );
    let base_ejection: Duration = f.or("base_ejection", d.base_ejection, p);
    let max_ejection: Duration = f.or("max_ejection", d.max_ejection.max(base_ejection), p);
    if base_ejection.is_zero() {
        p.add(
            f.pos_of("base_ejection"),
            &f.path_of("base_ejection"),
            "must be greater than 0",
        );
        ok = false;
    }
    if max_ejection < base_ejection {
        p.add(
            f.pos_of("max_ejection"),
            &f.path_of("max_ejection"),
            "must be at least `base_ejection` (the first ejection already lasts that long)",
        );
        ok = false;
    }
    for (key, value) in [("base_ejection", base_ejection), ("max_ejection", max_ejection)] {
        if value > Duration::from_secs(86_400) {
            p.add(f.pos_of(key), &f.path_of(key), "must be at most 24h");
            ok = false;
        }
    }
    let max_ejected_percent = f.ranged("max_ejected_percent", 0..=100, d.max_ejected_percent, p);
    let failure_ratio = match f.node("failure_ratio") {
        None | Some(Node::Null { .. }) => Some(None),
        Some(n) => decode_ratio(n, &f.path_of("failure_ratio"), p).map(Some),
    };
    let out = OutlierConfig {
        consecutive_5xx,
        consecutive_gateway_errors,
        failure_ratio: failure_ratio?,
        base_ejection,
        max_ejection,
        max_ejected_percent,
    };
    ok.then_some(out)
}

fn decode_ratio(node: &Node, path: &str, p: &mut Problems) -> Option<FailureRatio> {
    let f = Fields::new(node, path, &["min_requests", "above", "window"], p)?;
    let min_requests = f.ranged("min_requests", 1..=1_000_000, 20u32, p);
    let window: Duration = f.or("window", Duration::from_secs(10), p);
    let mut ok = true;
    if window.is_zero() || window > Duration::from_secs(3600) {
        p.add(f.pos_of("window"), &f.path_of("window"), "must be from 1ms to 1h");
        ok = false;
    }
    let above = match f.req::<Spanned<String>>("above", p) {
        Some(text) => match text.value.parse::<f64>() {
            Ok(v) if v > 0.0 && v < 1.0 => Some(v),
            _ => {
                p.add(
                    text.pos,
                    &f.path_of("above"),
                    format!(
                        "must be a fraction between 0 and 1 (0.5 for half), found `{}`",
                        text.value
                    ),
                );
                None
            }
        },
        None => None,
    };
    let out = FailureRatio {
        min_requests,
        above: above?,
        window,
    };
    ok.then_some(out)
}
