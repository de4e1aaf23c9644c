//! Per-route header rules: remove, then rename, then set (replace), then add (append).
//!
//! Names and values were validated when the configuration was compiled, so applying a rule
//! cannot fail on the request path.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::HeaderRulesConfig;

#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
}

/// The header operations Pingora's request and response headers both offer.
pub trait HeaderEdit {
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: &HeaderName, value: &HeaderValue);
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);
    fn values(&self, name: &HeaderName) -> Vec<HeaderValue>;

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
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
                // Infallible: the name and value are already typed and valid.
                let _ = self.insert_header(name.clone(), value.clone());
            }
            fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
                let _ = self.append_header(name.clone(), value.clone());
            }
            fn values(&self, name: &HeaderName) -> Vec<HeaderValue> {
                self.headers.get_all(name).iter().cloned().collect()
            }
        }
    };
}
header_edit!(RequestHeader);
header_edit!(ResponseHeader);

impl HeaderRules {
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
