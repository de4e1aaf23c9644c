//! Helpers shared by unit tests.

use pingora::http::RequestHeader;

/// A request header with `target` and the given headers, in order.
pub fn request_header(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", target.as_bytes(), None).expect("valid test request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("valid test header");
    }
    r
}
