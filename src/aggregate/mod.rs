//! Aggregation: one client request fanned out to several upstreams and merged into one
//! answer (issue 14). Built in steps; so far the two pure pieces the fan-out will use:
//!
//! - [`template`]: a part's upstream path and query from the request (`{consumer}`,
//!   `{claim.NAME}`, `{path.N}`, `{query.NAME}`, `{header.NAME}`, `{PART.PATH}`), every value
//!   percent-encoded as one path segment or query value so it can never change the path;
//! - [`merge`]: the parts' documents merged in declaration order (never arrival order), shallow
//!   or deep, with a policy for conflicts and arrays.
//!
//! Not yet: the `aggregate:` configuration block, the fan-out through `upstream::client`, the
//! merged response and its status and headers, metrics, and the load scenario G.

pub mod merge;
pub mod template;
