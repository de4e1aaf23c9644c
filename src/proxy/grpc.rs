//! gRPC calls through the gateway: recognising one, answering a refusal in gRPC's terms (the
//! client reads `grpc-status`, not the HTTP status), and the status a call ended with, for the
//! request metrics (from the upstream's headers or trailers, or the gateway's own refusal).

use http::HeaderMap;
use pingora::http::RequestHeader;

/// A gRPC call (`content-type: application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for a gateway refusal's HTTP status.
pub fn status_for(http_status: u16) -> u8 {
    match http_status {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 405 => 12, // UNIMPLEMENTED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        502 | 503 => 14, // UNAVAILABLE
        504 => 4,        // DEADLINE_EXCEEDED
        500 => 13,       // INTERNAL
        _ => 2,          // UNKNOWN
    }
}

/// `grpc-status` of a response head or its trailers (0–16; anything else is UNKNOWN, 2).
///
/// The name is a constant: a `&str` key is parsed and checked on every lookup, and this one
/// runs on every response.
pub fn status_in(headers: &HeaderMap) -> Option<u8> {
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    let v = headers.get(GRPC_STATUS)?;
    Some(
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .filter(|s| *s <= 16)
            .unwrap_or(2),
    )
}

/// The `grpc_status` label: empty for requests that are not gRPC calls.
pub fn label(status: Option<u8>) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    status
        .and_then(|s| CODES.get(usize::from(s)))
        .copied()
        .unwrap_or("")
}
