//! Bodies on transform routes: which responses are transformed, decoding what the upstream
//! compressed (bounded, so a compression bomb stops at `max_body`), and the headers a changed
//! body needs.

use std::borrow::Cow;
use std::io::Read;

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, TRANSFER_ENCODING};
use http::{HeaderName, Method};
use pingora::http::ResponseHeader;

use super::doc::WriteError;
use super::json::{Failure, JsonRules};
use crate::config::{MediaPattern, OnError, ResponseTransformConfig};

/// Headers that describe the original bytes, wrong for a transformed body.
const ABOUT_ORIGINAL_BYTES: [HeaderName; 6] = [
    HeaderName::from_static("content-md5"),
    HeaderName::from_static("digest"),
    HeaderName::from_static("content-digest"),
    HeaderName::from_static("repr-digest"),
    HeaderName::from_static("accept-ranges"),
    HeaderName::from_static("content-range"),
];

/// Why a body was not transformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// There is no body: nothing to transform, nothing to hide; it passes as it is.
    Empty,
    TooLarge,
    /// A content coding the gateway cannot decode (or a broken stream of one it can).
    Undecodable(String),
    InvalidJson(String),
    TargetMissing,
    /// The rules' copies would make the document larger than `json::copy_limit` allows.
    Overgrown,
}

impl BodyError {
    /// A short reason for logs (never the body itself).
    pub fn reason(&self) -> String {
        match self {
            BodyError::Empty => "empty body".into(),
            BodyError::TooLarge => "body larger than max_body".into(),
            BodyError::Undecodable(e) => format!("cannot decode the body: {e}"),
            BodyError::InvalidJson(e) => format!("invalid JSON: {e}"),
            BodyError::TargetMissing => "the document has no value at `target`".into(),
            BodyError::Overgrown => "the transformed document would be too large".into(),
        }
    }
}

/// What to do with one upstream response on a transform route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Transform,
    /// Not for these rules: sent as it is.
    Pass,
    /// Must not reach the client as it is, and cannot be transformed.
    Refuse(String),
}

/// Decide from the head as the upstream sent it: HEAD, 204, 206 and 304 and statuses the
/// route does not list (any 2xx by default) pass; so do other media types, unless
/// `other_content_types: reject`. Every `Content-Type` counts (one that matches is enough to
/// transform: a client may read any of them), and a missing one is transformed when the rules
/// filter — an upstream that forgot the header still sends the fields the filter removes.
pub fn decide(cfg: &ResponseTransformConfig, method: &Method, resp: &ResponseHeader) -> Decision {
    let status = resp.status.as_u16();
    if *method == Method::HEAD || matches!(status, 204 | 206 | 304) {
        return Decision::Pass;
    }
    let listed = if cfg.statuses.is_empty() {
        (200..300).contains(&status)
    } else {
        cfg.statuses.contains(&status)
    };
    if !listed {
        return Decision::Pass;
    }
    let mut types = resp.headers.get_all(CONTENT_TYPE).iter().peekable();
    if types.peek().is_none() {
        return if cfg.rules.filters() {
            Decision::Transform
        } else {
            Decision::Pass
        };
    }
    if types.any(|t| media_matches(&cfg.content_types, Some(t))) {
        return Decision::Transform;
    }
    match cfg.other_content_types {
        OnError::Pass => Decision::Pass,
        OnError::Reject => Decision::Refuse("a media type the rules do not read".into()),
    }
}

/// The `Accept` a filtered route's upstream request carries: its exact media types (a
/// `type/*+suffix` pattern has no `Accept` spelling). `None` when there are none.
pub fn accept_value(patterns: &[MediaPattern]) -> Option<String> {
    let exact: Vec<&str> = patterns
        .iter()
        .filter_map(|p| match p {
            MediaPattern::Exact(m) => Some(m.as_str()),
            MediaPattern::Suffix { .. } => None,
        })
        .collect();
    (!exact.is_empty()).then(|| exact.join(", "))
}

/// Leave one `Content-Type` on a transformed response: the first the rules read (or, for a
/// response without one, `application/json`).
pub fn one_content_type(resp: &mut ResponseHeader, patterns: &[MediaPattern]) -> pingora::Result<()> {
    let chosen = resp
        .headers
        .get_all(CONTENT_TYPE)
        .iter()
        .find(|t| media_matches(patterns, Some(t)))
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("application/json"));
    resp.remove_header(&CONTENT_TYPE);
    resp.insert_header(CONTENT_TYPE, chosen)?;
    Ok(())
}

pub fn media_matches(patterns: &[MediaPattern], content_type: Option<&http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    patterns.iter().any(|p| p.matches(value))
}

/// A declared length already over the limit: the body need not be read to refuse it.
pub fn declared_too_large(resp: &ResponseHeader, max: usize) -> bool {
    resp.headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

/// The upstream's content coding, as the gateway can or cannot undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Brotli,
    Other(String),
}

pub fn coding(resp: &ResponseHeader) -> Coding {
    let values: Vec<&[u8]> = resp
        .headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"identity"))
        .collect();
    match values.as_slice() {
        [] => Coding::Identity,
        [one] if one.eq_ignore_ascii_case(b"gzip") || one.eq_ignore_ascii_case(b"x-gzip") => Coding::Gzip,
        [one] if one.eq_ignore_ascii_case(b"br") => Coding::Brotli,
        more => Coding::Other(
            more.iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// Undo the content coding; the decoded body may not exceed `max` either.
pub fn decode<'a>(coding: &Coding, raw: &'a [u8], max: usize) -> Result<Cow<'a, [u8]>, BodyError> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => return Ok(Cow::Borrowed(raw)),
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Coding::Brotli => Box::new(brotli::Decompressor::new(raw, 8192)),
        Coding::Other(name) => return Err(BodyError::Undecodable(format!("content coding `{name}`"))),
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Undecodable(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLarge);
    }
    Ok(Cow::Owned(out))
}

/// Parse as far as the rules look (within a memory budget, see `guided`), apply the rules,
/// write the result: unopened values are copied as they came.
pub fn transform_json(rules: &JsonRules, body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let doc = super::guided::parse(body, super::bounded::budget_for(body.len()), rules.need())
        .map_err(BodyError::InvalidJson)?;
    let limit = super::json::copy_limit(body.len());
    let out = rules.apply_doc(doc, limit).map_err(|e| match e {
        Failure::TargetMissing => BodyError::TargetMissing,
        Failure::TooLarge => BodyError::Overgrown,
        Failure::Unreadable(why) => BodyError::InvalidJson(why),
    })?;
    let mut text = Vec::with_capacity(body.len() + 64);
    out.write(&mut text, limit).map_err(|e| match e {
        WriteError::TooLarge => BodyError::Overgrown,
        WriteError::Json(e) => BodyError::InvalidJson(e.to_string()),
    })?;
    Ok(text)
}

/// Make `resp` describe a new body of `len` bytes: the length recomputed, the coding gone
/// (the body was decoded), a strong `ETag` weakened (the bytes differ; the meaning is the
/// same), and headers about the original bytes (digests, ranges) dropped.
pub fn describe_new_body(resp: &mut ResponseHeader, len: usize) -> pingora::Result<()> {
    for name in [CONTENT_ENCODING, TRANSFER_ENCODING, CONTENT_LENGTH]
        .iter()
        .chain(ABOUT_ORIGINAL_BYTES.iter())
    {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
    let weakened: Vec<String> = resp
        .headers
        .get_all(ETAG)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|tag| {
            if tag.starts_with("W/") {
                tag.to_string()
            } else {
                format!("W/{tag}")
            }
        })
        .collect();
    if !weakened.is_empty() {
        resp.remove_header(&ETAG);
        for tag in weakened {
            resp.append_header(ETAG, tag)?;
        }
    }
    resp.insert_header(CONTENT_LENGTH, len.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::json::JsonPath;
    use serde_json::{json, Value};
    use std::io::Write;

    /// The rules applied to a document parsed only as far as they look give what they give
    /// applied to the whole parsed document (`tests/fuzz.rs` checks the same on random input).
    #[test]
    fn a_partly_parsed_document_transforms_like_a_whole_one() {
        let path = |p: &str| JsonPath::parse(p).unwrap();
        let doc = json!({
            "id": 7, "a": {"x": [1, {"y": 2}], "k": "v"}, "password": "p",
            "orders": [{"id": 1, "card": "4111", "n": {"deep": true}}, {"id": 2, "card": "5500"}],
            "data": {"items": [{"s": 1, "t": 2}]}
        });
        let cases = [
            // A rename moves an unopened value; a later rule looks inside it at its new place.
            JsonRules {
                rename: vec![(path("a"), path("b")), (path("b"), path("c"))],
                set: vec![(path("c.x.z"), json!(1)), (path("c.k2"), json!(2))],
                deny: vec![path("password")],
                ..Default::default()
            },
            JsonRules {
                rename: vec![(path("a.x"), path("moved")), (path("id"), path("user_id"))],
                deny: vec![path("moved.y"), path("orders[].card")],
                set: vec![(path("orders.n.deep"), json!(false))],
                ..Default::default()
            },
            JsonRules {
                target: Some(path("data")),
                allow: vec![path("items[].s")],
                wrap: Some("w".into()),
                ..Default::default()
            },
            JsonRules {
                allow: vec![path("a"), path("orders.id")],
                rename: vec![(path("a"), path("orders.a"))],
                ..Default::default()
            },
            JsonRules::default(),
        ];
        let text = serde_json::to_vec_pretty(&doc).unwrap();
        for rules in cases {
            let expected = rules.apply(doc.clone()).unwrap();
            let out = transform_json(&rules, &text).unwrap();
            let reread: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(reread, expected, "{rules:?}");
        }
    }

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn codings() {
        assert_eq!(coding(&resp(&[])), Coding::Identity);
        assert_eq!(coding(&resp(&[("content-encoding", "GZIP")])), Coding::Gzip);
        assert_eq!(
            coding(&resp(&[("content-encoding", "identity, br")])),
            Coding::Brotli
        );
        assert!(matches!(
            coding(&resp(&[("content-encoding", "zstd")])),
            Coding::Other(_)
        ));
        assert!(matches!(
            coding(&resp(&[("content-encoding", "gzip, br")])),
            Coding::Other(_)
        ));
        assert!(matches!(
            coding(&resp(&[
                ("content-encoding", "gzip"),
                ("content-encoding", "gzip")
            ])),
            Coding::Other(_)
        ));
    }

    #[test]
    fn decoding_is_bounded() {
        let plain = vec![b'a'; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 1000);
        assert_eq!(
            decode(&Coding::Gzip, &gz, 100_000).unwrap().as_ref(),
            plain.as_slice()
        );
        assert_eq!(decode(&Coding::Gzip, &gz, 99_999), Err(BodyError::TooLarge));
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&plain).unwrap();
        }
        assert_eq!(
            decode(&Coding::Brotli, &br, 100_000).unwrap().as_ref(),
            plain.as_slice()
        );
        assert!(matches!(
            decode(&Coding::Gzip, b"not gzip", 10),
            Err(BodyError::Undecodable(_))
        ));
    }

    #[test]
    fn new_body_headers() {
        let mut r = resp(&[
            ("content-length", "999"),
            ("content-encoding", "gzip"),
            ("etag", "\"abc\""),
            ("etag", "W/\"def\""),
            ("accept-ranges", "bytes"),
            ("digest", "sha-256=x"),
            ("content-md5", "x"),
        ]);
        describe_new_body(&mut r, 12).unwrap();
        assert_eq!(r.headers.get("content-length").unwrap(), "12");
        let tags: Vec<_> = r
            .headers
            .get_all("etag")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(tags, ["W/\"abc\"", "W/\"def\""]);
        for gone in ["content-encoding", "accept-ranges", "digest", "content-md5"] {
            assert!(r.headers.get(gone).is_none(), "{gone}");
        }
    }
}
