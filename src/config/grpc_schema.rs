//! Decoding and checking a route's `grpc:` block (REST/JSON → gRPC transcoding).
//!
//! The descriptors are compiled (or decoded) here, so `check` reports a `.proto` syntax error
//! with its file:line:col, a missing service, a method without an HTTP binding, a client- or
//! bidirectional-streaming method, a binding whose fields do not exist and two bindings that
//! match the same requests, every problem at once. Where a binding is reachable at all is
//! checked against the other routes when the routing table is built (`runtime`).

use std::path::Path;
use std::sync::Arc;

use http::HeaderName;

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::size::ByteSize;
use super::values::header_name;
use super::yaml::Node;
use crate::grpc::bindings::Table;
use crate::grpc::message::Print;

const GRPC_FIELDS: &[&str] = &[
    "upstream",
    "protos",
    "include",
    "descriptor_set",
    "services",
    "print",
    "max_request_body",
    "max_response_body",
    "auto_mapping",
    "stream",
    "ignore_unknown_query",
    "ignored_query_parameters",
    "forward_headers",
];
const PRINT_FIELDS: &[&str] = &["proto_field_names", "enums_as_ints", "emit_defaults"];

/// Defaults as the issue and Envoy's transcoder size them.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1024 * 1024;
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;
/// Either limit is held in memory per request, and a decoded message takes more than its
/// wire size (a packed number is one byte on the wire, a value of some 32 bytes decoded).
const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How a server-streaming method's messages reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// One JSON array, written element by element as messages arrive.
    JsonArray,
    /// One JSON document per line (`application/x-ndjson`).
    Ndjson,
}

/// Headers that are never forwarded as metadata, whatever `forward_headers` says: the
/// connection's own, and what gRPC itself sets.
const NEVER_FORWARDED: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "content-type",
    "te",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "cookie",
    "proxy-connection",
    "trailer",
];

#[derive(Debug, Clone)]
pub struct GrpcConfig {
    pub upstream: Spanned<String>,
    pub services: Vec<Spanned<String>>,
    pub print: Print,
    pub max_request_body: usize,
    pub max_response_body: usize,
    pub auto_mapping: bool,
    pub stream: StreamFormat,
    /// Unknown query parameters are dropped instead of refused.
    pub ignore_unknown_query: bool,
    /// Query parameters dropped before binding (besides the route's credential parameters).
    pub ignored_query_parameters: Vec<String>,
    /// Client headers forwarded as metadata (`authorization` only when listed).
    pub forward_headers: Vec<HeaderName>,
    /// Every binding, compiled from the descriptors.
    pub table: Arc<Table>,
}

pub(super) fn decode_grpc(node: &Node, path: &str, base_dir: &Path, p: &mut Problems) -> Option<GrpcConfig> {
    let f = Fields::new(node, path, GRPC_FIELDS, p)?;
    let upstream: Option<Spanned<String>> = f.req("upstream", p);
    let protos: Vec<Spanned<String>> = f.or("protos", Vec::new(), p);
    let include: Vec<Spanned<String>> = f.or("include", Vec::new(), p);
    let descriptor_set: Option<Spanned<String>> = f.opt("descriptor_set", p);
    let services: Vec<Spanned<String>> = f.or("services", Vec::new(), p);
    if services.is_empty() && !f.has("services") {
        p.add(
            f.pos(),
            &f.path_of("services"),
            "missing required field `services` (the fully-qualified services this route transcodes)",
        );
    } else if services.is_empty() {
        p.add(f.pos_of("services"), &f.path_of("services"), "lists no service");
    }
    let auto_mapping = f.or("auto_mapping", false, p);
    let print = decode_print(&f, p)?;
    let max_request_body = size(&f, "max_request_body", DEFAULT_MAX_REQUEST_BODY, p);
    let max_response_body = size(&f, "max_response_body", DEFAULT_MAX_RESPONSE_BODY, p);
    let stream = f.choice(
        "stream",
        &[
            ("json_array", StreamFormat::JsonArray),
            ("ndjson", StreamFormat::Ndjson),
        ],
        StreamFormat::JsonArray,
        p,
    );
    let ignored_query_parameters: Vec<Spanned<String>> = f.or("ignored_query_parameters", Vec::new(), p);
    let forward: Vec<Spanned<String>> = f.or("forward_headers", Vec::new(), p);
    let mut forward_headers = Vec::new();
    for (i, h) in forward.iter().enumerate() {
        let at = index(&f.path_of("forward_headers"), i);
        let Some(name) = header_name(h, &at, p) else {
            continue;
        };
        // `grpc-*` is reserved to gRPC itself (status, timeout, encoding).
        if NEVER_FORWARDED.contains(&name.as_str()) || name.as_str().starts_with("grpc-") {
            p.add(h.pos, &at, format!("`{name}` is never forwarded as gRPC metadata (the gateway sets it, or it belongs to the client's connection)"));
            continue;
        }
        forward_headers.push(name);
    }
    let pool = match (&descriptor_set, protos.is_empty()) {
        (Some(set), true) => {
            let full = base_dir.join(&set.value);
            match super::read_bounded_bytes(&full) {
                Ok(bytes) => crate::grpc::descriptors::decode_set(&bytes)
                    .map_err(|e| {
                        p.add(
                            set.pos,
                            &f.path_of("descriptor_set"),
                            format!("{}: {e}", full.display()),
                        )
                    })
                    .ok(),
                Err(e) => {
                    p.add(
                        set.pos,
                        &f.path_of("descriptor_set"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    None
                }
            }
        }
        (None, false) => {
            let files: Vec<String> = protos.iter().map(|s| s.value.clone()).collect();
            let dirs: Vec<String> = include.iter().map(|s| s.value.clone()).collect();
            crate::grpc::descriptors::compile(&files, &dirs, base_dir)
                .map_err(|e| p.add(f.pos_of("protos"), &f.path_of("protos"), e))
                .ok()
        }
        (Some(set), false) => {
            p.add(
                set.pos,
                &f.path_of("descriptor_set"),
                "give either `protos` or `descriptor_set`, not both",
            );
            None
        }
        (None, true) => {
            p.add(f.pos(), &f.path_of("protos"), "missing `protos` (.proto files, compiled at load) or `descriptor_set` (a FileDescriptorSet built with protoc --include_imports)");
            None
        }
    };
    let names: Vec<String> = services.iter().map(|s| s.value.clone()).collect();
    let table = match &pool {
        Some(pool) if !names.is_empty() => match Table::compile(pool, &names, auto_mapping) {
            Ok(t) => Some(t),
            Err(problems) => {
                for (i, why) in problems {
                    let at = services.get(i).map_or(f.pos_of("services"), |s| s.pos);
                    p.add(at, &index(&f.path_of("services"), i), why);
                }
                None
            }
        },
        _ => None,
    };
    Some(GrpcConfig {
        upstream: upstream?,
        services,
        print,
        max_request_body: max_request_body?,
        max_response_body: max_response_body?,
        auto_mapping,
        stream: stream?,
        ignore_unknown_query: f.or("ignore_unknown_query", false, p),
        ignored_query_parameters: ignored_query_parameters.into_iter().map(|s| s.value).collect(),
        forward_headers,
        table: Arc::new(table?),
    })
}

fn decode_print(f: &Fields<'_>, p: &mut Problems) -> Option<Print> {
    let Some(node) = f.node("print") else {
        return Some(Print::default());
    };
    let pf = Fields::nested(node, &f.path_of("print"), PRINT_FIELDS, GRPC_FIELDS, p)?;
    Some(Print {
        proto_field_names: pf.or("proto_field_names", false, p),
        enums_as_ints: pf.or("enums_as_ints", false, p),
        emit_defaults: pf.or("emit_defaults", false, p),
    })
}

fn size(f: &Fields<'_>, key: &str, default: usize, p: &mut Problems) -> Option<usize> {
    let Some(size) = f.opt::<Spanned<ByteSize>>(key, p) else {
        return (!f.has(key)).then_some(default);
    };
    if size.value.0 == 0 || size.value.0 > MAX_BODY_LIMIT {
        p.add(
            size.pos,
            &f.path_of(key),
            format!(
                "must be from 1 byte to {} MiB (the body is held in memory)",
                MAX_BODY_LIMIT / (1024 * 1024)
            ),
        );
        return None;
    }
    Some(size.value.0)
}
