//! Portcullis as a library: the gateway's modules, used by the `portcullis` binary and by the
//! benchmarks. Data flows one way: YAML -> validated `config::Config` -> compiled
//! `runtime::Snapshot` (behind one atomic pointer) -> the request pipeline in `proxy`.

pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod cors;
pub mod demo;
pub mod demo_grpc;
pub mod front;
pub mod grpc;
pub mod limits;
pub mod observe;
pub mod percent;
pub mod proxy;
pub mod redact;
pub mod route;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod transform;
pub mod upstream;
pub mod versions;

#[cfg(test)]
mod test_util;
