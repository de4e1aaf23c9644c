//! Per-route header rules: remove, then rename, then set (replace), then add (append).
//!
//! Names and values were validated when the configuration was compiled, so applying a rule
//! cannot fail on the request path.

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::HeaderRulesConfig;

#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
}

/// The header edits the gateway makes, on Pingora's request and response heads or straight on
/// a `HeaderMap` (the proxied path's upstream head, edited without Pingora's case map: see
/// `proxy::edges::upstream_head`).
pub trait HeaderEdit {
    fn map(&self) -> &HeaderMap;
    /// Remove every value of `name` (only where present: on a Pingora head, removal rebuilds
    /// the case map).
    fn remove(&mut self, name: &HeaderName);
    /// Replace every value of `name` with `value`.
    fn put(&mut self, name: HeaderName, value: HeaderValue);
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.put(name.clone(), value.clone());
    }

    fn values(&self, name: &HeaderName) -> Vec<HeaderValue> {
        self.map().get_all(name).iter().cloned().collect()
    }

    /// Every value of `from`, now under `to` (whose own values it replaces).
    fn rename(&mut self, from: &HeaderName, to: &HeaderName) {
        let values = self.values(from);
        if values.is_empty() {
            return;
        }
        self.remove(from);
        self.remove(to);
        for value in &values {
            self.add(to, value);
        }
    }
}

macro_rules! header_edit {
    ($t:ty) => {
        impl HeaderEdit for $t {
            fn map(&self) -> &HeaderMap {
                &self.headers
            }
            fn remove(&mut self, name: &HeaderName) {
                if self.headers.contains_key(name) {
                    self.remove_header(name);
                }
            }
            fn put(&mut self, name: HeaderName, value: HeaderValue) {
                // Infallible: the name and value are already typed and valid.
                let _ = self.insert_header(name, value);
            }
            fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
                let _ = self.append_header(name.clone(), value.clone());
            }
        }
    };
}
header_edit!(RequestHeader);
header_edit!(ResponseHeader);

/// `text` as a header value (the request path's strings: host, request id, version name…).
pub fn value(text: &str) -> pingora::Result<HeaderValue> {
    HeaderValue::from_str(text)
        .map_err(|_| pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "not a header value"))
}

impl HeaderEdit for HeaderMap {
    fn map(&self) -> &HeaderMap {
        self
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
    fn put(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(name.clone(), value.clone());
    }
}

impl HeaderRules {
    /// The most headers these rules add to a head (a rename may add one).
    pub fn most_added(&self) -> usize {
        self.set.len() + self.add.len() + self.rename.len()
    }

    pub fn compile(cfg: &HeaderRulesConfig) -> HeaderRules {
        HeaderRules {
            set: cfg.set.clone(),
            add: cfg.add.clone(),
            remove: cfg.remove.clone(),
            rename: cfg.rename.clone(),
        }
    }

    pub fn apply(&self, target: &mut impl HeaderEdit) {
        for name in &self.remove {
            target.remove(name);
        }
        for (from, to) in &self.rename {
            target.rename(from, to);
        }
        for (name, value) in &self.set {
            target.set(name, value);
        }
        for (name, value) in &self.add {
            target.add(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let cfg = HeaderRulesConfig {
            set: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("1"))],
            add: vec![(HeaderName::from_static("x-b"), HeaderValue::from_static("2"))],
            remove: vec![HeaderName::from_static("x-c")],
            rename: vec![(HeaderName::from_static("x-d"), HeaderName::from_static("x-e"))],
        };
        let rules = HeaderRules::compile(&cfg);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-a", "0").unwrap();
        req.insert_header("x-b", "1").unwrap();
        req.insert_header("x-c", "gone").unwrap();
        req.append_header("x-d", "d1").unwrap();
        req.append_header("x-d", "d2").unwrap();
        req.insert_header("x-e", "replaced").unwrap();
        rules.apply(&mut req);
        assert_eq!(req.headers.get("x-a").unwrap(), "1");
        assert_eq!(req.headers.get_all("x-b").iter().count(), 2);
        assert!(req.headers.get("x-c").is_none());
        assert!(req.headers.get("x-d").is_none());
        let renamed: Vec<_> = req.headers.get_all("x-e").iter().collect();
        assert_eq!(renamed, ["d1", "d2"]);
    }
}
