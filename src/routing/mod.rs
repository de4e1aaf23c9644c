//! Request routing: one normalized path, then the route table.

pub mod host;
pub mod methods;
pub mod normalize;
pub mod precedence;
pub mod table;

pub use table::{Route, RouteMatch, RouteTable};
