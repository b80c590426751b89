//! Causeway's configuration: the structs (one per section), how the layers
//! are merged, and the checks that refuse an impossible setting at start.

mod error;
pub mod ini;
mod load;
mod model;
mod patroni;
mod seconds;
mod validate;

pub use error::ConfigError;
pub use load::{
    is_secret_key, load, load_str, load_with_warnings, redact_text, Layers, Loaded, SYSTEM_CONFIG,
};
pub use model::*;
pub use patroni::patroni_authority;
pub use seconds::secs;
