//! What loading a configuration can fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found")]
    Missing(PathBuf),
    /// A parse, unknown-key or type error; figment's text names the key and source.
    #[error("{0}")]
    Invalid(String),
    #[error("invalid value for `{key}` ({source_name}): {reason}")]
    Value {
        key: String,
        source_name: String,
        reason: String,
    },
}
