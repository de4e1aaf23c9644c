//! A route's `aggregate:` block, as validated values.

use std::time::Duration;

use http::{HeaderName, Method};
use serde_json::Value;

use super::decode::Spanned;
use crate::aggregate::merge::{Arrays, Mode, OnConflict, Placement};
use crate::aggregate::template::{Template, ValueTemplate};
use crate::transform::json::JsonRules;

/// The overall deadline when neither the block nor the route sets one (as KrakenD).
pub const DEFAULT_AGGREGATE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most parts one route may fan out to: each client request costs this many upstream
/// requests.
pub const MAX_PARTS: usize = 16;

#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// The overall deadline; `None`: the route's `timeout`, else two seconds.
    pub timeout: Option<Duration>,
    pub merge: Mode,
    pub on_conflict: OnConflict,
    pub arrays: Arrays,
    /// Whether the answer names failed parts in an `errors` member.
    pub errors_body: bool,
    /// Methods besides GET and HEAD (one part then receives the request body).
    pub allow_methods: Vec<Method>,
    /// The largest request body held for that part.
    pub max_request_body: usize,
    /// In declaration order (the merge order).
    pub parts: Vec<PartConfig>,
}

/// What a failed optional part contributes to the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PartOnError {
    /// Nothing (the `errors` member still names it).
    Omit,
    /// `null` under its key.
    Null,
    /// This value in its place.
    Static(Value),
}

#[derive(Debug, Clone)]
pub struct PartConfig {
    pub name: Spanned<String>,
    pub upstream: Spanned<String>,
    /// The upstream path and query.
    pub path: Template,
    /// A failure fails the whole answer (502/504).
    pub required: bool,
    /// The part's own deadline (the overall one still applies).
    pub timeout: Option<Duration>,
    pub on_error: PartOnError,
    pub placement: Placement,
    /// Parts that must answer first (their fields may be used in templates).
    pub after: Vec<Spanned<String>>,
    /// Headers set on this part's request (values are templates).
    pub set_headers: Vec<(HeaderName, ValueTemplate)>,
    /// Headers removed from this part's request (the gateway's forwarding headers, say).
    pub remove_headers: Vec<HeaderName>,
    /// Response headers copied from this part to the answer.
    pub expose_headers: Vec<HeaderName>,
    /// Client request headers sent to this part.
    pub forward_headers: Vec<HeaderName>,
    /// Whether the client's query is added to the part's (without the names its path sets).
    pub forward_query: bool,
    /// Whether this part receives the request body (routes with `allow_methods`).
    pub body: bool,
    /// Rules applied to this part's document before the merge.
    pub rules: Option<JsonRules>,
    /// The largest part answer read.
    pub max_body: usize,
}
