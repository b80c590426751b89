//! Merging the layers with figment. Lowest to highest: built-in defaults,
//! `/etc/causeway/causeway.toml` (when present), each `--config` file in
//! order (TOML, or PgBouncer's ini for a `.ini` file), `CAUSEWAY_*`
//! environment variables (`__` nests keys), CLI flags.

use std::path::{Path, PathBuf};

use figment2::error::{Actual, Kind};
use figment2::providers::{Env, Format, Serialized, Toml};
use figment2::value::{Dict, Map};
use figment2::{Figment, Metadata, Profile, Provider, Source};

use crate::error::ConfigError;
use crate::model::Config;
use crate::validate;

pub const SYSTEM_CONFIG: &str = "/etc/causeway/causeway.toml";

/// Environment variables with the prefix that are not settings (used by
/// tooling around Causeway); everything else must be a known key.
const ENV_NOT_SETTINGS: &[&str] = &["bin", "log"];

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct Layers {
    /// The system file; read only if it exists.
    pub system_file: PathBuf,
    pub files: Vec<PathBuf>,
    /// Environment prefix (`CAUSEWAY_`); `None` skips the environment.
    pub env_prefix: Option<String>,
    /// CLI flags as `dotted.key = TOML value`.
    pub overrides: Vec<(String, toml::Value)>,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            system_file: PathBuf::from(SYSTEM_CONFIG),
            files: Vec::new(),
            env_prefix: Some("CAUSEWAY_".into()),
            overrides: Vec::new(),
        }
    }
}

/// A merged, valid configuration and the warnings reading it gave
/// (settings of a PgBouncer file that Causeway ignores).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Layers {
    fn figment(&self, warnings: &mut Vec<String>) -> Result<Figment, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if self.system_file.exists() {
            f = f.merge(Toml::file(&self.system_file).search(false));
        }
        for file in &self.files {
            if !file.exists() {
                return Err(ConfigError::Missing(file.clone()));
            }
            if crate::ini::is_pgbouncer_file(file) {
                let ini = crate::ini::read(file)?;
                warnings.extend_from_slice(ini.warnings());
                f = f.merge(ini.figment());
            } else {
                f = f.merge(Toml::file(file).search(false));
            }
        }
        if let Some(prefix) = &self.env_prefix {
            let env = Env::prefixed(prefix).split("__").filter(|k| {
                !ENV_NOT_SETTINGS
                    .iter()
                    .any(|n| k.as_str().eq_ignore_ascii_case(n))
            });
            f = f.merge(env);
        }
        for (key, value) in &self.overrides {
            f = f.merge(Flag(Serialized::default(key, value.clone())));
        }
        Ok(f)
    }
}

/// Loads, merges and validates. Errors name the key and the file or
/// environment variable it came from.
pub fn load(layers: &Layers) -> Result<Config, ConfigError> {
    load_with_warnings(layers).map(|l| l.config)
}

/// [`load`], also returning the warnings to log.
pub fn load_with_warnings(layers: &Layers) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let fig = layers.figment(&mut warnings)?;
    let config = extract(&fig, layers.env_prefix.as_deref())?;
    Ok(Loaded { config, warnings })
}

/// One TOML text over the defaults, validated as [`load`] does (no files,
/// no environment): for tools and the fuzzer.
pub fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml));
    extract(&fig, None)
}

fn extract(fig: &Figment, env_prefix: Option<&str>) -> Result<Config, ConfigError> {
    let cfg: Config = fig.extract().map_err(|e| {
        let msgs: Vec<String> = e
            .into_iter()
            .map(|e| describe_error(&e, env_prefix))
            .collect();
        ConfigError::Invalid(msgs.join("; "))
    })?;
    validate::check(&cfg).map_err(|v| ConfigError::Value {
        source_name: describe_source(fig, &v.key, env_prefix),
        key: v.key,
        reason: v.reason,
    })?;
    Ok(cfg)
}

/// One `--set key=value` (or other CLI flag): named as such in errors.
struct Flag(Serialized<toml::Value>);

impl Provider for Flag {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment2::Error> {
        self.0.data()
    }
}

/// "<what is wrong> for key `a.b` (<source>)". Values of secret-looking
/// keys are never repeated (a mistyped `--set databases.x.password=..`
/// must not print the password), nor values given where a table was
/// expected (the key was probably mistyped).
fn describe_error(e: &figment2::Error, env_prefix: Option<&str>) -> String {
    let key = e.path.join(".");
    let secret = is_secret_key(&key);
    let what = match &e.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected)
            if secret || !is_scalar(expected) =>
        {
            let verb = if matches!(e.kind, Kind::InvalidType(..)) {
                "invalid type"
            } else {
                "invalid value"
            };
            format!("{verb}: found {}, expected {expected}", kind_of(actual))
        }
        Kind::Message(m) => redact_text(m),
        k => k.to_string(),
    };
    let source = match &e.metadata {
        Some(md) => describe_metadata(md, &key, env_prefix),
        None => "unknown source".into(),
    };
    if key.is_empty() {
        format!("{what} ({source})")
    } else {
        format!("{what} for key `{key}` ({source})")
    }
}

/// A key whose value must never appear in a message.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "pwd"]
        .iter()
        .any(|w| k.contains(w))
}

fn is_scalar(expected: &str) -> bool {
    !(expected.contains("struct") || expected.contains("map") || expected.contains("sequence"))
}

/// The type of a value, without the value.
fn kind_of(a: &Actual) -> &'static str {
    match a {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "a value",
    }
}

/// Masks `password = ...` (any secret-looking key) in free text such as a
/// TOML parse error that quotes the offending line.
pub fn redact_text(text: &str) -> String {
    text.lines()
        .map(|line| match line.find('=') {
            Some(i) if is_secret_key(&line[..i]) => format!("{}= ********", &line[..i]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "TOML file /etc/x.toml", "environment variable CAUSEWAY_X", ...
fn describe_source(fig: &Figment, key: &str, env_prefix: Option<&str>) -> String {
    // The value may come from a parent table (e.g. a whole [databases.x]).
    let mut k = key;
    loop {
        if let Some(md) = fig.find_metadata(k) {
            return describe_metadata(md, k, env_prefix);
        }
        match k.rfind('.') {
            Some(i) => k = &k[..i],
            None => return "built-in default".into(),
        }
    }
}

fn describe_metadata(md: &Metadata, key: &str, env_prefix: Option<&str>) -> String {
    match &md.source {
        Some(Source::File(p)) => format!("{} {}", md.name, shown(p)),
        Some(Source::Code(_)) => "built-in default".into(),
        // A PgBouncer file's `path:line`.
        Some(Source::Custom(at)) => format!("{} {at}", md.name),
        _ => {
            if md.name.contains("environment") {
                if let Some(prefix) = env_prefix {
                    let var = key.replace('.', "__").to_uppercase();
                    return format!("environment variable {prefix}{var}");
                }
            }
            md.name.to_string()
        }
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PoolMode;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn layers(files: &[&Path], prefix: Option<&str>) -> Layers {
        Layers {
            system_file: PathBuf::from("/nonexistent/causeway.toml"),
            files: files.iter().map(|p| p.to_path_buf()).collect(),
            env_prefix: prefix.map(String::from),
            overrides: vec![],
        }
    }

    #[test]
    fn defaults_match_pgbouncer() {
        let c = load(&layers(&[], None)).unwrap();
        assert_eq!(c.listen_port, 6432);
        assert_eq!(c.max_client_conn, 100);
        assert_eq!(c.default_pool_size, 20);
        assert_eq!(c.query_wait_timeout, 120.0);
        assert_eq!(c.server_reset_query, "DISCARD ALL");
    }

    #[test]
    fn layers_override_in_order() {
        let a = file("listen_port = 7000\ndefault_pool_size = 5\npool_mode = \"transaction\"\n[databases.app]\nhost = \"127.0.0.1\"\n");
        let b = file("default_pool_size = 7\n");
        std::env::set_var("CWTEST_LAYERS_DEFAULT_POOL_SIZE", "9");
        std::env::set_var("CWTEST_LAYERS_DATABASES__APP__POOL_SIZE", "3");
        let mut l = layers(&[a.path(), b.path()], Some("CWTEST_LAYERS_"));
        let c = load(&l).unwrap();
        assert_eq!(c.listen_port, 7000);
        assert_eq!(c.default_pool_size, 9);
        assert_eq!(c.pool_mode, PoolMode::Transaction);
        assert_eq!(c.databases["app"].pool_size, Some(3));
        l.overrides
            .push(("default_pool_size".into(), toml::Value::Integer(11)));
        l.overrides
            .push(("databases.app.pool_size".into(), toml::Value::Integer(4)));
        let c = load(&l).unwrap();
        assert_eq!(c.default_pool_size, 11);
        assert_eq!(c.databases["app"].pool_size, Some(4));
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let a = file("listen_prot = 7000\n");
        let err = load(&layers(&[a.path()], None)).unwrap_err().to_string();
        assert!(err.contains("listen_prot"), "{err}");
        assert!(err.contains(&a.path().display().to_string()), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_file() {
        let a = file("[databases.app]\nhost = \"h\"\npool_size = \"big\"\n");
        let err = load(&layers(&[a.path()], None)).unwrap_err().to_string();
        assert!(err.contains("pool_size"), "{err}");
        assert!(err.contains(&a.path().display().to_string()), "{err}");
    }

    #[test]
    fn bad_env_value_names_variable() {
        std::env::set_var("CWTEST_ENV_LISTEN_PORT", "99999");
        let err = load(&layers(&[], Some("CWTEST_ENV_")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("CWTEST_ENV_LISTEN_PORT"), "{err}");
    }

    #[test]
    fn impossible_value_names_key_and_file() {
        let a = file("[databases.app]\nhost = \"h\"\npool_size = 0\nmin_pool_size = 5\n");
        let err = load(&layers(&[a.path()], None)).unwrap_err().to_string();
        assert!(err.contains("databases.app.min_pool_size"), "{err}");
        assert!(err.contains(&a.path().display().to_string()), "{err}");
    }

    #[test]
    fn tooling_variables_are_not_settings() {
        std::env::set_var("CWTEST_TOOL_BIN", "/usr/bin/causeway");
        std::env::set_var("CWTEST_TOOL_LOG", "debug");
        load(&layers(&[], Some("CWTEST_TOOL_"))).expect("CAUSEWAY_BIN/LOG ignored");
        std::env::set_var("CWTEST_TOOL_BINN", "x");
        assert!(
            load(&layers(&[], Some("CWTEST_TOOL_"))).is_err(),
            "others still refused"
        );
    }

    fn set(key: &str, v: toml::Value) -> Layers {
        let mut l = layers(&[], None);
        l.overrides.push((key.into(), v));
        l
    }

    #[test]
    fn mistyped_secrets_are_never_echoed() {
        for (key, v) in [
            ("databases.x.password", toml::Value::Integer(918273)),
            ("databases.x.password", toml::Value::Boolean(true)),
            ("monitor_password", toml::Value::Integer(918273)),
            ("databases.x", toml::Value::String("s3cr3t-918273".into())),
            ("databases.x.monitor_password", toml::Value::Float(918273.5)),
        ] {
            let err = load(&set(key, v.clone())).unwrap_err().to_string();
            assert!(!err.contains("918273"), "{key}: {err}");
            assert!(!err.contains("s3cr3t"), "{key}: {err}");
            assert!(!err.contains("true"), "{key}: {err}");
            assert!(err.contains(key), "names the key: {err}");
            assert!(err.contains("command-line flag"), "names the source: {err}");
        }
        // A TOML syntax error quoting a password line.
        let a = file("[databases.x]\nhost = \"h\"\npassword = \"s3cr3t-918273\n");
        let err = load(&layers(&[a.path()], None)).unwrap_err().to_string();
        assert!(!err.contains("918273"), "{err}");
        // Values of ordinary keys are still shown: they help.
        let err = load(&set("listen_port", toml::Value::String("abc".into())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("abc"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load(&layers(&[Path::new("/nonexistent/x.toml")], None)).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(_)));
    }
}
