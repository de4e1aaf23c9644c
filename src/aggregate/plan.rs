//! An aggregated route as the request path runs it: the block's validated settings with each
//! part's pool and `after` parts resolved to indexes, and the part metrics resolved once.

use std::time::Duration;

use http::Method;

use super::merge::Policy;
use crate::config::{AggregateConfig, PartConfig, DEFAULT_AGGREGATE_TIMEOUT};
use crate::observe::metrics;

#[derive(Debug)]
pub struct Aggregate {
    /// The overall deadline, from the request's start.
    pub timeout: Duration,
    pub policy: Policy,
    pub errors_body: bool,
    pub allow_methods: Vec<Method>,
    pub max_request_body: usize,
    /// In declaration order.
    pub parts: Vec<Part>,
    /// The client headers the parts read (`{header.NAME}`, `forward_headers`): the answer
    /// varies with them, and says so.
    pub vary: Option<http::HeaderValue>,
}

#[derive(Debug)]
pub struct Part {
    pub cfg: PartConfig,
    /// Index of the part's pool in the snapshot.
    pub pool: usize,
    /// Indexes of the parts that must answer first.
    pub after: Vec<usize>,
    /// The query names the part's path sets (a forwarded client query cannot repeat them).
    pub query_names: Vec<String>,
    pub duration: prometheus::Histogram,
}

impl Part {
    pub fn name(&self) -> &str {
        &self.cfg.name.value
    }
}

impl Aggregate {
    /// `pool` resolves an upstream name; `route_timeout` is the default overall deadline.
    pub fn compile(
        cfg: &AggregateConfig,
        route: &str,
        route_timeout: Option<Duration>,
        pool: impl Fn(&str) -> Result<usize, String>,
    ) -> Result<Aggregate, String> {
        let index_of = |name: &str| {
            cfg.parts
                .iter()
                .position(|p| p.name.value == name)
                .ok_or_else(|| format!("route `{route}`: no part is named `{name}`"))
        };
        let m = metrics::get();
        let parts = cfg
            .parts
            .iter()
            .map(|p| {
                Ok(Part {
                    cfg: p.clone(),
                    pool: pool(&p.upstream.value)?,
                    after: p
                        .after
                        .iter()
                        .map(|a| index_of(&a.value))
                        .collect::<Result<_, _>>()?,
                    query_names: p.path.query_names(),
                    duration: m
                        .aggregate_part_duration
                        .with_label_values(&[route, &p.name.value]),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut read: Vec<&str> = Vec::new();
        for p in &cfg.parts {
            let vars = p
                .path
                .vars()
                .chain(p.set_headers.iter().flat_map(|(_, t)| t.vars()));
            let templated = vars.filter_map(|v| match v {
                crate::aggregate::template::Var::Header(h) => Some(h.as_str()),
                _ => None,
            });
            for name in templated.chain(p.forward_headers.iter().map(http::HeaderName::as_str)) {
                if !read.contains(&name) {
                    read.push(name);
                }
            }
        }
        let vary = (!read.is_empty())
            .then(|| http::HeaderValue::try_from(read.join(", ")).ok())
            .flatten();
        Ok(Aggregate {
            vary,
            timeout: cfg.timeout.or(route_timeout).unwrap_or(DEFAULT_AGGREGATE_TIMEOUT),
            policy: Policy {
                mode: cfg.merge,
                on_conflict: cfg.on_conflict,
                arrays: cfg.arrays,
            },
            errors_body: cfg.errors_body,
            allow_methods: cfg.allow_methods.clone(),
            max_request_body: cfg.max_request_body,
            parts,
        })
    }

    /// Whether the route serves `method` (GET and HEAD always).
    pub fn serves(&self, method: &Method) -> bool {
        *method == Method::GET || *method == Method::HEAD || self.allow_methods.contains(method)
    }

    /// The `Allow` header value.
    pub fn allow_header(&self) -> String {
        let mut names = vec!["GET", "HEAD"];
        names.extend(self.allow_methods.iter().map(Method::as_str));
        names.join(", ")
    }
}
