//! The admin listener: `/metrics`, `/healthz` (the process is alive), `/readyz` (the
//! configuration is loaded and every pool finished its first health-check round) and
//! `POST /reload` (live reload). Bind it to loopback or a management network: it is not
//! behind the gateway's routes or auth.
//!
//! Browsers can reach a loopback listener too, so two browser attacks are refused:
//! - **DNS rebinding** (a page on `evil.example` whose name now resolves to 127.0.0.1 reads
//!   `/metrics`): the `Host` must be a loopback name or address, the listener's own address,
//!   or a name listed in `server.admin_hosts`. A rebinding page always sends its own name.
//! - **Cross-site POST** (a page posts a form to `/reload`): a `POST` that carries `Origin` or
//!   `Sec-Fetch-Site` (every browser sends one of them) is refused; the CLI sends neither.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::metrics;
use crate::control::{not_applied_message, CONFIG_HEADER, NOT_APPLIED_HEADER};
use crate::front::header_deadline;
use crate::routing::host::canonical_host;

/// Returns `Err(reason)` while the gateway is not ready to take traffic.
pub type ReadinessProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What a reload did, for the admin answer.
pub enum ReloadOutcome {
    /// Swapped; the summary, and the process-level settings that wait for an upgrade.
    Done {
        summary: String,
        not_applied: Vec<&'static str>,
    },
    /// The file has problems (every one, one per line); nothing changed.
    Invalid(String),
    /// The request named another file than the one this process runs on.
    WrongFile(String),
}

/// Reloads the configuration; given the file the caller means, if it said. Blocking.
pub type ReloadHook = Arc<dyn Fn(Option<String>) -> ReloadOutcome + Send + Sync>;

/// The read-only views of the running configuration (see `admin_views`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Routes,
    Upstreams,
    Config,
}

/// Renders a view as JSON.
pub type Views = Arc<dyn Fn(View) -> String + Send + Sync>;

/// Which stored answers `POST /cache/purge` removes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purge {
    /// Every answer of this route…
    pub route: Option<String>,
    /// …for this path (any host, query, consumer and variant).
    pub path: Option<String>,
    /// Or every answer whose printable key (`route:host/path?query`) starts with this.
    pub prefix: Option<String>,
}

impl Purge {
    /// From `?route=…&path=…` or `?prefix=…`.
    pub fn from_query(query: Option<&str>) -> Result<Purge, &'static str> {
        let mut purge = Purge::default();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::percent::decode_str(&value.replace('+', " "))
                .ok_or("a query value is not valid percent-encoded UTF-8")?;
            let slot = match name {
                "route" => &mut purge.route,
                "path" => &mut purge.path,
                "prefix" => &mut purge.prefix,
                _ => return Err("unknown parameter; use route (and path) or prefix"),
            };
            if slot.replace(value).is_some() {
                return Err("a parameter is given twice");
            }
        }
        match (&purge.route, &purge.path, &purge.prefix) {
            (Some(_), _, None) | (None, None, Some(_)) => Ok(purge),
            _ => Err("give route (and optionally path), or prefix"),
        }
    }
}

/// Removes the stored answers a purge selects; how many.
pub type PurgeHook = Arc<dyn Fn(&Purge) -> usize + Send + Sync>;

pub struct AdminApp {
    readiness: ReadinessProbe,
    reload: ReloadHook,
    views: Views,
    /// Extra `Host` names accepted besides loopback and the listener's own address.
    hosts: Vec<String>,
    /// `server.admin.token_env`'s value: every endpoint but `/healthz` and `/readyz` then
    /// needs `Authorization: Bearer <token>`.
    token: Option<String>,
    /// `server.admin.metrics_without_token`: `GET /metrics` needs no token.
    open_metrics: bool,
    purge: Option<PurgeHook>,
}

impl AdminApp {
    pub fn new(
        readiness: ReadinessProbe,
        reload: ReloadHook,
        views: Views,
        hosts: Vec<String>,
        token: Option<String>,
    ) -> AdminApp {
        AdminApp {
            readiness,
            reload,
            views,
            hosts,
            token,
            open_metrics: false,
            purge: None,
        }
    }

    /// Leave `GET /metrics` open when a token guards the rest.
    pub fn with_open_metrics(mut self, open: bool) -> AdminApp {
        self.open_metrics = open;
        self
    }

    /// Serve `POST /cache/purge` with `hook`.
    pub fn with_purge(mut self, hook: PurgeHook) -> AdminApp {
        self.purge = Some(hook);
        self
    }

    /// `POST /cache/purge?route=…[&path=…]` or `?prefix=…`.
    fn purge(&self, session: &ServerSession) -> Response<Vec<u8>> {
        if let Some(refused) = post_only(session, "use POST /cache/purge?route=…[&path=…] or ?prefix=…")
        {
            return refused;
        }
        let Some(hook) = &self.purge else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "no cache\n".into());
        };
        match Purge::from_query(session.req_header().uri.query()) {
            Ok(purge) => {
                let purged = hook(&purge);
                let body = serde_json::json!({ "purged": purged }).to_string() + "\n";
                reply(StatusCode::OK, "application/json", body)
            }
            Err(why) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{why}\n")),
        }
    }

    /// Whether the request carries the admin token (always, when none is configured). The
    /// comparison takes the same time wherever the first difference is.
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        presented.is_some_and(|p| {
            aws_lc_rs::constant_time::verify_slices_are_equal(p.as_bytes(), token.as_bytes()).is_ok()
        })
    }

    /// `POST /reload`: answers after the new snapshot is in place (or with every problem).
    async fn reload(&self, session: &ServerSession) -> Response<Vec<u8>> {
        if let Some(refused) = post_only(session, "use POST /reload") {
            return refused;
        }
        let file = session
            .req_header()
            .headers
            .get(CONFIG_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let hook = Arc::clone(&self.reload);
        match tokio::task::spawn_blocking(move || hook(file)).await {
            Ok(ReloadOutcome::Done { summary, not_applied }) if not_applied.is_empty() => {
                reply(StatusCode::OK, "text/plain", format!("{summary}\n"))
            }
            Ok(ReloadOutcome::Done { summary, not_applied }) => {
                let body = format!("{summary}\n{}\n", not_applied_message(&not_applied));
                let mut r = reply(StatusCode::OK, "text/plain", body);
                if let Ok(v) = http::HeaderValue::from_str(&not_applied.join(", ")) {
                    r.headers_mut().insert(NOT_APPLIED_HEADER, v);
                }
                r
            }
            Ok(ReloadOutcome::Invalid(problems)) => {
                reply(StatusCode::UNPROCESSABLE_ENTITY, "text/plain", problems)
            }
            Ok(ReloadOutcome::WrongFile(why)) => {
                reply(StatusCode::CONFLICT, "text/plain", format!("{why}\n"))
            }
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("reload failed: {e}\n"),
            ),
        }
    }

    /// Why this request is refused before any endpoint runs, if it is.
    fn refusal(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(canonical_host);
        let local = session.server_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        if !host.is_some_and(|h| self.host_allowed(&h, local)) {
            return Some(reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                "this Host is not accepted here; use a loopback address, the listener's address \
                 or a name in server.admin_hosts\n"
                    .into(),
            ));
        }
        let from_browser =
            req.headers.contains_key(http::header::ORIGIN) || req.headers.contains_key("sec-fetch-site");
        if req.method != http::Method::GET && req.method != http::Method::HEAD && from_browser {
            return Some(reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                "requests from web pages may not change the gateway\n".into(),
            ));
        }
        None
    }

    /// `host` is canonical (lower case, no port, IPv6 in brackets).
    fn host_allowed(&self, host: &str, local: Option<IpAddr>) -> bool {
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
        match ip {
            Some(ip) => ip.is_loopback() || local.is_some_and(|l| l.to_canonical() == ip),
            None => host == "localhost" || self.hosts.iter().any(|h| h == host),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

/// 405 with `Allow: POST` (and `usage`) for anything but a `POST`.
fn post_only(session: &ServerSession, usage: &str) -> Option<Response<Vec<u8>>> {
    if session.req_header().method == http::Method::POST {
        return None;
    }
    let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", format!("{usage}\n"));
    r.headers_mut()
        .insert("allow", http::HeaderValue::from_static("POST"));
    Some(r)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        header_deadline::mark_headers_read();
        session.set_keepalive(None);
        if let Some(refused) = self.refusal(session) {
            return refused;
        }
        let path = session.req_header().uri.path().to_string();
        let public = matches!(path.as_str(), "/healthz" | "/readyz")
            || (self.open_metrics
                && path == "/metrics"
                && matches!(
                    session.req_header().method,
                    http::Method::GET | http::Method::HEAD
                ));
        if !public && !self.authorized(session) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "this endpoint needs Authorization: Bearer <the token in server.admin.token_env>\n".into(),
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
            );
            return r;
        }
        let view = |v: View| reply(StatusCode::OK, "application/json", (self.views)(v));
        let get = matches!(
            session.req_header().method,
            http::Method::GET | http::Method::HEAD
        );
        match path.as_str() {
            "/routes" if get => view(View::Routes),
            "/upstreams" if get => view(View::Upstreams),
            "/config" if get => view(View::Config),
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::get().render(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/reload" => self.reload(session).await,
            "/cache/purge" => self.purge(session),
            "/readyz" => match (self.readiness)() {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n".into()),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n"),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found; try /metrics, /healthz, /readyz, /routes, /upstreams, /config, POST /reload, POST /cache/purge\n"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_a_rebinding_page_cannot_use() {
        let app = AdminApp::new(
            Arc::new(|| Ok(())),
            Arc::new(|_| ReloadOutcome::Invalid(String::new())),
            Arc::new(|_| String::new()),
            vec!["gw-1.mgmt.internal".into()],
            None,
        );
        let local: Option<IpAddr> = Some("10.0.0.5".parse().unwrap());
        for ok in [
            "localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "10.0.0.5",
            "gw-1.mgmt.internal",
        ] {
            assert!(app.host_allowed(ok, local), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.6",
            "[::ffff:10.0.0.7]",
            "gw-1",
        ] {
            assert!(!app.host_allowed(bad, local), "{bad}");
        }
        assert!(app.host_allowed("[::ffff:127.0.0.1]", local));
    }
}
