//! Portcullis: an API gateway on Cloudflare's Pingora.
//!
//! Data flows one way: YAML -> validated `Config` -> compiled `Snapshot` (behind one atomic
//! pointer) -> the request pipeline in `proxy`.

use std::process::ExitCode;

use portcullis::{auth, cli, config, control, demo, routing, runtime, server};

use cli::Command;

/// mimalloc instead of glibc malloc: the proxy path allocates and frees many small buffers
/// per request (headers, futures), where glibc's arena locking and consolidation showed up
/// as about 12% of the gateway's CPU in the load benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: first thing in main, while this is the only thread (it sets OpenSSL's environment).
    unsafe {
        portcullis::tls::trust::prefer_hashed_directory();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Version) => {
            println!("portcullis {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Check { config }) => check(&config),
        Ok(Command::Reload { config }) => {
            let config = absolute(&config);
            match load(&config) {
                Ok((cfg, _)) => control::reload(&config, &cfg),
                Err(code) => code,
            }
        }
        Ok(Command::Upgrade { config }) => {
            let config = absolute(&config);
            match load(&config) {
                Ok((cfg, _)) => control::upgrade(&config, &cfg),
                Err(code) => code,
            }
        }
        Ok(Command::Run {
            config,
            daemon,
            upgrade,
            upgrade_sock,
        }) => run(
            &absolute(&config),
            server::RunOptions {
                daemon,
                upgrade,
                upgrade_sock,
            },
        ),
        Ok(Command::DemoUpstreams { ports }) if ports.is_empty() => demo::run(&demo::DEFAULT_PORTS),
        Ok(Command::DemoUpstreams { ports }) => demo::run(&ports),
        Ok(Command::HashKey) => hash_key(),
        Ok(Command::Route {
            config,
            request,
            headers,
            tests,
        }) => match load(&config) {
            Ok((_, snapshot)) => match (request, tests) {
                (Some(line), _) => portcullis::control::route::explain_one(snapshot, &line, &headers),
                (None, Some(file)) => portcullis::control::route::run_tests(snapshot, &file),
                (None, None) => ExitCode::from(2),
            },
            Err(code) => code,
        },
        Ok(Command::DemoCert { dir }) => match portcullis::tls::mint::demo(std::path::Path::new(&dir)) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: demo-cert: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("portcullis: {e}\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

/// The configuration path made absolute (not resolving symbolic links, so a file swapped
/// behind a link, as Kubernetes does with ConfigMaps, is re-read on reload). A daemon runs in
/// `/`: a relative path given at start would point elsewhere by the time it reloads.
fn absolute(path: &str) -> String {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// `portcullis hash-key`: the SHA-256 of one key read from stdin (trailing newline dropped),
/// so a raw key never has to appear on a command line or in a file.
fn hash_key() -> ExitCode {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if !line.trim_end_matches(['\r', '\n']).is_empty() => {
            println!(
                "{}",
                auth::api_key::sha256_hex(line.trim_end_matches(['\r', '\n']))
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("portcullis: hash-key: give the key on stdin");
            ExitCode::FAILURE
        }
    }
}

/// Load, validate and compile; print every problem the same way for `check` and `run`.
fn load(path: &str) -> Result<(config::Config, runtime::Snapshot), ExitCode> {
    let config = config::load_file(path).map_err(|problems| {
        eprint!("{problems}");
        eprintln!(
            "portcullis: configuration {path} has {} problem(s)",
            problems.len()
        );
        ExitCode::FAILURE
    })?;
    let snapshot = runtime::Snapshot::compile(&config).map_err(|e| {
        // One problem per line (every unreachable gRPC binding at once).
        for line in e.lines() {
            eprintln!("{path}: {line}");
        }
        eprintln!(
            "portcullis: configuration {path} has {} problem(s)",
            e.lines().count().max(1)
        );
        ExitCode::FAILURE
    })?;
    Ok((config, snapshot))
}

fn check(path: &str) -> ExitCode {
    match load(path) {
        Ok((config, snapshot)) => {
            let targets: usize = snapshot.pools.iter().map(|p| p.target_count()).sum();
            println!(
                "portcullis: configuration {path} is valid: {} routes, {} upstreams, {} targets",
                config.routes.len(),
                config.upstreams.len(),
                targets
            );
            print_certificates(&config);
            print_insecure_upstreams(&config);
            print_precedence(&snapshot);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Each TLS listener's certificates: names (SNI), chain, expiry, and a warning for one that
/// expires within 14 days (an expired one is an error, reported by the load).
fn print_certificates(config: &config::Config) {
    for listener in &config.server.certificates {
        for (i, c) in listener.set.certificates().iter().enumerate() {
            let default = if i == 0 { " (default)" } else { "" };
            println!("tls {}{default}: {}", listener.addr, c.describe());
        }
    }
}

/// Upstreams whose TLS certificates are not verified (`verify: false, insecure: true`).
fn print_insecure_upstreams(config: &config::Config) {
    for u in &config.upstreams {
        if u.tls.as_ref().is_some_and(|t| !t.verify) {
            println!(
                "WARNING: upstream `{}`: TLS certificates are not verified (insecure: true); \
                 anyone on the path can read and change its traffic",
                u.name.value
            );
        }
    }
}

/// The most lines of the precedence report `check` prints; the rest are counted.
const MAX_PRECEDENCE_LINES: usize = 50;

/// Where a more specific path authenticates differently from the one enclosing it.
fn print_precedence(snapshot: &runtime::Snapshot) {
    let lines = routing::precedence::auth_overlaps(&snapshot.routes, |r| snapshot.auth_summary(r));
    for line in lines.iter().take(MAX_PRECEDENCE_LINES) {
        println!("{line}");
    }
    if lines.len() > MAX_PRECEDENCE_LINES {
        println!("precedence: … and {} more", lines.len() - MAX_PRECEDENCE_LINES);
    }
}

fn run(path: &str, opts: server::RunOptions) -> ExitCode {
    let (config, snapshot) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    portcullis::observe::logging::init(config.server.process.log_level.as_deref());
    if let Some(dir) = portcullis::tls::trust::chosen() {
        log::info!("trusted CAs: read from {dir} when a chain needs them (SSL_CERT_DIR; set SSL_CERT_FILE or SSL_CERT_DIR to choose)");
    }
    log::info!(
        "portcullis {} starting: {} routes, {} upstreams, listening on {}",
        env!("CARGO_PKG_VERSION"),
        config.routes.len(),
        config.upstreams.len(),
        config
            .server
            .process
            .listen
            .iter()
            .map(|l| match (&l.tls, l.h2c) {
                (Some(_), _) => format!("{} (TLS)", l.addr),
                (None, true) => format!("{} (h2c)", l.addr),
                (None, false) => l.addr.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    match server::run(path, config, snapshot, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}
