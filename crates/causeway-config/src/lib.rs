//! Causeway's configuration: the structs (one per section), how the layers
//! are merged, and the checks that refuse an impossible setting at start.

mod load;
mod model;
mod validate;

pub use load::{load, ConfigError, Layers, SYSTEM_CONFIG};
pub use model::*;
