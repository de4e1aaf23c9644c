//! Assembling the Pingora server from the validated configuration: the proxy service behind
//! the header deadline, the admin listener, and the health-check supervisor.

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::auth::jwks::JwksRefresher;
use crate::config::Config;
use crate::control;
use crate::control::record::RecordKeeper;
use crate::front::gate::Gate;
use crate::front::Front;
use crate::observe::admin::{AdminApp, ReloadOutcome, View};
use crate::observe::admin_views;
use crate::proxy::Gateway;
use crate::runtime::reload::{HangupListener, Reloader};
use crate::runtime::{Runtime, Snapshot};
use crate::tls;
use crate::upstream::health::HealthSupervisor;

pub struct RunOptions {
    pub daemon: bool,
    pub upgrade: bool,
    /// With `upgrade`: the socket the running process sends its listeners to, when it is not
    /// `server.upgrade_sock` (that setting changed since the running process started).
    pub upgrade_sock: Option<String>,
}

/// Pingora's own settings, taken from the `server:` section so operators keep one file.
fn server_conf(config: &Config, daemon: bool) -> ServerConf {
    let s = &config.server.process;
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        daemon,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        error_log: s.error_log.clone(),
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.as_secs()),
        ..ServerConf::default()
    }
}

/// Bytes each client connection buffers for reading: none (Pingora's default is 64 KiB per
/// connection; the HTTP session reads into a buffer of its own anyway). See `front`.
const READ_BUFFER: usize = 0;

/// Build every service and run until a signal stops the process.
pub fn run(config_path: &str, config: Config, snapshot: Snapshot, opts: RunOptions) -> Result<(), String> {
    let runtime = Arc::new(Runtime::new(snapshot));
    let settings = config.server.process.clone();
    let reloader = Arc::new(Reloader::new(config_path, Arc::clone(&runtime), settings.clone()));
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    // Pingora receives the listeners through the upgrade socket of the configuration the
    // server is built with, and sends them on its next SIGQUIT through `server.configuration`:
    // build with the socket the running process uses, then put the configured one in place.
    let mut receiving = server_conf(&config, opts.daemon);
    if let Some(sock) = opts.upgrade_sock.filter(|_| opts.upgrade) {
        receiving.upgrade_sock = sock;
    }
    let mut server = Server::new_with_opt_and_conf(opt, receiving);
    server.configuration = Arc::new(server_conf(&config, opts.daemon));
    server.bootstrap();

    let store = config.server.process.cache.clone();
    let cache = Arc::new(crate::cache::store::Store::new(
        store.max_memory,
        store.max_object,
    ));
    let mut proxy = HttpProxy::new(
        Gateway::new(Arc::clone(&runtime), Arc::clone(&cache)),
        Arc::clone(&server.configuration),
    );
    proxy.handle_init_modules();
    let mut options = HttpServerOptions::default();
    // Pingora's HTTP/2 server takes plain connections only when this is set; each listener's
    // `Front` decides whether its connections get there.
    options.h2c = config.server.process.listen.iter().any(|l| l.h2c);
    // An HTTP/2 connection with no stream open is closed after the time an HTTP/1.1 one gets
    // to send its next request head (as configured at start: Pingora takes it once).
    options.h2_idle_timeout = Some(config.server.limits.header_read_timeout);
    // `CONNECT` reaches the pipeline, which refuses every one of them with the gateway's own
    // 405 (`request_checks::refuse_connect`); Pingora's refusal names the framework.
    options.allow_connect_method_proxying = true;
    proxy.server_options = Some(options);
    let proxy = Arc::new(proxy);
    // One gate: the connection caps count every proxy listener together.
    let gate = Arc::new(Gate::default());
    for listener in &config.server.process.listen {
        let mut endpoint =
            ListenerConfig::tcp(&listener.addr).l4_buffer(L4BufferSettings::new(READ_BUFFER, 1460));
        if let Some(tls) = &listener.tls {
            let startup = config
                .server
                .certificates
                .iter()
                .find(|c| c.addr == listener.addr)
                .map(|c| Arc::clone(&c.set))
                .ok_or_else(|| format!("listener {}: no certificates", listener.addr))?;
            endpoint = endpoint.tls(tls::acceptor::settings(
                &listener.addr,
                tls,
                Arc::clone(&runtime),
                startup,
            )?);
        }
        let mut service = Service::new(
            format!("portcullis proxy {}", listener.addr),
            Front::proxy(
                Arc::clone(&proxy),
                Arc::clone(&runtime),
                Arc::clone(&gate),
                listener.h2c,
            ),
        );
        service.add_listener(endpoint);
        server.add_service(service);
    }

    if let Some(admin_addr) = &config.server.process.admin {
        let ready_runtime = Arc::clone(&runtime);
        let listening = crate::front::listening::Listening::new(
            config
                .server
                .process
                .listen
                .iter()
                .filter_map(|l| l.addr.parse().ok())
                .collect(),
        );
        let readiness = Arc::new(move || {
            ready_runtime.readiness()?;
            listening.check()
        });
        let admin_reloader = Arc::clone(&reloader);
        let reload = Arc::new(move |file: Option<String>| {
            if let Some(asked) = file.filter(|f| f != admin_reloader.path()) {
                return ReloadOutcome::WrongFile(control::wrong_file(admin_reloader.path(), &asked));
            }
            match admin_reloader.reload() {
                Ok(r) => ReloadOutcome::Done {
                    summary: format!("reloaded: {} routes, {} upstreams", r.routes, r.upstreams),
                    not_applied: r.needs_upgrade,
                },
                Err(problems) => ReloadOutcome::Invalid(problems),
            }
        });
        let views_runtime = Arc::clone(&runtime);
        let views_reloader = Arc::clone(&reloader);
        let views = Arc::new(move |view: View| {
            let snapshot = views_runtime.load();
            let value = match view {
                View::Routes => admin_views::routes(&snapshot),
                View::Upstreams => admin_views::upstreams(&snapshot),
                View::Config => admin_views::config(&snapshot, &views_reloader),
            };
            let mut body = serde_json::to_string_pretty(&value).unwrap_or_default();
            body.push('\n');
            body
        });
        // Read once at start: a changed token needs an upgrade.
        let token = config.server.process.admin_token();
        let purged = Arc::clone(&cache);
        let app = AdminApp::new(
            readiness,
            reload,
            views,
            config.server.process.admin_hosts.clone(),
            token,
        )
        .with_open_metrics(config.server.process.admin_metrics_without_token)
        .with_purge(Arc::new(move |purge| {
            purged.purge(|label| match (&purge.route, &purge.path, &purge.prefix) {
                (_, _, Some(prefix)) => label.printable.starts_with(prefix.as_str()),
                (Some(route), path, None) => {
                    label.route == *route && path.as_ref().is_none_or(|p| label.path == *p)
                }
                (None, _, None) => false,
            })
        }));
        let mut admin = Service::new(
            "portcullis admin".to_string(),
            Front::admin(app, Arc::clone(&runtime)),
        );
        admin.add_tcp(admin_addr);
        server.add_service(admin);
    }

    let pools_runtime = Arc::clone(&runtime);
    let pools = Arc::new(move || pools_runtime.load().pools.clone());
    server.add_service(background_service("health checks", HealthSupervisor::new(pools)));
    server.add_service(background_service(
        "trace export",
        crate::observe::trace_export::TraceExporter::new(Arc::clone(&runtime)),
    ));
    server.add_service(background_service("config reload", HangupListener::new(reloader)));
    server.add_service(background_service(
        "access log reopen",
        crate::observe::access_sink::ReopenOnSignal,
    ));
    server.add_service(background_service(
        "process record",
        RecordKeeper::new(config_path, settings),
    ));
    let jwks_runtime = Arc::clone(&runtime);
    let jwks = Arc::new(move || jwks_runtime.load().remote_jwks());
    server.add_service(background_service("jwks refresh", JwksRefresher::new(jwks)));

    let signals = control::drain::DrainingSignals::new(Arc::clone(&runtime));
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::server_conf;

    fn work_stealing(server_extra: &str) -> bool {
        let text = format!("server:\n  listen: [\"127.0.0.1:8080\"]\n{server_extra}");
        let config = crate::config::load_str(&text, "t.yaml").unwrap_or_else(|p| panic!("{p:?}"));
        server_conf(&config, false).work_stealing
    }

    /// `server.work_stealing` reaches Pingora's settings; without it, a runtime per thread.
    #[test]
    fn work_stealing_reaches_pingora() {
        assert!(!work_stealing(""));
        assert!(!work_stealing("  work_stealing: false\n"));
        assert!(work_stealing("  work_stealing: true\n"));
    }

    /// A running process's record written before the field existed ran Pingora's default
    /// (`true`): a new binary configured with `false` reports the change as waiting for an
    /// upgrade instead of claiming it applied.
    #[test]
    fn an_old_record_ran_work_stealing() {
        let text = "server:\n  listen: [\"127.0.0.1:8080\"]\n  work_stealing: false\n";
        let config = crate::config::load_str(text, "t.yaml").unwrap_or_else(|p| panic!("{p:?}"));
        let mut record = serde_json::to_value(&config.server.process).unwrap_or_else(|e| panic!("{e}"));
        if let Some(map) = record.as_object_mut() {
            map.remove("work_stealing");
        }
        let old: crate::config::ProcessSettings =
            serde_json::from_value(record).unwrap_or_else(|e| panic!("{e}"));
        assert!(old.work_stealing);
        assert_eq!(old.changes(&config.server.process), vec!["work_stealing"]);
    }
}
