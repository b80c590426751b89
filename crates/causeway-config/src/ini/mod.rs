//! PgBouncer's own configuration files. `causeway --config pgbouncer.ini`
//! reads a file ending in `.ini` with PgBouncer's grammar and maps each
//! setting onto Causeway's; the result is one more configuration layer
//! (a figment provider per line, so errors name the file, line and key).
//! Settings Causeway does not implement give one warning each; settings
//! whose absence would change behaviour unseen are errors.
//! `causeway import` writes the same mapping as commented TOML.

mod connstr;
mod databases;
mod grammar;
mod import;
mod peers;
mod pgbouncer;
mod provider;
mod users;
mod values;

use std::path::{Path, PathBuf};

use crate::error::ConfigError;
pub use grammar::Origin;
pub use pgbouncer::KEYS as PGBOUNCER_KEYS;

/// Whether a `--config` file is a PgBouncer file: it ends in `.ini`.
pub fn is_pgbouncer_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ini"))
}

/// A PgBouncer file (with its `%include`s), mapped onto Causeway settings.
#[derive(Debug, Clone)]
pub struct PgBouncerFile {
    path: PathBuf,
    settings: Vec<Setting>,
    warnings: Vec<String>,
}

/// Causeway settings from one line of the file.
#[derive(Debug, Clone)]
struct Setting {
    /// Causeway key path: `["listen_port"]` or `["databases", "app"]`.
    path: Vec<String>,
    value: toml::Value,
    at: Origin,
    /// `[section] key`, as written in the file.
    what: String,
    note: Option<String>,
}

/// What one line maps to.
#[derive(Debug, Default, PartialEq)]
struct Mapped {
    set: Vec<(Vec<String>, toml::Value)>,
    warnings: Vec<String>,
    /// Why the value differs from the line's, for the imported TOML.
    note: Option<String>,
}

impl Mapped {
    fn none() -> Self {
        Mapped::default()
    }

    fn set(key: &str, v: impl Into<toml::Value>) -> Self {
        Mapped {
            set: vec![(vec![key.to_string()], v.into())],
            ..Mapped::default()
        }
    }

    fn warn(msg: impl Into<String>) -> Self {
        Mapped::none().with_warning(msg)
    }

    fn with_warning(mut self, msg: impl Into<String>) -> Self {
        self.warnings.push(msg.into());
        self
    }

    fn with_note(mut self, note: &str) -> Self {
        self.note = Some(note.to_string());
        self
    }
}

/// Reads `path`, follows its `%include`s and maps every setting. All
/// errors are reported together, one line each.
pub fn read(path: &Path) -> Result<PgBouncerFile, ConfigError> {
    let entries = last_wins(grammar::read(path).map_err(ConfigError::Invalid)?);
    let mut file = PgBouncerFile {
        path: path.to_path_buf(),
        settings: Vec::new(),
        warnings: Vec::new(),
    };
    let mut errors = Vec::new();
    for e in &entries {
        let what = format!("[{}] {}", e.section, e.key);
        let mapped = match e.section.as_str() {
            "pgbouncer" => pgbouncer::setting(&e.key, &e.value),
            "databases" => databases::database(&e.key, &e.value),
            "users" => users::user(&e.key, &e.value),
            _ => peers::peer(&e.key, &e.value),
        };
        match mapped {
            Ok(m) => file.add(e, what, m),
            Err(msg) => errors.push(format!("{}: {what}: {msg}", e.at)),
        }
    }
    errors.extend(reserve_pool_off(&entries, &file.settings));
    errors.extend(default_hosts(&entries, &mut file.settings));
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors.join("\n")));
    }
    if !entries
        .iter()
        .any(|e| e.section == "pgbouncer" && e.key == "listen_addr")
    {
        file.warnings.push(format!(
            "{}: listen_addr is not set: PgBouncer would listen only on its Unix socket; \
             Causeway listens on 127.0.0.1 (its default)",
            path.display()
        ));
    }
    Ok(file)
}

/// A key given twice: the later line wins (for a database, the whole
/// entry), as in PgBouncer.
fn last_wins(entries: Vec<grammar::Entry>) -> Vec<grammar::Entry> {
    let mut last = std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        last.insert((e.section.clone(), e.key.clone()), i);
    }
    entries
        .into_iter()
        .enumerate()
        .filter(|(i, e)| last.get(&(e.section.clone(), e.key.clone())) == Some(i))
        .map(|(_, e)| e)
        .collect()
}

/// A `[databases]` entry without `host` connects, in PgBouncer, over the
/// Unix socket in `unix_socket_dir` (default `/tmp`): the same directory
/// becomes its host here. With `unix_socket_dir` empty there is none.
fn default_hosts(entries: &[grammar::Entry], settings: &mut [Setting]) -> Vec<String> {
    let dir = entries
        .iter()
        .find(|e| e.section == "pgbouncer" && e.key == "unix_socket_dir")
        .map_or("/tmp", |e| e.value.as_str());
    let mut errors = Vec::new();
    for s in settings.iter_mut() {
        let (Some("databases"), toml::Value::Table(t)) =
            (s.path.first().map(String::as_str), &mut s.value)
        else {
            continue;
        };
        if t.contains_key("host") || t.contains_key("servers") {
            continue;
        }
        if dir.is_empty() {
            errors.push(format!(
                "{}: {}: no host, and unix_socket_dir is empty: PgBouncer would have no \
                 socket to connect to (set host=ADDRESS or host=/socket/dir)",
                s.at, s.what
            ));
            continue;
        }
        t.insert("host".into(), toml::Value::String(dir.to_string()));
        s.note = Some(format!("no host: the Unix socket in {dir}"));
    }
    errors
}

/// PgBouncer's `reserve_pool_timeout = 0` keeps the reserve pool closed;
/// Causeway's would open it at once. Fine only without a reserve pool.
fn reserve_pool_off(entries: &[grammar::Entry], settings: &[Setting]) -> Option<String> {
    let e = entries.iter().find(|e| {
        e.section == "pgbouncer"
            && e.key == "reserve_pool_timeout"
            && values::seconds(&e.value) == Ok(0.0)
    })?;
    let reserve = |v: &toml::Value| v.as_integer().is_some_and(|n| n > 0);
    let used = settings.iter().any(|s| match &s.value {
        toml::Value::Table(t) => t.get("reserve_pool_size").is_some_and(reserve),
        v => s.path == ["reserve_pool_size"] && reserve(v),
    });
    used.then(|| {
        format!(
            "{}: [pgbouncer] reserve_pool_timeout: 0 turns PgBouncer's reserve pool off but \
             would open Causeway's at once; set reserve_pool_size = 0 instead",
            e.at
        )
    })
}

impl PgBouncerFile {
    fn add(&mut self, e: &grammar::Entry, what: String, m: Mapped) {
        for w in m.warnings {
            self.warnings.push(format!("{}: {what}: {w}", e.at));
        }
        for (path, value) in m.set {
            self.settings.push(Setting {
                path,
                value,
                at: e.at.clone(),
                what: what.clone(),
                note: m.note.clone(),
            });
        }
    }

    /// The file as given to `--config`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line per setting Causeway ignores: `FILE:LINE: [section] key: why`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}
