//! `causeway import pgbouncer.ini`: the same mapping written out as
//! commented TOML, for those who want to leave the ini behind. Each
//! setting's comment names the line it came from (never its text, which
//! may hold a password); what Causeway ignores is listed at the top.

use std::fmt::Write as _;

use super::{PgBouncerFile, Setting};

impl PgBouncerFile {
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Causeway configuration imported from PgBouncer's {}\n\
             # by `causeway import`. Each setting names the line it came from.\n\
             # Check it with: causeway --config THIS_FILE check-config",
            self.path.display()
        );
        if !self.warnings.is_empty() {
            out.push_str("#\n# Not carried over:\n");
            for w in &self.warnings {
                let _ = writeln!(out, "#   {w}");
            }
        }
        out.push('\n');
        for s in self.settings.iter().filter(|s| s.path.len() == 1) {
            let _ = writeln!(out, "{} = {}  {}", key(&s.path[0]), s.value, comment(s));
        }
        for s in self.settings.iter().filter(|s| s.path.len() == 2) {
            let _ = write!(
                out,
                "\n[{}.{}]  {}\n",
                key(&s.path[0]),
                key(&s.path[1]),
                comment(s)
            );
            if let toml::Value::Table(t) = &s.value {
                for (k, v) in t {
                    let _ = writeln!(out, "{} = {v}", key(k));
                }
            }
        }
        out
    }
}

/// `# FILE:LINE`, the PgBouncer key when Causeway's is another, and why
/// the value differs when it does.
fn comment(s: &Setting) -> String {
    let mut c = format!("# {}", s.at);
    if s.path.len() == 1 && !s.what.ends_with(&format!(" {}", s.path[0])) {
        c.push_str(&format!(" ({})", s.what));
    }
    if let Some(n) = &s.note {
        c.push_str(&format!(": {n}"));
    }
    c
}

/// A TOML key: bare when it can be, else quoted.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}
