//! Decoding `tracing:`: where spans go, how many, and under which service name.

use super::decode::{Fields, Spanned};
use super::diag::Problems;
use super::yaml::Node;
use crate::observe::trace::ClientSampling;

/// `tracing:`. Propagation (`traceparent` continued or started, passed to every upstream
/// request) happens with or without it; spans are exported only with `otlp_endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/HTTP traces URL (`http://collector:4318/v1/traces`), JSON encoding.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces sampled (a continued trace follows its parent's flag).
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Finished spans waiting for the exporter; more are dropped (counted).
    pub max_queued_spans: usize,
    /// Whose `traceparent` sampled flag is followed.
    pub client_sampling: ClientSampling,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "portcullis".into(),
            max_queued_spans: 8192,
            client_sampling: ClientSampling::Always,
        }
    }
}

const FIELDS: &[&str] = &[
    "otlp_endpoint",
    "sample_ratio",
    "service_name",
    "max_queued_spans",
    "client_sampling",
];

pub(super) fn decode_tracing(node: Option<&Node>, p: &mut Problems) -> Option<TracingConfig> {
    let Some(node) = node.filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(TracingConfig::default());
    };
    let f = Fields::new(node, "tracing", FIELDS, p)?;
    let d = TracingConfig::default();
    let endpoint: Option<Spanned<String>> = f.opt("otlp_endpoint", p);
    let endpoint_ok = endpoint.as_ref().is_none_or(|e| {
        let problem = endpoint_problem(&e.value);
        if let Some(why) = &problem {
            p.add(e.pos, &f.path_of("otlp_endpoint"), why.clone());
        }
        problem.is_none()
    });
    let ratio = f.fraction("sample_ratio", d.sample_ratio, "0.1: one new trace in ten", p);
    let service_name: Spanned<String> = f.opt("service_name", p).unwrap_or(Spanned {
        value: d.service_name.clone(),
        pos: f.pos(),
    });
    let name_ok = !service_name.value.trim().is_empty() && service_name.value.len() <= 255;
    if !name_ok {
        p.add(
            service_name.pos,
            &f.path_of("service_name"),
            "must be 1 to 255 characters",
        );
    }
    let client_sampling = f.choice(
        "client_sampling",
        &[
            ("always", ClientSampling::Always),
            ("trusted_proxies", ClientSampling::TrustedProxies),
            ("never", ClientSampling::Never),
        ],
        d.client_sampling,
        p,
    );
    (endpoint_ok && name_ok).then_some(())?;
    Some(TracingConfig {
        otlp_endpoint: endpoint.map(|e| e.value),
        sample_ratio: ratio?,
        service_name: service_name.value,
        max_queued_spans: f.ranged("max_queued_spans", 1..=1_000_000, d.max_queued_spans, p),
        client_sampling: client_sampling?,
    })
}

/// Why `url` cannot be an OTLP/HTTP endpoint, if it cannot.
fn endpoint_problem(url: &str) -> Option<String> {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some(format!(
            "`{url}` is not a URL; expected http://HOST:4318/v1/traces"
        ));
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Some(format!(
            "`{}` must be an http:// or https:// URL with a host, such as http://127.0.0.1:4318/v1/traces",
            crate::redact::url(url)
        ));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Some("credentials in the URL are not sent; remove the user-info part".into());
    }
    None
}
