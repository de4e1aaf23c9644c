//! Changes the gateway makes to requests and responses as they pass.

pub mod body;
pub mod bounded;
pub mod client_headers;
pub mod doc;
pub mod guided;
pub mod headers;
pub mod json;
pub mod query;
