//! Causeway's configuration: the structs (one per section), how the layers
//! are merged, and the checks that refuse an impossible setting at start.

pub mod ini;
mod load;
mod model;
mod validate;

pub use load::{load, load_with_warnings, ConfigError, Layers, Loaded, SYSTEM_CONFIG};
pub use model::*;
