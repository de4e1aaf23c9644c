//! The futures the pipeline boxes on every request stay small.
//!
//! A boxed future is built on the stack and copied whole into its box, so its size is paid on
//! every request, in copying and in cache lines (BENCHMARKS.md has the instruction counts).
//! What makes one large is whatever it may hold across an `.await` on any branch, even one the
//! request never takes: these bounds catch a change that puts an upstream exchange's state
//! back on the hit path, or the context back inside Pingora's per-request future. The sizes
//! come from the compiler's layout of each future (measured equal in this project's debug and
//! release builds); the bounds leave about a quarter for a compiler upgrade, not room for
//! another large state.
//!
//! `UpstreamClient::new` builds Pingora's TLS connector, which once per process points
//! `SSL_CERT_FILE`/`SSL_CERT_DIR` at the system's certificates (`openssl-probe`). It writes
//! only a variable that does not already hold that path (nothing when the environment already
//! points there), and Rust's own environment access is locked; a C `getenv` in
//! another test at that instant is the one thing it could race, as it can in any test that
//! makes a connector.

use std::future::Future;
use std::sync::Arc;

use pingora::proxy::{ProxyHttp, Session};

use super::ctx::RequestCtx;
use super::{aggregated, cached, exchange, transcode, Gateway};
use crate::cache::store::Store;
use crate::runtime::Snapshot;
use crate::upstream::client::{Reply, UpstreamClient};

const CONFIG: &str = "
server: { listen: [\"127.0.0.1:0\"] }
upstreams:
  app: { targets: [\"127.0.0.1:9\"] }
routes:
  - { name: r, match: { path_prefix: / }, upstream: app }
";

/// The size of a future, which is dropped unpolled (so the borrows it holds end here).
fn size_of<F: Future>(work: F) -> usize {
    std::mem::size_of_val(&work)
}

#[test]
fn the_futures_boxed_per_request_stay_small() {
    let config = crate::config::load_str(CONFIG, "sizes.yaml").expect("config");
    let snapshot = Arc::new(Snapshot::compile(&config).expect("snapshot"));
    let mut ctx = RequestCtx::new(snapshot);
    let (stream, _peer) = tokio::io::duplex(64);
    let mut session = Session::new_h1(Box::new(stream));
    let client = Arc::new(UpstreamClient::new());
    let store = Arc::new(Store::new(1 << 20, 1 << 16));
    let sizes = [
        (
            "cached::serve (every hit)",
            size_of(cached::serve(&client, &store, &mut session, &mut ctx)),
            4 << 10,
        ),
        (
            "exchange::serve (every transformed request)",
            size_of(exchange::serve(&client, &mut session, &mut ctx)),
            10 << 10,
        ),
        (
            "transcode::serve (every gRPC-transcoded request)",
            size_of(transcode::serve(&client, &mut session, &mut ctx)),
            10 << 10,
        ),
        (
            "aggregated::serve (every aggregated request)",
            size_of(aggregated::serve(&client, &mut session, &mut ctx)),
            4 << 10,
        ),
        // Moved through every step of a reply's handling.
        ("upstream Reply", std::mem::size_of::<Reply>(), 1 << 10),
        // Held inside Pingora's per-request future, more than once.
        (
            "the proxy's per-request context",
            std::mem::size_of::<<Gateway as ProxyHttp>::CTX>(),
            16,
        ),
    ];
    let over: Vec<String> = sizes
        .iter()
        .filter(|(_, size, bound)| size > bound)
        .map(|(what, size, bound)| format!("{what}: {size} bytes (bound {bound})"))
        .collect();
    assert!(over.is_empty(), "futures grew: {over:?}");
}
