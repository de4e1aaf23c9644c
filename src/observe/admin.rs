//! The admin listener: `/metrics`, `/healthz` (the process is alive), `/readyz` (the
//! configuration is loaded and every pool finished its first health-check round) and
//! `POST /reload` (live reload). Bind it to loopback or a management network: it is not
//! behind the gateway's routes or auth.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::metrics;

/// Returns `Err(reason)` while the gateway is not ready to take traffic.
pub type ReadinessProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Reloads the configuration; `Ok(summary)` or `Err(every problem)`. Blocking.
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

pub struct AdminApp {
    readiness: ReadinessProbe,
    reload: ReloadHook,
}

impl AdminApp {
    pub fn new(readiness: ReadinessProbe, reload: ReloadHook) -> AdminApp {
        AdminApp { readiness, reload }
    }

    /// `POST /reload`: answers after the new snapshot is in place (or with every problem).
    async fn reload(&self, session: &ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use POST /reload\n".into(),
            );
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static("POST"));
            return r;
        }
        let hook = Arc::clone(&self.reload);
        match tokio::task::spawn_blocking(move || hook()).await {
            Ok(Ok(summary)) => reply(StatusCode::OK, "text/plain", format!("{summary}\n")),
            Ok(Err(problems)) => reply(StatusCode::UNPROCESSABLE_ENTITY, "text/plain", problems),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("reload failed: {e}\n"),
            ),
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        session.set_keepalive(None);
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::get().render(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/reload" => self.reload(session).await,
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
                "not found; try /metrics, /healthz, /readyz, POST /reload\n".into(),
            ),
        }
    }
}
