//! The request's id: the client's `X-Request-Id` when it is short and plain (it ends up in
//! logs), else 128 random bits as 32 lower-case hex digits.
//!
//! Held as the header value it is sent as, upstream and back to the client: a client's id is
//! the value it sent (shared, not copied), and a generated one is made once. As a `String` the
//! id cost an allocation and then a copy and a check per header (about 0.9k instructions per
//! request in scenario A of `benches/load/run.sh`).

use std::fmt;

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::RequestHeader;

use super::forwarding::X_REQUEST_ID;

/// The longest client id kept.
const MAX_CLIENT_ID: usize = 128;

#[derive(Clone)]
pub struct RequestId(HeaderValue);

/// The id itself (a sensitive `HeaderValue` prints only `Sensitive`).
impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

impl RequestId {
    /// The client's id if it is plain, else a new one.
    ///
    /// Marked never to be indexed by HPACK: each id is sent once, and in an HTTP/2
    /// connection's header table ids only pushed out the values that repeat, while the
    /// encoder compared every new one with all of them (about 2.5k instructions per response
    /// in scenario H2 of `benches/load/run.sh`).
    pub fn of(req: &RequestHeader) -> RequestId {
        let mut value = match req.headers.get(&X_REQUEST_ID) {
            Some(v) if plain(v.as_bytes()) => v.clone(),
            _ => RequestId::generate(),
        };
        value.set_sensitive(true);
        RequestId(value)
    }

    fn generate() -> HeaderValue {
        // 32 hex digits without the formatting machinery: this runs for most requests.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut n = rand::random::<u128>();
        let mut id = [0u8; 32];
        for digit in &mut id {
            *digit = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        // One allocation, shared by every copy of the value (a `Vec`'s bytes would be copied
        // again on the first clone).
        HeaderValue::from_maybe_shared(Bytes::from_owner(id)).unwrap_or(HeaderValue::from_static("-"))
    }

    /// The header value (a shared handle, not a copy).
    pub fn value(&self) -> HeaderValue {
        self.0.clone()
    }

    pub fn as_str(&self) -> &str {
        // Only plain ASCII is ever held, so this cannot fail.
        self.0.to_str().unwrap_or("-")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Letters, digits and `-_.:`, 1 to [`MAX_CLIENT_ID`] bytes.
fn plain(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_CLIENT_ID
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(headers: &[(&str, &str)]) -> RequestId {
        RequestId::of(&crate::test_util::request_header("/", headers))
    }

    #[test]
    fn plain_client_ids_are_kept_others_replaced() {
        assert_eq!(id(&[("x-request-id", "abc-123")]).as_str(), "abc-123");
        for bad in ["bad id", "a\"b", "a/b", &"x".repeat(129)] {
            let made = id(&[("x-request-id", bad)]);
            assert_eq!(made.as_str().len(), 32, "{bad}");
            assert_ne!(made.as_str(), bad);
        }
        assert_eq!(id(&[("x-request-id", &"x".repeat(128))]).as_str().len(), 128);
        let a = id(&[]);
        let b = id(&[]);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a.as_str(), b.as_str(), "generated ids are random");
        assert_eq!(a.value().as_bytes(), a.as_str().as_bytes());
        assert!(a.value().is_sensitive(), "never indexed by HPACK");
        assert!(id(&[("x-request-id", "abc-123")]).value().is_sensitive());
    }
}
