//! Changes the gateway makes to requests and responses as they pass.

pub mod client_headers;
pub mod headers;
