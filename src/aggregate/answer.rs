//! The client's answer from the parts' results: its status, the merged document (in
//! declaration order), the `errors` member, `X-Aggregate-Complete`, the most restrictive
//! `Cache-Control`, and the headers parts expose. Pure: the same results always give the
//! same bytes, whatever order the parts answered in.

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::fanout::Done;
use super::merge::{self, MergeError, PartDoc, Placement};
use super::part::Failure;
use super::plan::Aggregate;
use crate::config::PartOnError;
use crate::transform::json::JsonRules;

pub const X_AGGREGATE_COMPLETE: &str = "x-aggregate-complete";

/// What the gateway answers.
#[derive(Debug)]
pub enum Answer {
    /// 200 with this document.
    Merged {
        body: Vec<u8>,
        complete: bool,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// 502 or 504, as a problem; `errors` is the member naming failed parts (`errors: body`).
    Failed {
        status: u16,
        detail: &'static str,
        errors: Option<Value>,
        /// For the log: what went wrong, in words.
        why: String,
    },
}

/// Decide the answer. `rules`: the route's response rules, applied to the merged document;
/// `authenticated`: the route has `auth` (its answer is per consumer, whatever parts say).
/// The parts' documents are moved into the answer, never copied.
pub fn compose(plan: &Aggregate, done: Vec<Done>, rules: Option<&JsonRules>, authenticated: bool) -> Answer {
    let errors = plan.errors_body.then(|| errors_member(plan, &done)).flatten();
    if let Some(failed) = decisive_failure(plan, &done) {
        return failed.with_errors(errors);
    }
    let complete = done.iter().all(|d| d.result.is_ok());
    let mut headers = answer_headers(&done, complete, authenticated);
    if let Some(vary) = &plan.vary {
        headers.push((http::header::VARY, vary.clone()));
    }
    let docs = plan
        .parts
        .iter()
        .zip(done)
        .filter_map(|(part, d)| {
            let doc = match (d.result, &part.cfg.on_error) {
                (Ok(answer), _) => answer.doc,
                (Err(_), PartOnError::Omit) => return None,
                (Err(_), PartOnError::Null) => Value::Null,
                (Err(_), PartOnError::Static(v)) => v.clone(),
            };
            // An empty answer has nothing to merge into the root.
            if part.cfg.placement == Placement::Root && doc.is_null() {
                return None;
            }
            Some(PartDoc {
                name: part.name(),
                placement: &part.cfg.placement,
                doc,
            })
        })
        .collect();
    let merged = match merge::merge(docs, plan.policy) {
        Ok(merged) => merged,
        Err(e) => {
            let why = match e {
                MergeError::Conflict { path, first, second } => {
                    format!("parts `{first}` and `{second}` both set `{path}`")
                }
                MergeError::NotAnObject { part } => {
                    format!("part `{part}` is merged into the root but is not an object")
                }
            };
            return Answer::Failed {
                status: 502,
                detail: "the parts of this answer could not be merged",
                errors,
                why,
            };
        }
    };
    let applied = match rules {
        Some(rules) => rules.apply(merged),
        None => Ok(merged),
    };
    let mut merged = match applied {
        Ok(out) => out,
        Err(_) => {
            return Answer::Failed {
                status: 502,
                detail: "the upstream response could not be transformed",
                errors,
                why: "the route's response rules name a value the merged answer does not have".into(),
            }
        }
    };
    // The gateway's `errors` member replaces a key of that name a part merged into the root.
    if let (Some(errors), Value::Object(root)) = (errors, &mut merged) {
        root.insert("errors".into(), errors);
    }
    Answer::Merged {
        body: serde_json::to_vec(&merged).unwrap_or_else(|_| b"{}".to_vec()),
        complete,
        headers,
    }
}

/// 502 or 504 when a required part failed, or when no part succeeded: decided by the first
/// required part that failed, else (nothing succeeded) the first part. A part that was not
/// sent because the part it waited for timed out counts as timed out.
fn decisive_failure(plan: &Aggregate, done: &[Done]) -> Option<Answer> {
    let failed = |i: usize| done.get(i).and_then(|d| d.result.as_ref().err());
    let succeeded = done.iter().any(|d| d.result.is_ok());
    let (i, part) = plan
        .parts
        .iter()
        .enumerate()
        .find(|(i, p)| p.cfg.required && failed(*i).is_some())
        .or_else(|| {
            (!succeeded)
                .then(|| plan.parts.iter().enumerate().next())
                .flatten()
        })?;
    let failure = failed(i)?;
    let timeout = root_cause(plan, done, failure) == &Failure::Timeout;
    let (status, detail) = match (timeout, part.cfg.required) {
        (true, true) => (504, "a required part of this answer did not arrive in time"),
        (false, true) => (502, "a required part of this answer failed"),
        (true, false) => (504, "no part of this answer arrived in time"),
        (false, false) => (502, "no part of this answer succeeded"),
    };
    Some(Answer::Failed {
        status,
        detail,
        errors: None,
        why: format!("part `{}` {}", part.name(), failure.label()),
    })
}

/// Follow `dependency_failed` back to the failure that started it (`after` has no cycles,
/// and the walk is bounded by the number of parts anyway).
fn root_cause<'a>(plan: &Aggregate, done: &'a [Done], mut failure: &'a Failure) -> &'a Failure {
    for _ in 0..plan.parts.len() {
        let Failure::Dependency(name) = failure else {
            break;
        };
        let earlier = plan.parts.iter().position(|p| p.name() == name);
        match earlier.and_then(|j| done.get(j)?.result.as_ref().err()) {
            Some(cause) => failure = cause,
            None => break,
        }
    }
    failure
}

/// `Cache-Control` (the parts' most restrictive when complete, else `no-store`) and the
/// headers the parts expose, in declaration order.
fn answer_headers(done: &[Done], complete: bool, authenticated: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    let cache_control = if complete {
        let values: Vec<Option<&str>> = done
            .iter()
            .filter_map(|d| d.result.as_ref().ok())
            .map(|a| a.cache_control.as_deref())
            .collect();
        most_restrictive(&values, authenticated)
    } else {
        // A partial answer must not be stored and served as if it were whole.
        Some("no-store".to_string())
    };
    if let Some(value) = cache_control.and_then(|v| HeaderValue::try_from(v).ok()) {
        headers.push((http::header::CACHE_CONTROL, value));
    }
    for answer in done.iter().filter_map(|d| d.result.as_ref().ok()) {
        headers.extend(answer.exposed.iter().cloned());
    }
    headers
}

impl Answer {
    fn with_errors(self, member: Option<Value>) -> Answer {
        match self {
            Answer::Failed {
                status, detail, why, ..
            } => Answer::Failed {
                status,
                detail,
                errors: member,
                why,
            },
            merged => merged,
        }
    }
}

/// `{"orders": {"status": 503}, "prefs": {"reason": "timeout"}}`, in declaration order;
/// `None` when every part succeeded.
fn errors_member(plan: &Aggregate, done: &[Done]) -> Option<Value> {
    let mut errors = Map::new();
    for (part, d) in plan.parts.iter().zip(done) {
        if let Err(failure) = &d.result {
            errors.insert(part.name().to_string(), failure.describe());
        }
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

/// One part's `Cache-Control`, as the combination needs it.
#[derive(Default)]
struct Directives {
    no_store: bool,
    private: bool,
    public: bool,
    no_cache: bool,
    revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl Directives {
    fn parse(value: &str) -> Directives {
        let mut d = Directives::default();
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "no-cache" => d.no_cache = true,
                "must-revalidate" | "proxy-revalidate" => d.revalidate = true,
                // Repeated: the smaller counts.
                "max-age" => d.max_age = min(d.max_age, seconds),
                "s-maxage" => d.s_maxage = min(d.s_maxage, seconds),
                _ => {}
            }
        }
        d
    }
}

/// The most restrictive of the parts' `Cache-Control` values, one per part (`None`: it sent
/// none), each part read on its own: `no-store` if any says so; else `private` if any, `public`
/// only if every part says so; `no-cache` and `must-revalidate` if any; the smallest `max-age`
/// and `s-maxage`, and only when every part gave one (a part without one gave no freshness). On
/// an authenticated route the answer is per consumer: always `private`, never `public` or
/// `s-maxage`.
pub fn most_restrictive(values: &[Option<&str>], authenticated: bool) -> Option<String> {
    let parts: Vec<Directives> = values
        .iter()
        .map(|v| v.map(Directives::parse).unwrap_or_default())
        .collect();
    if parts.iter().any(|d| d.no_store) {
        return Some("no-store".into());
    }
    let every = |f: fn(&Directives) -> bool| !parts.is_empty() && parts.iter().all(f);
    let any = |f: fn(&Directives) -> bool| parts.iter().any(f);
    let smallest = |f: fn(&Directives) -> Option<u64>| -> Option<u64> {
        parts
            .iter()
            .map(f)
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .min()
    };
    let private = authenticated || any(|d| d.private);
    let mut out: Vec<String> = Vec::new();
    if private {
        out.push("private".into());
    } else if every(|d| d.public) {
        out.push("public".into());
    }
    if any(|d| d.no_cache) {
        out.push("no-cache".into());
    }
    if let Some(age) = smallest(|d| d.max_age) {
        out.push(format!("max-age={age}"));
    }
    if let Some(age) = smallest(|d| d.s_maxage).filter(|_| !private) {
        out.push(format!("s-maxage={age}"));
    }
    if any(|d| d.revalidate) {
        out.push("must-revalidate".into());
    }
    // `private` alone only where the route is per consumer or a part said so.
    let said_something = out.len() > usize::from(private) || authenticated || any(|d| d.private);
    said_something.then(|| out.join(", "))
}

fn min(have: Option<u64>, new: u64) -> Option<u64> {
    Some(have.map_or(new, |h| h.min(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_takes_the_most_restrictive() {
        let cc = |v: &[&str]| {
            let values: Vec<Option<&str>> = v.iter().map(|s| Some(*s)).collect();
            most_restrictive(&values, false)
        };
        assert_eq!(cc(&[]), None);
        // A part that said nothing gave no freshness and did not say `public`.
        assert_eq!(
            most_restrictive(&[Some("public, max-age=300"), None], false),
            None
        );
        assert_eq!(
            most_restrictive(
                &[Some("public, max-age=300, s-maxage=60"), Some("max-age=30")],
                true
            )
            .as_deref(),
            Some("private, max-age=30"),
            "an authenticated answer is never public"
        );
        assert_eq!(
            cc(&["max-age=60", "public, max-age=30"]).as_deref(),
            Some("max-age=30")
        );
        assert_eq!(
            cc(&["public, max-age=60, s-maxage=120", "public, max-age=300"]).as_deref(),
            Some("public, max-age=60")
        );
        assert_eq!(
            cc(&["public, max-age=60, s-maxage=120", "private, max-age=5"]).as_deref(),
            Some("private, max-age=5")
        );
        assert_eq!(cc(&["max-age=60", "no-store"]).as_deref(), Some("no-store"));
        assert_eq!(
            cc(&["max-age=60", "no-cache", "must-revalidate, max-age=\"10\""]).as_deref(),
            Some("no-cache, must-revalidate")
        );
    }
}
