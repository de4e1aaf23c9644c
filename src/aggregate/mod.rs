//! Aggregation: one client request fanned out to several upstreams and merged into one
//! answer, deterministically.
//!
//! - [`plan`]: the compiled `aggregate:` block (parts with their pools and `after` order);
//! - [`template`]: a part's upstream path and header values from the request, every value
//!   percent-encoded as one path segment or query value so it can never change the path;
//! - [`inputs`]: where template values come from (consumer, claims, path, query, headers,
//!   earlier parts' fields);
//! - [`fanout`]: running the parts, concurrently where `after` allows;
//! - [`part`]: one part's exchange through its pool, its answer read whole and bounded;
//! - [`merge`]: the parts' documents merged in declaration order, never arrival order;
//! - [`answer`]: status, `errors` member, `Cache-Control` and exposed headers.
//!
//! The pipeline step that reads the client's request and writes the answer is
//! `proxy::aggregated`.

pub mod answer;
pub mod fanout;
pub mod inputs;
pub mod merge;
pub mod part;
pub mod plan;
pub mod template;
