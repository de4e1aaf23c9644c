//! HTTP methods as bits, so a route's method set is one integer test on the request path.

use http::Method;

const NAMES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// A set of methods; the empty set means "any method".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u16);

impl MethodSet {
    /// Build from upper-case names already validated by the config schema.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> MethodSet {
        let mut bits = 0;
        for n in names {
            if let Some(i) = NAMES.iter().position(|m| *m == n) {
                bits |= 1 << i;
            }
        }
        MethodSet(bits)
    }

    pub fn is_any(&self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    /// Whether `method` is allowed. Methods outside the known set match only "any". `HEAD` is
    /// allowed wherever `GET` is (RFC 9110 §9.3.2: a HEAD is a GET without the body).
    pub fn allows(&self, method: &Method) -> bool {
        self.0 == 0 || bit(method).is_some_and(|b| self.with_implied().0 & b != 0)
    }

    /// The set with the methods it implies (`HEAD` with `GET`).
    fn with_implied(self) -> MethodSet {
        if self.0 & GET != 0 {
            MethodSet(self.0 | HEAD)
        } else {
            self
        }
    }

    /// `GET, HEAD, POST` for an `Allow` header (implied methods included).
    pub fn allow_header(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// The methods of the set, implied ones included, in a fixed order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        let bits = self.with_implied().0;
        NAMES
            .iter()
            .enumerate()
            .filter(move |(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

const GET: u16 = 1;
const HEAD: u16 = 1 << 1;

fn bit(method: &Method) -> Option<u16> {
    let i = match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        _ => return None,
    };
    Some(1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_allow_and_format() {
        let s = MethodSet::from_names(["GET", "POST"]);
        assert!(s.allows(&Method::GET));
        assert!(!s.allows(&Method::DELETE));
        assert!(!s.allows(&Method::CONNECT));
        assert!(MethodSet::default().allows(&Method::CONNECT));
        assert!(s.allows(&Method::HEAD), "HEAD wherever GET");
        assert_eq!(s.allow_header(), "GET, HEAD, POST");
        let head_only = MethodSet::from_names(["HEAD"]);
        assert!(!head_only.allows(&Method::GET));
        assert_eq!(head_only.allow_header(), "HEAD");
    }
}
