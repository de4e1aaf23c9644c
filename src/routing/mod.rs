//! Request routing: one normalized path, then the route table.

pub mod host;
pub mod methods;
pub mod normalize;
pub mod overlap;
pub mod precedence;
pub mod table;
pub mod template;

pub use crate::route::Route;
pub use table::{RouteMatch, RouteTable};
