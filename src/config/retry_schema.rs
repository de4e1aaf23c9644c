//! Decoding an upstream's `retry:` block, and its older spelling `retries: N`.

use std::time::Duration;

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::model::{RetryConfig, RetryOn};
use super::values::one_of_message;
use super::yaml::Node;

const FIELDS: &[&str] = &["attempts", "on", "per_try_timeout", "backoff", "budget"];

/// Pingora stops after 16 tries per request whatever is asked for.
const MAX_ATTEMPTS: u64 = 16;

/// `f`: the upstream's fields, holding `retry` and perhaps `retries`.
pub(super) fn decode_retry(f: &Fields<'_>, siblings: &[&str], p: &mut Problems) -> Option<RetryConfig> {
    let d = RetryConfig::default();
    let alias = f
        .has("retries")
        .then(|| f.ranged("retries", 0..=MAX_ATTEMPTS - 1, 1usize, p) + 1);
    let Some(node) = f.node("retry").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(RetryConfig {
            attempts: alias.unwrap_or(d.attempts),
            ..d
        });
    };
    let path = f.path_of("retry");
    let r = Fields::nested(node, &path, FIELDS, siblings, p)?;
    if let (Some(_), true) = (alias, r.has("attempts")) {
        p.add(
            f.pos_of("retries"),
            &f.path_of("retries"),
            "`retries` is the older spelling of `retry.attempts` (retries: N is attempts: N + 1); \
             give one of the two",
        );
    }
    let mut ok = true;
    let attempts = match alias {
        Some(n) if !r.has("attempts") => n,
        _ => r.ranged("attempts", 1..=MAX_ATTEMPTS, d.attempts, p),
    };
    let on = match r.node("on") {
        None => Some(d.on.clone()),
        Some(n) => decode_on(n, &r.path_of("on"), p),
    };
    let per_try_timeout: Option<Duration> = r.opt("per_try_timeout", p);
    if per_try_timeout.is_some_and(|t| t.is_zero() || t > Duration::from_secs(86_400)) {
        p.add(
            r.pos_of("per_try_timeout"),
            &r.path_of("per_try_timeout"),
            "must be from 1ms to 24h",
        );
        ok = false;
    }
    let (backoff_base, backoff_max) = match r.node("backoff") {
        None | Some(Node::Null { .. }) => (d.backoff_base, d.backoff_max),
        Some(n) => {
            let b = Fields::new(n, &r.path_of("backoff"), &["base", "max"], p)?;
            let base: Duration = b.or("base", d.backoff_base, p);
            let max: Duration = b.or("max", d.backoff_max.max(base), p);
            if max < base {
                p.add(
                    b.pos_of("max"),
                    &b.path_of("max"),
                    "must be at least `base` (the first wait is drawn from 0 to base)",
                );
                ok = false;
            }
            if max > Duration::from_secs(60) {
                p.add(b.pos_of("max"), &b.path_of("max"), "must be at most 60s");
                ok = false;
            }
            (base, max)
        }
    };
    let (budget_ratio, budget_min_per_second) = match r.node("budget") {
        None | Some(Node::Null { .. }) => (d.budget_ratio, d.budget_min_per_second),
        Some(n) => {
            let b = Fields::new(n, &r.path_of("budget"), &["ratio", "min_per_second"], p)?;
            let ratio = b.fraction(
                "ratio",
                d.budget_ratio,
                "0.2: retries add at most 20 % to the requests",
                p,
            );
            let floor = b.ranged("min_per_second", 0..=100_000, d.budget_min_per_second, p);
            (ratio?, floor)
        }
    };
    let out = RetryConfig {
        attempts,
        on: on?,
        per_try_timeout,
        backoff_base,
        backoff_max,
        budget_ratio,
        budget_min_per_second,
    };
    ok.then_some(out)
}

/// `on: [connect-failure, reset, timeout, 502, 503, 504]`.
fn decode_on(node: &Node, path: &str, p: &mut Problems) -> Option<RetryOn> {
    let items: Vec<Spanned<String>> = super::decode::Decode::decode(node, path, p)?;
    let mut on = RetryOn {
        connect_failure: false,
        reset: false,
        timeout: false,
        statuses: Vec::new(),
    };
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item.value.as_str() {
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "timeout" => on.timeout = true,
            text => match text.parse::<u16>() {
                Ok(status) if (500..=599).contains(&status) => {
                    if !on.statuses.contains(&status) {
                        on.statuses.push(status);
                    }
                }
                Ok(_) => {
                    p.add(
                        item.pos,
                        &index(path, i),
                        format!(
                            "only 5xx answers are retried (a {text} is the upstream's answer to \
                             this request, not a failure)"
                        ),
                    );
                    ok = false;
                }
                Err(_) => {
                    p.add(
                        item.pos,
                        &index(path, i),
                        format!(
                            "{}, or a status from 500 to 599",
                            one_of_message(text, &RetryOn::NAMES)
                        ),
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(on)
}
