//! `server.access_log`: `true` / `false` (the text line in the process log), or
//! `{ format: text | json, path: stdout | FILE, fields: [...] }`.

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::yaml::Node;

/// One field of an access-log line, in the order `fields` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessField {
    Time,
    RequestId,
    TraceId,
    Client,
    Host,
    Method,
    Path,
    Query,
    Route,
    Version,
    Consumer,
    Upstream,
    Target,
    UpstreamStatus,
    UpstreamMs,
    Attempts,
    BytesIn,
    BytesOut,
    Status,
    DurationMs,
    Reason,
    Parts,
    /// A transcoded call's gRPC method (`/pkg.Service/Method`).
    GrpcMethod,
    /// How a gRPC call ended (transcoded or proxied): its `grpc-status`.
    GrpcStatus,
    /// What the response store did (`HIT`, `MISS`…), on caching routes.
    Cache,
}

impl AccessField {
    pub const ALL: [AccessField; 25] = [
        AccessField::Time,
        AccessField::RequestId,
        AccessField::TraceId,
        AccessField::Client,
        AccessField::Host,
        AccessField::Method,
        AccessField::Path,
        AccessField::Query,
        AccessField::Route,
        AccessField::Version,
        AccessField::Consumer,
        AccessField::Upstream,
        AccessField::Target,
        AccessField::UpstreamStatus,
        AccessField::UpstreamMs,
        AccessField::Attempts,
        AccessField::BytesIn,
        AccessField::BytesOut,
        AccessField::Status,
        AccessField::DurationMs,
        AccessField::Reason,
        AccessField::Parts,
        AccessField::GrpcMethod,
        AccessField::GrpcStatus,
        AccessField::Cache,
    ];

    /// The key in a JSON line and in `fields`.
    pub fn name(self) -> &'static str {
        match self {
            AccessField::Time => "time",
            AccessField::RequestId => "request_id",
            AccessField::TraceId => "trace_id",
            AccessField::Client => "client",
            AccessField::Host => "host",
            AccessField::Method => "method",
            AccessField::Path => "path",
            AccessField::Query => "query",
            AccessField::Route => "route",
            AccessField::Version => "version",
            AccessField::Consumer => "consumer",
            AccessField::Upstream => "upstream",
            AccessField::Target => "target",
            AccessField::UpstreamStatus => "upstream_status",
            AccessField::UpstreamMs => "upstream_ms",
            AccessField::Attempts => "attempts",
            AccessField::BytesIn => "bytes_in",
            AccessField::BytesOut => "bytes_out",
            AccessField::Status => "status",
            AccessField::DurationMs => "duration_ms",
            AccessField::Reason => "reason",
            AccessField::Parts => "parts",
            AccessField::GrpcMethod => "grpc_method",
            AccessField::GrpcStatus => "grpc_status",
            AccessField::Cache => "cache",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    Text,
    Json,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessPath {
    /// The process log (`log` target `portcullis::access`), as with `access_log: true`.
    ProcessLog,
    Stdout,
    /// Appended to; reopened on SIGUSR1 (after logrotate moved it).
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    pub format: AccessFormat,
    pub path: AccessPath,
    /// Empty: the format's default (every field for JSON; the classic line for text).
    pub fields: Vec<AccessField>,
}

impl AccessLogConfig {
    /// Whether lines carry the query (JSON by default, or when `fields` lists `query`).
    pub fn shows_query(&self) -> bool {
        match self.format {
            AccessFormat::Json => self.fields.is_empty() || self.fields.contains(&AccessField::Query),
            AccessFormat::Text => self.fields.contains(&AccessField::Query),
        }
    }
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            format: AccessFormat::Text,
            path: AccessPath::ProcessLog,
            fields: Vec::new(),
        }
    }
}

pub(super) fn decode_access_log(f: &Fields<'_>, p: &mut Problems) -> Option<AccessLogConfig> {
    let path = f.path_of("access_log");
    let node = match f.node("access_log") {
        None | Some(Node::Null { .. }) => return Some(AccessLogConfig::default()),
        Some(n @ Node::Map { .. }) => n,
        Some(_) => {
            let enabled: bool = f.or("access_log", true, p);
            return Some(AccessLogConfig {
                enabled,
                ..AccessLogConfig::default()
            });
        }
    };
    let m = Fields::new(node, &path, &["format", "path", "fields"], p)?;
    let format = match m.opt::<Spanned<String>>("format", p) {
        None => AccessFormat::Json,
        Some(s) if s.value == "json" => AccessFormat::Json,
        Some(s) if s.value == "text" => AccessFormat::Text,
        Some(s) => {
            p.add(
                s.pos,
                &m.path_of("format"),
                format!("unknown value `{}`; expected json or text", s.value),
            );
            return None;
        }
    };
    let out = match m.opt::<Spanned<String>>("path", p) {
        None => AccessPath::Stdout,
        Some(s) if s.value == "stdout" => AccessPath::Stdout,
        Some(s) if s.value.starts_with('/') => AccessPath::File(s.value),
        Some(s) => {
            p.add(
                s.pos,
                &m.path_of("path"),
                format!("`{}`: give `stdout` or an absolute file path", s.value),
            );
            return None;
        }
    };
    let names: Vec<Spanned<String>> = m.or("fields", Vec::new(), p);
    let mut fields = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match AccessField::ALL.iter().find(|f| f.name() == n.value) {
            Some(field) if fields.contains(field) => p.add(
                n.pos,
                &index(&m.path_of("fields"), i),
                format!("`{}` is listed twice", n.value),
            ),
            Some(field) => fields.push(*field),
            None => p.add(
                n.pos,
                &index(&m.path_of("fields"), i),
                format!(
                    "unknown field `{}`; expected one of {}",
                    n.value,
                    AccessField::ALL
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    Some(AccessLogConfig {
        enabled: true,
        format,
        path: out,
        fields,
    })
}
