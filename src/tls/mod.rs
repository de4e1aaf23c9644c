//! TLS on the client edge: the certificates each listener serves (chosen by SNI, swapped by
//! a live reload), the acceptor settings, client-certificate identities for `mtls`
//! authentication, and handshake metrics.

pub mod acceptor;
pub mod certificates;
pub mod identity;
pub mod mint;
pub mod trust;
