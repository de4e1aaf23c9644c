//! Distributed tracing: W3C Trace Context (`traceparent`, `tracestate`) continued or started
//! for every request and passed to every upstream request, and spans (one SERVER span per
//! request, one CLIENT span per upstream attempt) put in a bounded queue that
//! [`super::trace_export`] drains in the background.
//!
//! Hand-written rather than the OpenTelemetry SDK: BENCHMARKS.md ("Tracing") has the
//! measurement. What the request path does here is random ids, a few stores, and one push
//! under an uncontended lock when the span is sampled and a collector is configured.
//!
//! This file depends only on `std`, `http` and `rand`, so the benchmark in
//! `benches/otel-cost/` can compile it as it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use rand::Rng;

/// The longest `tracestate` passed on (W3C: at least 512 characters must be propagated); a
/// longer one is dropped whole rather than cut at an arbitrary member.
pub const MAX_TRACESTATE: usize = 512;

/// The W3C Trace Context headers.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The part of a request's trace every span and every upstream request needs.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The gateway's SERVER span for this request.
    pub span_id: [u8; 8],
    /// The client's span, when the request continued a trace.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
    /// Spans are recorded (sampled, and a collector is configured).
    pub recording: bool,
    /// The queue's bound (`Sampling::max_queued`) when the spans are submitted.
    pub max_queued: usize,
    /// The client's `tracestate`, passed on unchanged with a valid `traceparent`.
    pub tracestate: Option<HeaderValue>,
    /// `trace_id` in hex, for logs.
    trace_hex: [u8; 32],
}

/// What `tracing:` asks of every request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// The share of new traces (requests without a valid `traceparent`) that are sampled.
    pub ratio: f64,
    /// Spans are exported (an `otlp_endpoint` is configured).
    pub export: bool,
    /// How many finished spans may wait for the exporter; beyond that they are dropped (and
    /// counted), so a slow or absent collector never holds memory or the request path.
    pub max_queued: usize,
    /// Whose sampled flag a continued trace follows.
    pub client_sampling: ClientSampling,
}

/// `tracing.client_sampling`: whether a client's `traceparent` sampled flag decides. When it
/// does not, the trace is still continued (same trace id, the client's span as parent) but
/// sampled at `sample_ratio`, so a client can neither force recording (filling the queue,
/// writing spans into any trace id it names) nor opt out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSampling {
    Always,
    TrustedProxies,
    Never,
}

impl TraceContext {
    /// Continue the client's trace when its `traceparent` is valid (its sampled flag decides,
    /// as OpenTelemetry's parent-based sampler does), else start one (sampled at `ratio`).
    /// `trust_flag`: the parent's sampled flag decides (else `ratio` does, as for a new trace).
    pub fn begin(
        traceparent: Option<&HeaderValue>,
        tracestate: Option<&HeaderValue>,
        sampling: &Sampling,
        trust_flag: bool,
    ) -> TraceContext {
        let mut rng = rand::thread_rng();
        let span_id = nonzero_id(&mut rng);
        let mut by_ratio = || sampling.ratio >= 1.0 || rng.gen::<f64>() < sampling.ratio;
        let (trace_id, parent_span_id, sampled, tracestate) =
            match traceparent.and_then(|v| parse_traceparent(v.as_bytes())) {
                Some(parent) => (
                    parent.trace_id,
                    Some(parent.span_id),
                    match trust_flag {
                        true => parent.flags & 1 == 1,
                        false => by_ratio(),
                    },
                    tracestate.filter(|v| v.len() <= MAX_TRACESTATE).cloned(),
                ),
                None => {
                    let sampled = by_ratio();
                    (nonzero_id(&mut rng), None, sampled, None)
                }
            };
        let mut trace_hex = [0u8; 32];
        hex_into(&trace_id, &mut trace_hex);
        TraceContext {
            trace_id,
            span_id,
            parent_span_id,
            sampled,
            recording: sampled && sampling.export,
            max_queued: sampling.max_queued,
            tracestate,
            trace_hex,
        }
    }

    /// The trace id in lower-case hex.
    pub fn trace_id_hex(&self) -> &str {
        std::str::from_utf8(&self.trace_hex).unwrap_or("-")
    }

    /// A new span id for a child of this request's span (an upstream attempt).
    pub fn child_id() -> [u8; 8] {
        nonzero_id(&mut rand::thread_rng())
    }

    /// The `traceparent` an upstream request carries: this trace, with `span_id` (the
    /// attempt's CLIENT span) as its parent.
    pub fn traceparent(&self, span_id: &[u8; 8]) -> HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        hex_into(span_id, &mut out[36..52]);
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        let mut value = HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(""));
        // Never indexed by HPACK: every attempt's span id is new (see `RequestId::of`).
        value.set_sensitive(true);
        value
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A random id that is not all zeros (all zeros means "invalid" in W3C Trace Context).
fn nonzero_id<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        rng.fill(&mut id[..]);
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// A parsed `traceparent`.
#[derive(Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// W3C Trace Context §3.2: `version-traceid-parentid-flags`, lower-case hex; version `ff`
/// and all-zero ids are invalid; version `00` is exactly 55 characters; a later version is
/// read by its first four fields (anything after them follows a `-`).
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = decode::<1>(&v[..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id = decode::<16>(&v[3..35])?;
    let span_id = decode::<8>(&v[36..52])?;
    let flags = decode::<1>(&v[53..55])?[0];
    if trace_id.iter().all(|b| *b == 0) || span_id.iter().all(|b| *b == 0) {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

/// `2 × N` lower-case hex digits.
fn decode<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// OTLP span kinds used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub tracestate: Option<HeaderValue>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// The span failed (OTLP status `ERROR`), with a message.
    pub error: Option<String>,
}

/// Nanoseconds since the Unix epoch (span timestamps are wall-clock time).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Finished spans waiting for the exporter. A plain buffer under a lock the exporter holds
/// only to swap it out: pushing is a few nanoseconds and wakes nobody (a channel would wake
/// the exporter on every span; see BENCHMARKS.md, "Tracing").
static QUEUE: Mutex<Vec<Span>> = Mutex::new(Vec::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Hand a finished span to the exporter; never waits on I/O. With `max_queued` spans already
/// waiting it is dropped, and counted.
pub fn submit(span: Span, max_queued: usize) {
    let Ok(mut queue) = QUEUE.lock() else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if queue.len() >= max_queued {
        drop(queue);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    queue.push(span);
}

/// Every span waiting, for the exporter.
pub fn drain() -> Vec<Span> {
    QUEUE
        .lock()
        .map(|mut q| std::mem::take(&mut *q))
        .unwrap_or_default()
}

/// Spans dropped because the queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_parsed_by_the_w3c_rules() {
        let p = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            p.map(|p| (hex(&p.trace_id), hex(&p.span_id), p.flags)),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into(),
                1
            ))
        );
        // A later version: its first four fields, whatever follows a `-`.
        assert!(parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").is_some());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_valid_parent_is_continued_and_an_invalid_one_replaced() {
        let all = Sampling {
            ratio: 0.0,
            export: true,
            max_queued: 8,
            client_sampling: ClientSampling::Always,
        };
        let parent = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let state = HeaderValue::from_static("vendor=x");
        let t = TraceContext::begin(Some(&parent), Some(&state), &all, true);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id.map(|s| hex(&s)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(t.sampled && t.recording, "the parent's sampled flag decides");
        assert_eq!(t.tracestate, Some(state.clone()));
        let child = TraceContext::child_id();
        let sent = t.traceparent(&child);
        assert_eq!(
            sent.to_str().ok(),
            Some(format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", hex(&child)).as_str())
        );

        let bad = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
        let t = TraceContext::begin(Some(&bad), Some(&state), &all, true);
        assert_ne!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            (t.parent_span_id, t.tracestate.is_none(), t.sampled),
            (None, true, false)
        );
        assert!(t.traceparent(&child).to_str().is_ok_and(|s| s.ends_with("-00")));

        // Not trusted: the trace continues, sampled at the ratio (0 here), whatever the flag.
        let t = TraceContext::begin(Some(&parent), Some(&state), &all, false);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!t.sampled && !t.recording);
    }
}
