//! One access-log line per request: by default through `log` (target `portcullis::access`), as
//! space-separated `key=value` pairs; or, with `server.access_log: { format, path, fields }`,
//! JSON or chosen `key=value` fields written to stdout or a file (see `access_sink`). Values are
//! the canonical path and validated header values, and JSON strings are escaped, so a client
//! cannot inject line breaks into the log.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::config::access_log_schema::{AccessField, AccessFormat, AccessLogConfig, AccessPath};

pub struct AccessEntry<'a> {
    pub request_id: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    /// The resolved API version, empty on unversioned routes.
    pub version: &'a str,
    /// The authenticated consumer, `-` when none.
    pub consumer: &'a str,
    pub target: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    /// Attempts made again after a failed one (see `upstream::retry`).
    pub retries: usize,
    /// Aggregated routes: `part:status:ms` per part (`part:reason:ms` when it failed).
    pub parts: Option<&'a str>,
    pub time: SystemTime,
    /// The W3C trace id the request carried, `-` when none.
    pub trace_id: &'a str,
    pub host: &'a str,
    /// The client's query with configured credential parameters' values redacted.
    pub query: Option<&'a str>,
    /// The upstream (pool) of the last attempt.
    pub upstream: &'a str,
    pub upstream_status: Option<u16>,
    pub upstream_latency: Option<Duration>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Why the gateway answered itself, on its own refusals and errors.
    pub reason: Option<&'a str>,
    /// A transcoded call's gRPC method.
    pub grpc_method: Option<&'a str>,
    /// A gRPC call's status (transcoded or proxied).
    pub grpc_status: Option<u8>,
    pub cache: Option<&'static str>,
}

pub const TARGET: &str = "portcullis::access";

/// Log `entry` as `config` says.
pub fn write(entry: &AccessEntry<'_>, config: &AccessLogConfig) {
    if !config.enabled {
        return;
    }
    let line = match (config.format, config.fields.is_empty()) {
        (AccessFormat::Text, true) => return write_classic(entry, &config.path),
        (AccessFormat::Json, _) => json_line(entry, fields(config)),
        (AccessFormat::Text, false) => text_line(entry, &config.fields),
    };
    match &config.path {
        AccessPath::ProcessLog => log::info!(target: TARGET, "{line}"),
        _ => super::access_sink::send(line),
    }
}

fn fields(config: &AccessLogConfig) -> &[AccessField] {
    if config.fields.is_empty() {
        &AccessField::ALL
    } else {
        &config.fields
    }
}

/// A field's value; `None` when it has none for this request (JSON `null`, text `-`).
fn value<'a>(entry: &AccessEntry<'a>, field: AccessField) -> Option<Value<'a>> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Some(match field {
        AccessField::Time => Value::Owned(crate::config::date::rfc3339_millis(entry.time)),
        AccessField::RequestId => Value::Str(entry.request_id),
        AccessField::TraceId => Value::Str(entry.trace_id).non_dash()?,
        AccessField::Client => Value::Str(entry.client).non_dash()?,
        AccessField::Host => Value::Str(entry.host),
        AccessField::Method => Value::Str(entry.method),
        AccessField::Path => Value::Str(entry.path),
        AccessField::Query => Value::Str(entry.query?),
        AccessField::Route => Value::Str(entry.route).non_dash()?,
        AccessField::Version => Value::Str(entry.version).non_dash()?,
        AccessField::Consumer => Value::Str(entry.consumer).non_dash()?,
        AccessField::Upstream => Value::Str(entry.upstream).non_dash()?,
        AccessField::Target => Value::Str(entry.target).non_dash()?,
        AccessField::UpstreamStatus => Value::Int(u64::from(entry.upstream_status?)),
        AccessField::UpstreamMs => Value::Float(ms(entry.upstream_latency?)),
        AccessField::Attempts => Value::Int(u64::from(entry.target != "-") + entry.retries as u64),
        AccessField::BytesIn => Value::Int(entry.bytes_in),
        AccessField::BytesOut => Value::Int(entry.bytes as u64),
        AccessField::Status => Value::Int(u64::from(entry.status)),
        AccessField::DurationMs => Value::Float(ms(entry.duration)),
        AccessField::Reason => Value::Str(entry.reason?),
        AccessField::Parts => Value::Str(entry.parts?),
        AccessField::GrpcMethod => Value::Str(entry.grpc_method?),
        AccessField::GrpcStatus => Value::Int(u64::from(entry.grpc_status?)),
        AccessField::Cache => Value::Str(entry.cache?),
    })
}

enum Value<'a> {
    Str(&'a str),
    Owned(String),
    Int(u64),
    Float(f64),
}

impl Value<'_> {
    fn non_dash(self) -> Option<Self> {
        match self {
            Value::Str(s) if s.is_empty() || s == "-" => None,
            other => Some(other),
        }
    }
}

fn json_line(entry: &AccessEntry<'_>, fields: &[AccessField]) -> String {
    let mut line = String::with_capacity(384);
    line.push('{');
    for (i, &field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let _ = write!(line, "\"{}\":", field.name());
        match value(entry, field) {
            None => line.push_str("null"),
            Some(Value::Str(s)) => json_string(&mut line, s),
            Some(Value::Owned(s)) => json_string(&mut line, &s),
            Some(Value::Int(n)) => {
                let _ = write!(line, "{n}");
            }
            Some(Value::Float(f)) => {
                let _ = write!(line, "{f:.3}");
            }
        }
    }
    line.push('}');
    line
}

fn text_line(entry: &AccessEntry<'_>, fields: &[AccessField]) -> String {
    let mut line = String::with_capacity(256);
    for (i, &field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let _ = write!(line, "{}=", field.name());
        match value(entry, field) {
            None => line.push('-'),
            Some(Value::Str(s)) => line.push_str(&sanitize(s)),
            Some(Value::Owned(s)) => line.push_str(&sanitize(&s)),
            Some(Value::Int(n)) => {
                let _ = write!(line, "{n}");
            }
            Some(Value::Float(f)) => {
                let _ = write!(line, "{f:.3}");
            }
        }
    }
    line
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The classic text line (`access_log: true`).
fn write_classic(entry: &AccessEntry<'_>, path: &AccessPath) {
    if *path == AccessPath::ProcessLog && !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "id={} client={} method={} path={} route={} version={} consumer={} target={} status={} bytes={} duration_ms={:.3} retries={}",
        entry.request_id,
        entry.client,
        entry.method,
        sanitize(entry.path),
        entry.route,
        if entry.version.is_empty() { "-" } else { entry.version },
        sanitize(entry.consumer),
        entry.target,
        entry.status,
        entry.bytes,
        entry.duration.as_secs_f64() * 1000.0,
        entry.retries
    );
    if let Some(parts) = entry.parts {
        let _ = write!(line, " parts={parts}");
    }
    if let Some(method) = entry.grpc_method {
        let _ = write!(line, " grpc={method}");
    }
    if let Some(status) = entry.grpc_status {
        let _ = write!(line, " grpc_status={status}");
    }
    if let Some(cache) = entry.cache {
        let _ = write!(line, " cache={cache}");
    }
    match path {
        AccessPath::ProcessLog => log::info!(target: TARGET, "{line}"),
        _ => super::access_sink::send(line),
    }
}

/// Paths that failed normalization are logged raw; keep them printable and on one line.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(
            s.chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AccessEntry<'static> {
        AccessEntry {
            request_id: "r1",
            client: "10.0.0.1",
            method: "GET",
            path: "/a\"b",
            route: "-",
            version: "",
            consumer: "-",
            target: "127.0.0.1:9",
            status: 502,
            bytes: 10,
            duration: Duration::from_micros(1500),
            retries: 1,
            parts: None,
            time: std::time::UNIX_EPOCH,
            trace_id: "-",
            host: "h",
            query: Some("k=REDACTED"),
            upstream: "app",
            upstream_status: None,
            upstream_latency: None,
            bytes_in: 0,
            reason: Some("bad\nthing"),
            grpc_method: None,
            grpc_status: None,
            cache: None,
        }
    }

    #[test]
    fn json_lines_escape_and_name_missing_values_null() {
        let line = json_line(&entry(), &AccessField::ALL);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["reason"], "bad\nthing");
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["attempts"], 2);
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert!(!line.contains('\n'));
        let text = text_line(
            &entry(),
            &[AccessField::Status, AccessField::Route, AccessField::Reason],
        );
        assert_eq!(text, "status=502 route=- reason=bad?thing");
    }
}
