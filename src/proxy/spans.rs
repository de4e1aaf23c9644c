//! The request's place in a distributed trace: its W3C context, taken from the client's
//! `traceparent` or started (first thing in `request_filter`), and its SERVER span, recorded
//! when the request ends (in `logging`). Upstream attempts are CLIENT spans of it
//! (`upstream::attempt`), and carry it to the upstream in `traceparent`.

use std::time::SystemTime;

use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::observe::metrics;
use crate::observe::trace::{self, ClientSampling, Kind, Span, TraceContext, Value, TRACEPARENT, TRACESTATE};

/// Continue the client's trace when its `traceparent` is valid (exactly one), else start one.
/// Whether the client's sampled flag is followed is `tracing.client_sampling`'s call.
pub fn begin(req: &RequestHeader, ctx: &RequestCtx) -> TraceContext {
    let sampling = &ctx.snapshot.trace_sampling;
    let mut parents = req.headers.get_all(TRACEPARENT).iter();
    let traceparent = match (parents.next(), parents.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    };
    // `tracestate` travels only with a `traceparent`: without one it is not looked up.
    let tracestate = traceparent.and_then(|_| client_tracestate(req));
    let trusted = match sampling.client_sampling {
        ClientSampling::Always => true,
        ClientSampling::Never => false,
        ClientSampling::TrustedProxies => {
            super::forwarding::is_trusted(ctx.client.ip, &ctx.snapshot.settings.trusted_proxies)
        }
    };
    TraceContext::begin(traceparent, tracestate.as_ref(), sampling, trusted)
}

/// The client's `tracestate`: repeated headers are one list (W3C Trace Context §3.3.1.1).
fn client_tracestate(req: &RequestHeader) -> Option<http::HeaderValue> {
    let states: Vec<&[u8]> = req
        .headers
        .get_all(TRACESTATE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match states.as_slice() {
        [] => None,
        [one] => http::HeaderValue::from_bytes(one).ok(),
        many => http::HeaderValue::from_bytes(&many.join(&b","[..])).ok(),
    }
}

/// Record the request's SERVER span, when its trace is recorded.
pub fn finish(session: &Session, ctx: &RequestCtx, status: u16) {
    let Some(t) = ctx.trace.as_ref().filter(|t| t.recording) else {
        return;
    };
    let req = session.req_header();
    let method = metrics::method_label(&req.method);
    let route = ctx.route_name();
    let mut attributes = vec![
        ("http.request.method", Value::Str(method.to_string())),
        ("http.response.status_code", Value::Int(i64::from(status))),
        ("portcullis.request_id", Value::Str(ctx.request_id.to_string())),
    ];
    if !ctx.admission.path.is_empty() {
        attributes.push(("url.path", Value::Str(ctx.admission.path.clone())));
    }
    if route != "-" {
        attributes.push(("http.route", Value::Str(route.to_string())));
    }
    if let Some(ip) = ctx.client.ip {
        attributes.push(("client.address", Value::Str(ip.to_string())));
    }
    if let Some(id) = &ctx.admission.identity {
        attributes.push(("portcullis.consumer", Value::Str(id.consumer.clone())));
    }
    if ctx.upstream.retries > 0 {
        attributes.push(("portcullis.retries", Value::Int(ctx.upstream.retries as i64)));
    }
    let error = match (ctx.reply.gateway_reason, status) {
        (Some(reason), _) if status >= 500 || status == 0 => Some(reason.to_string()),
        (_, s) if s >= 500 || s == 0 => Some(status.to_string()),
        _ => None,
    };
    if let Some(reason) = ctx.reply.gateway_reason {
        attributes.push(("portcullis.reason", Value::Str(reason.to_string())));
    }
    if error.is_some() {
        attributes.push(("error.type", Value::Str(status.to_string())));
    }
    let end = SystemTime::now();
    let start = end.checked_sub(ctx.start.elapsed()).unwrap_or(end);
    trace::submit(
        Span {
            trace_id: t.trace_id,
            span_id: t.span_id,
            parent_span_id: t.parent_span_id,
            tracestate: t.tracestate.clone(),
            name: match route {
                "-" => method.to_string(),
                r => format!("{method} {r}"),
            },
            kind: Kind::Server,
            start_unix_nanos: trace::unix_nanos(start),
            end_unix_nanos: trace::unix_nanos(end),
            attributes,
            error,
        },
        t.max_queued,
    );
}
