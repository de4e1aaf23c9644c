//! `portcullis demo-upstreams`: small HTTP services on the ports the example configuration
//! expects, so a newcomer can watch the gateway route, balance and rewrite, and a gRPC service
//! (`demo_grpc`) for its transcoded route. It runs as its own
//! process (started by `scripts/run.sh`) and is not part of the gateway's request path.

use std::process::ExitCode;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

pub const DEFAULT_PORTS: [u16; 4] = [9001, 9002, 9003, 9004];

/// One demo service: answers `/health` and echoes what it received as JSON.
struct DemoService {
    port: u16,
}

#[async_trait]
impl ServeHttp for DemoService {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = String::from_utf8_lossy(req.raw_path()).into_owned();
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let body = if path == "/health" {
            "ok\n".to_string()
        } else {
            format!(
                "{{\"service\":\"demo-{port}\",\"method\":\"{method}\",\"path\":{path:?},\"x_forwarded_for\":{xff:?},\"x_request_id\":{rid:?},\"x_gateway\":{gw:?}}}\n",
                port = self.port,
                method = req.method,
                xff = header("x-forwarded-for"),
                rid = header("x-request-id"),
                gw = header("x-gateway"),
            )
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(
                "content-type",
                if path == "/health" {
                    "text/plain"
                } else {
                    "application/json"
                },
            )
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

pub fn run(ports: &[u16]) -> ExitCode {
    let conf = ServerConf {
        threads: 1,
        pid_file: std::env::temp_dir()
            .join("portcullis-demo.pid")
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join("portcullis-demo.sock")
            .display()
            .to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    for port in ports {
        let mut service = Service::new(format!("demo {port}"), DemoService { port: *port });
        service.add_tcp(&format!("127.0.0.1:{port}"));
        server.add_service(service);
    }
    crate::demo_grpc::spawn_demo(crate::demo_grpc::DEMO_PORT);
    println!(
        "portcullis demo upstreams listening on 127.0.0.1:{} (HTTP), 127.0.0.1:{} (gRPC, h2c)",
        join(ports),
        crate::demo_grpc::DEMO_PORT
    );
    server.run_forever()
}

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}
