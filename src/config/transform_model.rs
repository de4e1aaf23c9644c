//! The route's `transform:` block, as validated values.

use http::Method;

use crate::transform::json::JsonRules;

/// Default `max_body`: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Largest `max_body` accepted: a transformed body is held in memory (several times its size
/// once decoded), per request.
pub const MAX_MAX_BODY: usize = 16 * 1024 * 1024;

/// What a failed response transformation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// 502 problem+json, none of the upstream body.
    #[default]
    Reject,
    /// The original response, untouched (logged and counted).
    Pass,
}

/// A media-type pattern: `application/json`, or `application/*+json` (a structured suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaPattern {
    Exact(String),
    /// `type/*+suffix`: the type and the suffix (lower case).
    Suffix {
        top: String,
        suffix: String,
    },
}

impl MediaPattern {
    /// Whether a `Content-Type` value's media type (parameters ignored, any case) matches.
    pub fn matches(&self, content_type: &str) -> bool {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match self {
            MediaPattern::Exact(m) => media.eq_ignore_ascii_case(m),
            // Compared in place: this runs for every response of a transform route.
            MediaPattern::Suffix { top, suffix } => media.split_once('/').is_some_and(|(t, sub)| {
                let sub = sub.as_bytes();
                let Some(plus) = sub.len().checked_sub(suffix.len() + 1) else {
                    return false;
                };
                t.eq_ignore_ascii_case(top)
                    && plus > 0
                    && sub[plus] == b'+'
                    && sub[plus + 1..].eq_ignore_ascii_case(suffix.as_bytes())
            }),
        }
    }
}

/// The default media types: `application/json` and `application/*+json`.
pub fn default_content_types() -> Vec<MediaPattern> {
    vec![
        MediaPattern::Exact("application/json".into()),
        MediaPattern::Suffix {
            top: "application".into(),
            suffix: "json".into(),
        },
    ]
}

#[derive(Debug, Clone)]
pub struct ResponseTransformConfig {
    pub rules: JsonRules,
    /// Statuses transformed; empty means any 2xx.
    pub statuses: Vec<u16>,
    pub content_types: Vec<MediaPattern>,
    pub max_body: usize,
    pub on_error: OnError,
    /// A listed status in a media type outside `content_types`: `Pass` sends it as it is,
    /// `Reject` answers 502.
    pub other_content_types: OnError,
    /// The `Accept` a filtering route sends upstream (its exact media types), built once.
    pub accept: Option<http::HeaderValue>,
}

/// Query parameter rules for the upstream request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRules {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    pub rename: Vec<(String, String)>,
}

impl QueryRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty() && self.rename.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct RequestTransformConfig {
    /// Body rules; `None` when the block only rewrites the query or the method.
    pub rules: Option<JsonRules>,
    pub content_types: Vec<MediaPattern>,
    pub max_body: usize,
    pub query: QueryRules,
    pub method: Option<Method>,
}

#[derive(Debug, Clone, Default)]
pub struct TransformConfig {
    pub response: Option<ResponseTransformConfig>,
    pub request: Option<RequestTransformConfig>,
}

impl TransformConfig {
    /// The method the upstream request is sent with instead of the client's.
    pub fn request_method(&self) -> Option<&Method> {
        self.request.as_ref()?.method.as_ref()
    }

    pub fn query_rules(&self) -> Option<&QueryRules> {
        self.request.as_ref().map(|r| &r.query).filter(|q| !q.is_empty())
    }

    /// Whether the gateway must hold whole bodies: it reads the request body before sending
    /// it (request rules) or the response body before answering (response rules).
    pub fn reads_bodies(&self) -> bool {
        self.response.is_some() || self.request.as_ref().is_some_and(|r| r.rules.is_some())
    }
}
