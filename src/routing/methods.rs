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

    /// Whether `method` is allowed. Methods outside the known set match only "any".
    pub fn allows(&self, method: &Method) -> bool {
        self.0 == 0 || bit(method).is_some_and(|b| self.0 & b != 0)
    }

    /// `GET, POST` for an `Allow` header.
    pub fn allow_header(&self) -> String {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

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
        assert_eq!(s.allow_header(), "GET, POST");
    }
}
