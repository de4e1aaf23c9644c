//! Retries that cannot amplify an outage: one decision, made the same way for proxied
//! requests, the gateway's own exchanges and aggregation parts.
//!
//! A failed attempt is tried again only if all of these hold:
//! - the failure is one the upstream's `retry.on` lists;
//! - the request can be sent again safely: nothing was sent (a refused connect), or its method
//!   is idempotent (or it carries `Idempotency-Key` on a route that allows that) *and* its
//!   whole body can be sent again, and no answer has begun reaching the client;
//! - tries are left (`attempts` counts the first), a target is left, and the route's deadline
//!   leaves time for the backoff;
//! - the upstream's retry budget has room: in any second, at most `ratio` × that second's
//!   requests + `min_per_second` retries. Under a full outage the upstream therefore sees at
//!   most `requests × (1 + ratio)` attempts (plus the floor), never `requests × attempts`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::RetryConfig;
use crate::observe::metrics;

const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// `client_header_names::METHOD_OVERRIDES` as names built at compile time (a lookup by `&str`
/// parses the name every time); a test keeps the two lists equal. A `static`: a `const` array
/// would be built again at every use.
static METHOD_OVERRIDE_HEADERS: [http::HeaderName; 4] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
    http::HeaderName::from_static("x-original-method"),
];

/// Whether sending `head` (the request as it goes upstream, after every rewrite) twice is
/// harmless: the method the upstream acts on is idempotent — and no method override says
/// otherwise (a GET carrying `X-HTTP-Method-Override: POST`, or `?_method=POST`, is a POST to
/// the framework behind; any override present counts, the gateway strips those a route does not
/// let through) — or it carries `Idempotency-Key` where the route honours it.
pub fn repeatable(head: &pingora::http::RequestHeader, honour_idempotency_key: bool) -> bool {
    if honour_idempotency_key && head.headers.get(IDEMPOTENCY_KEY).is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if !head.method.is_idempotent() {
        return false;
    }
    !overrides_method(&head.headers, head.uri.query())
}

/// Whether a request names another method for the framework behind: a method-override header
/// (`X-HTTP-Method-Override` and its spellings) or `_method` in `query`. Pass the head and
/// query as they go upstream: the gateway strips the overrides a route does not let through.
///
/// One pass over the head's names (a handful, compared by value) rather than a hashed lookup
/// per override name (780 instructions per request in scenario A; with the hop-by-hop index,
/// A went from 101.8k to 100.6k).
pub fn overrides_method(headers: &http::HeaderMap, query: Option<&str>) -> bool {
    headers.keys().any(|name| METHOD_OVERRIDE_HEADERS.contains(name))
        || query.is_some_and(names_method_override)
}

/// Whether a query has a `_method` parameter in any spelling frameworks accept (letter case,
/// percent-encoding, `&` or `;` separators); one that does not decode counts as one.
fn names_method_override(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair);
        match crate::percent::decode(name, crate::percent::Mode::Form) {
            Some(bytes) => bytes.trim_ascii().eq_ignore_ascii_case(b"_method"),
            None => true,
        }
    })
}

/// How an attempt failed, as `retry.on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Reset,
    Timeout,
    Status(u16),
}

impl Failure {
    /// The metric label.
    pub fn label(&self) -> String {
        match self {
            Failure::Connect => "connect-failure".into(),
            Failure::Reset => "reset".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Status(s) => s.to_string(),
        }
    }

    /// What a Pingora error *after connecting* means for `retry.on` (`None`: not retryable,
    /// such as an invalid answer). Never `Connect`: once connected, the request may have been
    /// sent, whatever the error's type says (only a failed connect proves nothing was).
    pub fn of_error(e: &pingora::Error) -> Option<Failure> {
        use pingora::ErrorType::*;
        match e.etype() {
            ReadTimedout | WriteTimedout => Some(Failure::Timeout),
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
            | TLSHandshakeTimedout | SocketError | ConnectionClosed | ReadError | WriteError | H2Error => {
                Some(Failure::Reset)
            }
            _ => None,
        }
    }
}

/// What the request allows, at the moment an attempt failed.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// Repeating it is harmless: an idempotent method, or an `Idempotency-Key` the route
    /// honours.
    pub repeatable: bool,
    /// The whole body can be sent again (held, not streamed past the buffer).
    pub body_resendable: bool,
    /// Some of an answer already went to the client.
    pub answer_started: bool,
}

/// Why a failed attempt is not tried again (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    NotListed,
    NotRepeatable,
    NoAttemptsLeft,
    NoTarget,
    Deadline,
    Budget,
}

/// Retry after waiting this long, or stop.
pub type Verdict = Result<Duration, Stop>;

/// An upstream's retry settings with its budget (kept across reloads while unchanged).
#[derive(Debug)]
pub struct Retries {
    pub config: RetryConfig,
    budget: Budget,
}

impl Retries {
    pub fn new(config: RetryConfig) -> Retries {
        Retries {
            budget: Budget::new(),
            config,
        }
    }

    /// Count one request (its first attempt) towards the budget.
    pub fn note_request(&self) {
        self.budget.note_request(now_second());
    }

    /// Whether attempt number `tried` (1 for the first), which ended in `failure`, is tried
    /// again, and after what wait. `target_left`: whether any target could take the retry.
    /// A retry granted here is spent from the budget.
    pub fn decide(
        &self,
        upstream: &str,
        failure: Failure,
        replay: Replay,
        tried: usize,
        deadline: Option<Instant>,
        target_left: impl FnOnce() -> bool,
    ) -> Verdict {
        let c = &self.config;
        let listed = match failure {
            Failure::Connect => c.on.connect_failure,
            Failure::Reset => c.on.reset,
            Failure::Timeout => c.on.timeout,
            Failure::Status(s) => c.on.statuses.contains(&s),
        };
        if !listed {
            return Err(Stop::NotListed);
        }
        // A refused connection sent nothing; anything else may have reached the upstream.
        let sent = failure != Failure::Connect;
        if replay.answer_started || (sent && !(replay.repeatable && replay.body_resendable)) {
            return Err(Stop::NotRepeatable);
        }
        if tried >= c.attempts {
            return Err(Stop::NoAttemptsLeft);
        }
        if !target_left() {
            return Err(Stop::NoTarget);
        }
        let wait = backoff(c.backoff_base, c.backoff_max, tried);
        if deadline.is_some_and(|d| Instant::now().checked_add(wait).is_none_or(|at| at >= d)) {
            return Err(Stop::Deadline);
        }
        let m = metrics::get();
        if !self
            .budget
            .try_spend(now_second(), c.budget_ratio, c.budget_min_per_second)
        {
            m.upstream_retry_budget_exhausted
                .with_label_values(&[upstream])
                .inc();
            return Err(Stop::Budget);
        }
        m.upstream_retries
            .with_label_values(&[upstream, &failure.label()])
            .inc();
        Ok(wait)
    }
}

/// The next attempt's deadline: the route's, or sooner with `retry.per_try_timeout`.
pub fn attempt_deadline(route_deadline: Option<Instant>, per_try: Option<Duration>) -> Option<Instant> {
    let per_try = per_try.and_then(|t| Instant::now().checked_add(t));
    match (route_deadline, per_try) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Full jitter (AWS's "exponential backoff and jitter"): before retry n, a wait drawn
/// uniformly from `[0, min(max, base × 2^(n-1))]`, so clients that failed together do not
/// come back together.
pub fn backoff(base: Duration, max: Duration, retry: usize) -> Duration {
    let shift = retry.saturating_sub(1).min(20) as u32;
    let ceiling = base.saturating_mul(1 << shift).min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Requests and retries of the current second, in one word so a retry is granted against
/// the same second's count it was checked with (no lock, no lost update).
#[derive(Debug)]
struct Budget {
    /// `second (24 bits) | requests (20 bits) | retries (20 bits)`.
    state: AtomicU64,
}

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const SECOND_MASK: u64 = (1 << 24) - 1;

fn pack(second: u64, requests: u64, retries: u64) -> u64 {
    ((second & SECOND_MASK) << (2 * COUNT_BITS))
        | (requests.min(COUNT_MAX) << COUNT_BITS)
        | retries.min(COUNT_MAX)
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

impl Budget {
    fn new() -> Budget {
        Budget {
            state: AtomicU64::new(pack(now_second(), 0, 0)),
        }
    }

    /// The second to count in and its counts so far: ours, fresh, when the word holds an
    /// earlier second; the word's own when it holds a later one (a thread that read the clock
    /// just before another moved the word on must not move it back and reset its counts).
    fn counts(word: u64, second: u64) -> (u64, u64, u64) {
        let (s, requests, retries) = unpack(word);
        let ours = second & SECOND_MASK;
        let ahead = s.wrapping_sub(ours) & SECOND_MASK;
        if s == ours || (ahead != 0 && ahead < SECOND_MASK / 2) {
            (s, requests, retries)
        } else {
            (ours, 0, 0)
        }
    }

    fn note_request(&self, second: u64) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let (s, requests, retries) = Budget::counts(word, second);
                Some(pack(s, requests + 1, retries))
            });
    }

    fn try_spend(&self, second: u64, ratio: f64, floor: u32) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let (s, requests, retries) = Budget::counts(word, second);
                let allowed = (requests as f64 * ratio).floor() as u64 + u64::from(floor);
                (retries < allowed).then(|| pack(s, requests, retries + 1))
            })
            .is_ok()
    }
}

/// Whole seconds on the process's monotonic clock.
fn now_second() -> u64 {
    super::stats::now_micros() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_override_names_are_the_configured_list() {
        let headers = &METHOD_OVERRIDE_HEADERS;
        let names: Vec<&str> = headers.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, crate::config::client_header_names::METHOD_OVERRIDES);
    }

    #[test]
    fn any_override_header_among_others_counts() {
        for name in crate::config::client_header_names::METHOD_OVERRIDES {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
            headers.insert("x-other", http::HeaderValue::from_static("1"));
            assert!(!overrides_method(&headers, None));
            headers.insert(*name, http::HeaderValue::from_static("POST"));
            assert!(overrides_method(&headers, None), "{name}");
        }
        assert!(overrides_method(
            &http::HeaderMap::new(),
            Some("a=1&_METHOD=POST")
        ));
    }
    use crate::config::RetryOn;

    fn retries(attempts: usize) -> Retries {
        Retries::new(RetryConfig {
            attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            budget_ratio: 0.2,
            budget_min_per_second: 0,
            ..RetryConfig::default()
        })
    }

    const SAFE: Replay = Replay {
        repeatable: true,
        body_resendable: true,
        answer_started: false,
    };

    #[test]
    fn the_budget_grants_ratio_times_requests_plus_the_floor_per_second() {
        let b = Budget {
            state: AtomicU64::new(pack(6, 0, 0)),
        };
        for _ in 0..10 {
            b.note_request(7);
        }
        // 10 requests × 0.2 + 1 = 3 retries this second.
        let granted = (0..10).filter(|_| b.try_spend(7, 0.2, 1)).count();
        assert_eq!(granted, 3);
        // A new second starts from nothing but the floor.
        assert!(b.try_spend(8, 0.2, 1));
        assert!(!b.try_spend(8, 0.2, 1));
        // A thread whose clock still says second 7 counts in second 8: it neither moves the
        // word back nor resets what second 8 spent.
        assert!(!b.try_spend(7, 0.2, 1));
        b.note_request(7);
        assert_eq!(unpack(b.state.load(Ordering::Acquire)), (8, 1, 1));
    }

    #[test]
    fn a_request_that_may_have_arrived_is_repeated_only_when_that_is_harmless() {
        let r = retries(3);
        let post = Replay {
            repeatable: false,
            ..SAFE
        };
        r.note_request();
        for failure in [Failure::Reset, Failure::Status(503)] {
            assert_eq!(
                r.decide("u", failure, post, 1, None, || true),
                Err(Stop::NotRepeatable)
            );
        }
        let streamed = Replay {
            body_resendable: false,
            ..SAFE
        };
        assert_eq!(
            r.decide("u", Failure::Reset, streamed, 1, None, || true),
            Err(Stop::NotRepeatable)
        );
        let answered = Replay {
            answer_started: true,
            ..SAFE
        };
        assert_eq!(
            r.decide("u", Failure::Status(503), answered, 1, None, || true),
            Err(Stop::NotRepeatable)
        );
    }

    #[test]
    fn listed_failures_attempts_targets_and_deadline_bound_a_retry() {
        let r = Retries::new(RetryConfig {
            on: RetryOn {
                connect_failure: true,
                reset: false,
                timeout: false,
                statuses: vec![503],
            },
            budget_min_per_second: 100,
            ..retries(2).config
        });
        assert_eq!(
            r.decide("u", Failure::Reset, SAFE, 1, None, || true),
            Err(Stop::NotListed)
        );
        assert_eq!(
            r.decide("u", Failure::Status(500), SAFE, 1, None, || true),
            Err(Stop::NotListed)
        );
        assert!(r
            .decide("u", Failure::Status(503), SAFE, 1, None, || true)
            .is_ok());
        assert_eq!(
            r.decide("u", Failure::Status(503), SAFE, 2, None, || true),
            Err(Stop::NoAttemptsLeft)
        );
        assert_eq!(
            r.decide("u", Failure::Connect, SAFE, 1, None, || false),
            Err(Stop::NoTarget)
        );
        let past = Instant::now();
        assert_eq!(
            r.decide("u", Failure::Connect, SAFE, 1, Some(past), || true),
            Err(Stop::Deadline)
        );
        // Nothing was sent: even a POST is tried again after a refused connect.
        let post = Replay {
            repeatable: false,
            body_resendable: false,
            answer_started: false,
        };
        assert!(r.decide("u", Failure::Connect, post, 1, None, || true).is_ok());
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(35);
        for _ in 0..200 {
            assert!(backoff(base, max, 1) <= base);
            assert!(backoff(base, max, 2) <= 2 * base);
            assert!(backoff(base, max, 5) <= max);
        }
        assert!(
            (0..200).any(|_| backoff(base, max, 3) > base),
            "the ceiling doubles"
        );
    }
}
