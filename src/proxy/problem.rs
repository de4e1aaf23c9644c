//! Gateway-generated error responses as RFC 9457 `application/problem+json`.
//!
//! Bodies never echo client input or reveal upstream addresses; the request id lets an
//! operator find the details in the log.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;

/// One gateway-generated error.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub detail: &'static str,
    /// Extra response headers such as `Allow`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Close the client connection afterwards (the request's framing can't be trusted).
    pub close: bool,
    /// The problem `type` (RFC 9457); `about:blank` unless a registered type applies.
    pub type_uri: &'static str,
    /// Extension members, as a JSON fragment (`"name":value,...`).
    pub extension: Option<String>,
    /// An answer that is not an error and has no body (a CORS preflight's 204, an HTTPS
    /// redirect's 308): the same path to the client, without the problem document.
    pub bodyless: bool,
}

impl Problem {
    /// 404: the request matches no route (or its route is gone from under it).
    pub fn no_route() -> Problem {
        Problem::new(404, "no route matches this request")
    }

    pub fn new(status: u16, detail: &'static str) -> Problem {
        Problem {
            status,
            detail,
            headers: Vec::new(),
            close: false,
            type_uri: "about:blank",
            extension: None,
            bodyless: false,
        }
    }

    /// A bodyless answer with `status` (see [`Problem::bodyless`]).
    pub fn answer(status: u16, detail: &'static str) -> Problem {
        Problem {
            bodyless: true,
            ..Problem::new(status, detail)
        }
    }

    /// 401 with an RFC 6750 challenge. `why` is a fixed text: never the credential itself.
    pub fn unauthenticated(why: &'static str) -> Problem {
        Problem::new(401, why).with_header(
            http::header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{why}\""),
        )
    }

    /// 403 for an authenticated client that lacks what the route requires.
    pub fn forbidden(scopes: &str) -> Problem {
        let scope = if scopes.is_empty() {
            String::new()
        } else {
            format!(", scope=\"{scopes}\"")
        };
        Problem::new(403, "the credential does not grant access to this route").with_header(
            http::header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"portcullis\", error=\"insufficient_scope\"{scope}"),
        )
    }

    pub fn closing(mut self) -> Problem {
        self.close = true;
        self
    }

    /// Add a header; a value that is not a valid header value is left out (values are
    /// computed by the gateway, never copied from the request).
    pub fn with_header(mut self, name: HeaderName, value: String) -> Problem {
        if let Ok(value) = HeaderValue::try_from(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub fn with_headers(mut self, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Problem {
        self.headers.extend(headers);
        self
    }

    /// Extension members, as a JSON fragment (`"name":value,...`) built by the gateway.
    pub fn with_extension(mut self, extension: String) -> Problem {
        self.extension = Some(extension);
        self
    }

    pub fn body(&self, request_id: &str) -> String {
        let title = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let extension = self
            .extension
            .as_deref()
            .map(|e| format!(",{e}"))
            .unwrap_or_default();
        format!(
            r#"{{"type":"{}","title":"{}","status":{},"detail":"{}","request_id":"{}"{}}}"#,
            json_escape(self.type_uri),
            json_escape(title),
            self.status,
            json_escape(self.detail),
            json_escape(request_id),
            extension
        )
    }

    /// 429 for an exhausted rate limit (RFC 9457 registered type `quota-exceeded`).
    /// 413 for a request body over `max_body`; the connection closes (the rest of the body
    /// is not read).
    pub fn body_too_large() -> Problem {
        Problem::new(413, "the request body is larger than this route accepts").closing()
    }

    pub fn quota_exceeded(retry_after: u64, violated_policies: String) -> Problem {
        let mut p = Problem::new(429, "rate limit exceeded")
            .with_header(http::header::RETRY_AFTER, retry_after.to_string());
        p.type_uri = "https://iana.org/assignments/http-problem-types#quota-exceeded";
        p.extension = Some(violated_policies);
        p
    }

    /// Write the whole response to the client, decorated like every response (request id,
    /// rate-limit and version headers, the route's response header rules).
    pub async fn send(&self, session: &mut Session, ctx: &RequestCtx) -> Result<()> {
        if !self.bodyless && super::grpc::is_grpc(session.req_header()) {
            return self.send_grpc(session, ctx).await;
        }
        let body = if self.bodyless {
            Bytes::new()
        } else {
            Bytes::from(self.body(ctx.request_id.as_str()))
        };
        let mut resp = ResponseHeader::build_no_case(self.status, Some(6))?;
        super::edges::decorate(ctx, &mut resp)?;
        // The gateway's own framing and caching, after the rules: no rule can change them.
        if !self.bodyless {
            resp.insert_header("content-type", "application/problem+json")?;
            resp.insert_header("cache-control", "no-store")?;
        }
        // A 204 has no body and no length (RFC 9110 §8.6).
        if self.status != 204 {
            resp.insert_header("content-length", body.len().to_string())?;
        }
        for (name, value) in &self.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        if self.close {
            session.set_keepalive(None);
            resp.insert_header("connection", "close")?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), head_only).await?;
        if !head_only && !body.is_empty() {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

impl Problem {
    /// A refusal in gRPC's terms: HTTP 200, no body, `grpc-status` and `grpc-message` in the
    /// headers (a "Trailers-Only" response), the gateway's headers kept.
    async fn send_grpc(&self, session: &mut Session, ctx: &RequestCtx) -> Result<()> {
        let mut resp = ResponseHeader::build_no_case(200, Some(6))?;
        super::edges::decorate(ctx, &mut resp)?;
        // gRPC-Web clients read the answer in their own content type.
        let content_type = match session.req_header().headers.get(http::header::CONTENT_TYPE) {
            Some(v) if v.as_bytes().starts_with(b"application/grpc-web") => v.clone(),
            _ => http::HeaderValue::from_static("application/grpc"),
        };
        resp.insert_header("content-type", content_type)?;
        resp.insert_header("grpc-status", super::grpc::status_for(self.status).to_string())?;
        // Percent-encoded, as the gRPC protocol wants `grpc-message`.
        let mut message = String::new();
        crate::percent::encode_component_into(&mut message, self.detail);
        resp.insert_header("grpc-message", message)?;
        for (name, value) in &self.headers {
            resp.append_header(name.clone(), value.clone())?;
        }
        if self.close {
            session.set_keepalive(None);
        }
        // HTTP/2 (every real gRPC client): one HEADERS frame that ends the stream. Pingora's
        // proxy session would end it with an empty DATA frame instead, which gRPC clients
        // read as a broken stream rather than the status.
        match session.as_downstream_mut() {
            pingora::protocols::http::ServerSession::H2(h2) => h2.write_response_header(Box::new(resp), true),
            _ => session.write_response_header(Box::new(resp), true).await,
        }
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_problem_json() {
        let p = Problem::new(404, "no route matches this request");
        assert_eq!(
            p.body("abc"),
            r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no route matches this request","request_id":"abc"}"#
        );
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
