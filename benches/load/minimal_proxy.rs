//! The framework's floor for the load benchmark: the smallest useful Pingora proxy, round
//! robin over health-checked targets, nothing else. Portcullis is compared against it to see
//! what its features cost.
//!
//! `minimal_proxy LISTEN THREADS TARGET...`, e.g. `minimal_proxy 127.0.0.1:8300 1 127.0.0.1:8101 127.0.0.1:8102`.
//! `WORK_STEALING=false` in the environment runs Pingora's one-runtime-per-thread mode (the
//! gateway's default) instead of Pingora's default work-stealing runtime.
//! The edge scenarios' floor: `TLS_CERT` and `TLS_KEY` (PEM files) make the listener TLS with
//! Pingora's own settings (its "intermediate" profile, ALPN http/1.1, what scenario S gives
//! Portcullis); `H2C=true` makes Pingora's server take HTTP/2 with prior knowledge (scenario
//! H2) beside HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::{health_check, selection::RoundRobin, LoadBalancer};
use pingora::prelude::{background_service, HttpPeer, Opt, ProxyHttp, Result, Server, Session};
use pingora::server::configuration::ServerConf;

/// The same allocator as the gateway, so the comparison measures features, not malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Minimal(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let target = self
            .0
            .select(b"", 256)
            .ok_or_else(|| pingora::Error::new_str("no healthy target"))?;
        Ok(Box::new(HttpPeer::new(target, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, threads, targets @ ..] = args.as_slice() else {
        eprintln!("usage: minimal_proxy LISTEN THREADS TARGET...");
        std::process::exit(2);
    };
    let Ok(threads) = threads.parse::<usize>() else {
        eprintln!("THREADS must be a number");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        work_stealing: std::env::var("WORK_STEALING").map_or(true, |v| v != "false"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut pool = match LoadBalancer::try_from_iter(targets.iter().map(String::as_str)) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("bad targets: {e}");
            std::process::exit(2);
        }
    };
    pool.set_health_check(health_check::TcpHealthCheck::new());
    pool.health_check_frequency = Some(Duration::from_secs(1));
    let background = background_service("health check", pool);
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Minimal(background.task()));
    if std::env::var("H2C").is_ok_and(|v| v == "true") {
        let Some(app) = proxy.app_logic_mut() else {
            eprintln!("H2C: the proxy service has no application to configure");
            std::process::exit(2);
        };
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    match (std::env::var("TLS_CERT"), std::env::var("TLS_KEY")) {
        (Ok(cert), Ok(key)) => {
            let mut tls = match pingora::listeners::tls::TlsSettings::intermediate(&cert, &key) {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!("TLS_CERT/TLS_KEY: {e}");
                    std::process::exit(2);
                }
            };
            tls.set_alpn(pingora::listeners::ALPN::H1);
            proxy.add_tls_with_settings(listen, None, tls);
        }
        (Err(_), Err(_)) => proxy.add_tcp(listen),
        _ => {
            eprintln!("TLS_CERT and TLS_KEY go together");
            std::process::exit(2);
        }
    }
    server.add_service(proxy);
    server.add_service(background);
    server.run_forever();
}
