//! Command line: config files, the flags that override them, subcommands.

use std::path::PathBuf;

use causeway_config::Layers;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "PostgreSQL connection pooler and read/write router"
)]
pub struct Cli {
    /// Configuration file: TOML, or PgBouncer's own for a `.ini` file;
    /// repeat to layer several (later wins).
    #[arg(short, long = "config", value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,
    /// Do not read /etc/causeway/causeway.toml.
    #[arg(long, global = true)]
    pub no_system_config: bool,
    #[arg(long, value_name = "ADDR")]
    pub listen_addr: Option<String>,
    #[arg(short = 'p', long, value_name = "PORT")]
    pub listen_port: Option<u16>,
    #[arg(long, value_name = "MODE")]
    pub pool_mode: Option<String>,
    #[arg(long, value_name = "N")]
    pub workers: Option<u64>,
    /// Log format: human or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Any setting: --set key=value (value in TOML syntax, bare strings allowed).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the merged configuration and print it (passwords masked).
    CheckConfig {
        /// Also log in to every server of every database as the lag
        /// monitor would (monitor_user and its password) and report what
        /// each one is; exit 1 if any cannot be reached or refuses it.
        #[arg(long)]
        connect: bool,
    },
    /// Print a PgBouncer .ini file (and its %includes) as commented
    /// Causeway TOML: `causeway import pgbouncer.ini > causeway.toml`.
    Import {
        #[arg(value_name = "PGBOUNCER_INI")]
        file: PathBuf,
    },
}

impl Cli {
    pub fn layers(&self) -> Result<Layers, String> {
        let mut l = Layers {
            files: self.config.clone(),
            ..Layers::default()
        };
        if self.no_system_config {
            l.system_file = PathBuf::from("/nonexistent/causeway.toml");
        }
        let mut put = |k: &str, v: toml::Value| l.overrides.push((k.to_string(), v));
        if let Some(v) = &self.listen_addr {
            put("listen_addr", v.clone().into());
        }
        if let Some(v) = self.listen_port {
            put("listen_port", i64::from(v).into());
        }
        if let Some(v) = &self.pool_mode {
            put("pool_mode", v.clone().into());
        }
        if let Some(v) = self.workers {
            put("workers", (v as i64).into());
        }
        if let Some(v) = &self.log_format {
            put("log_format", v.clone().into());
        }
        if let Some(v) = &self.log_level {
            put("log_level", v.clone().into());
        }
        for kv in &self.set {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                // The value may be a password typed with the wrong separator.
                format!(
                    "--set expects key=value, got {:?} (rest not shown)",
                    key_prefix(kv)
                )
            })?;
            put(k.trim(), parse_value(v.trim()));
        }
        Ok(l)
    }
}

/// The leading key-like part of `text` (letters, digits, `_`, `.`).
fn key_prefix(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    &text[..end]
}

/// A TOML value if it parses as one, else the raw string.
fn parse_value(v: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_without_equals_does_not_echo_the_value() {
        let cli = Cli::parse_from(["causeway", "--set", "databases.x.password:s3cr3t"]);
        let err = cli.layers().unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("databases.x.password"), "{err}");
    }

    #[test]
    fn set_values_parse_as_toml_or_string() {
        assert_eq!(parse_value("5"), toml::Value::Integer(5));
        assert_eq!(parse_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            parse_value("transaction"),
            toml::Value::String("transaction".into())
        );
        assert_eq!(parse_value("\"a b\""), toml::Value::String("a b".into()));
    }
}
