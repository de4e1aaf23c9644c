//! The values a part's templates are filled from: the authenticated consumer and its claims,
//! the normalized path's segments, the query (after credential stripping), the client's
//! headers, and fields of the documents of parts that already answered.
//!
//! Values are looked up decoded (a path segment `a%2Fb` is the value `a/b`), then
//! [`template`](super::template) encodes them again, so a value is always exactly one segment
//! or one query value. An ambiguous value (a header or parameter given twice differently is
//! not guessed at: the first parameter counts, a repeated header counts as missing).

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::Value;

use super::template::Var;
use crate::auth::Identity;
use crate::percent;
use crate::transform::json::{JsonPath, Step};

pub struct Inputs<'a> {
    pub identity: Option<&'a Identity>,
    /// The canonical request path.
    pub path: &'a str,
    /// The route's path template, whose captures `{path.NAME}` reads.
    pub template: Option<&'a crate::routing::template::PathTemplate>,
    /// The query as it would go upstream (credentials already removed).
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// Headers no template may read: identity headers (a client's copy is a forgery) and
    /// credentials (a template must not carry them to a part that would not get them).
    pub refused_headers: &'a [http::HeaderName],
}

impl<'a> Inputs<'a> {
    /// The value of `var`; `doc(part)` gives the document of a part that already answered.
    pub fn lookup<'s>(&'s self, var: &Var, doc: impl Fn(&str) -> Option<&'s Value>) -> Option<Cow<'s, str>> {
        match var {
            Var::Consumer => self.identity.map(|id| Cow::Borrowed(id.consumer.as_str())),
            Var::Claim(name) => self
                .identity?
                .claims
                .iter()
                .find(|(claim, _)| claim == name)
                .map(|(_, value)| Cow::Borrowed(value.as_str())),
            Var::Path(n) => {
                let segment = self.path.split('/').filter(|s| !s.is_empty()).nth(n - 1)?;
                percent::decode_str(segment).map(Cow::Owned)
            }
            Var::Capture(name) => {
                let segment = self.template?.capture(self.path, name)?;
                percent::decode_str(segment).map(Cow::Owned)
            }
            Var::Query(name) => {
                let query = self.query?;
                query.split('&').find_map(|pair| {
                    let (key, value) = percent::split_pair(pair);
                    if percent::decode_str(key)? == *name {
                        percent::decode_str(value).map(Cow::Owned)
                    } else {
                        None
                    }
                })
            }
            Var::Header(name) if self.refused_headers.iter().any(|h| h == name.as_str()) => None,
            Var::Header(name) => {
                let mut values = self.headers.get_all(name.as_str()).iter();
                match (values.next(), values.next()) {
                    (Some(one), None) => one.to_str().ok().map(Cow::Borrowed),
                    _ => None,
                }
            }
            Var::Part { part, field } => field_text(doc(part)?, field),
        }
    }
}

/// A scalar field as text: strings as they are, numbers and booleans as written.
fn field_text<'d>(doc: &'d Value, field: &JsonPath) -> Option<Cow<'d, str>> {
    let mut at = doc;
    for step in field.steps() {
        match step {
            Step::Key(key) => at = at.get(key)?,
            Step::Each => return None,
        }
    }
    match at {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_come_decoded_and_unambiguous() {
        let mut headers = HeaderMap::new();
        headers.insert("x-one", "a".parse().unwrap());
        headers.append("x-two", "a".parse().unwrap());
        headers.append("x-two", "b".parse().unwrap());
        let inputs = Inputs {
            identity: None,
            path: "/profile/a%2Fb/x",
            template: None,
            query: Some("limit=5&lim%69t=6&x=%2e%2e"),
            headers: &headers,
            refused_headers: &[http::header::AUTHORIZATION],
        };
        let none = |_: &str| None;
        let get = |var: Var| inputs.lookup(&var, none).map(|c| c.into_owned());
        assert_eq!(get(Var::Path(2)).as_deref(), Some("a/b"));
        assert_eq!(get(Var::Path(4)), None);
        assert_eq!(get(Var::Query("limit".into())).as_deref(), Some("5"));
        assert_eq!(get(Var::Query("x".into())).as_deref(), Some(".."));
        assert_eq!(get(Var::Header("x-one".into())).as_deref(), Some("a"));
        assert_eq!(
            get(Var::Header("x-two".into())),
            None,
            "a repeated header is ambiguous"
        );
        assert_eq!(
            get(Var::Header("authorization".into())),
            None,
            "credentials are never read"
        );
        assert_eq!(get(Var::Consumer), None);
        let doc = json!({"id": 7, "addr": {"city": "Oslo"}, "tags": ["a"], "ok": true});
        let docs = |part: &str| (part == "user").then_some(&doc);
        let field = |f: &str| Var::Part {
            part: "user".into(),
            field: JsonPath::parse(f).unwrap(),
        };
        let get = |var: Var| inputs.lookup(&var, docs).map(|c| c.into_owned());
        assert_eq!(get(field("id")).as_deref(), Some("7"));
        assert_eq!(get(field("addr.city")).as_deref(), Some("Oslo"));
        assert_eq!(get(field("ok")).as_deref(), Some("true"));
        assert_eq!(get(field("tags")), None, "only scalars fill a template");
        assert_eq!(get(field("nope")), None);
    }
}
