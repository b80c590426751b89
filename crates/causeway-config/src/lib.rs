//! Causeway's configuration: the structs (one per section), how the layers
//! are merged, and the checks that refuse an impossible setting at start.

mod load;
mod model;
mod validate;

pub use load::{is_secret_key, load, load_str, redact_text, ConfigError, Layers, SYSTEM_CONFIG};
pub use model::*;
