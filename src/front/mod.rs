//! The front door of every listener, before any HTTP is parsed into a request: how long a
//! client may take to send its request head, and (for the proxy) how many connections it may
//! hold. Shared by the proxy and the admin listener.

pub mod header_deadline;
