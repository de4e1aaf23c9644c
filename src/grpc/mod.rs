//! REST/JSON → gRPC transcoding: the descriptors (`descriptors`), each route's HTTP bindings
//! (`bindings`, with the HttpRule path templates of `template`), request and response
//! messages (`message`) and the gRPC status table (`status`). The call itself is made by
//! `proxy::transcode`, with the gateway's own upstream client.

pub mod bindings;
pub mod descriptors;
pub mod message;
pub mod reach;
pub mod status;
pub mod template;
