//! gRPC status codes as a transcoded call's HTTP answer: the documented mapping table
//! (docs/grpc.md) and the canonical names problem+json carries.

/// The HTTP status for a gRPC status code. 0 is the only success; anything unknown is 500,
/// so a failed call is never a 2xx.
pub fn http_status(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,  // CANCELLED
        3 => 400,  // INVALID_ARGUMENT
        4 => 504,  // DEADLINE_EXCEEDED
        5 => 404,  // NOT_FOUND
        6 => 409,  // ALREADY_EXISTS
        7 => 403,  // PERMISSION_DENIED
        8 => 429,  // RESOURCE_EXHAUSTED
        9 => 400,  // FAILED_PRECONDITION
        10 => 409, // ABORTED
        11 => 400, // OUT_OF_RANGE
        12 => 501, // UNIMPLEMENTED
        14 => 503, // UNAVAILABLE
        16 => 401, // UNAUTHENTICATED
        _ => 500,  // UNKNOWN, INTERNAL, DATA_LOSS and anything else
    }
}

/// The canonical name of a code (`NOT_FOUND`).
pub fn name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec); decoded leniently, as the spec
/// asks (an invalid escape stays as it is).
pub fn decode_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_is_an_error_status() {
        for code in 1..=20 {
            assert!(http_status(code) >= 400, "{code}");
        }
        assert_eq!(http_status(0), 200);
        assert_eq!(name(5), "NOT_FOUND");
        assert_eq!(name(99), "UNKNOWN");
    }

    #[test]
    fn messages_are_percent_decoded() {
        assert_eq!(decode_message(b"no%20such%20order%3A%207"), "no such order: 7");
        assert_eq!(decode_message(b"100%"), "100%");
        assert_eq!(decode_message(b"%E2%9C%93 done"), "\u{2713} done");
    }
}
