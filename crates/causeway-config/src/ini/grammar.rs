//! PgBouncer's ini grammar, as libusual's cfparser reads it: `[section]`
//! headers, `key = value` lines, `;` and `#` comment lines (not comments
//! later in a line), a key in single quotes when it has other characters
//! than `A-Za-z0-9_.-*`, and `%include FILE` (a relative name is taken from
//! the working directory, at most 10 levels deep).

use std::fmt;
use std::path::{Path, PathBuf};

/// The sections PgBouncer knows (names are case-sensitive).
const SECTIONS: &[&str] = &["pgbouncer", "databases", "users", "peers"];

/// PgBouncer stops at this include depth.
const MAX_INCLUDE_DEPTH: usize = 10;

/// Where a line was read: file and 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` line and the section it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    pub at: Origin,
}

/// Reads `path` and everything it includes, in order. The first syntax
/// error stops the read, as in PgBouncer.
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut section = None;
    read_into(path, 0, &mut section, &mut out)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    depth: usize,
    section: &mut Option<String>,
    out: &mut Vec<Entry>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut p = Cursor {
        text: &text,
        pos: 0,
        file: path,
    };
    loop {
        p.skip_while(|c| c.is_ascii_whitespace());
        if p.at_end() {
            return Ok(());
        }
        if let Some(name) = p.include() {
            let at = p.origin();
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(format!(
                    "{at}: %include nested more than {MAX_INCLUDE_DEPTH} levels deep"
                ));
            }
            read_into(Path::new(name), depth + 1, section, out)
                .map_err(|e| format!("{e}\n  (included from {at})"))?;
        } else if p.peek() == Some('#') || p.peek() == Some(';') {
            p.skip_while(|c| c != '\n');
        } else if p.peek() == Some('[') {
            let at = p.origin();
            let name = p.section()?;
            if !SECTIONS.contains(&name) {
                return Err(format!("{at}: unknown section [{name}]"));
            }
            *section = Some(name.to_string());
        } else {
            let at = p.origin();
            let (key, value) = p.key_value()?;
            let Some(section) = section.clone() else {
                return Err(format!("{at}: `{key}` is outside any [section]"));
            };
            out.push(Entry {
                section,
                key: key.to_string(),
                value: value.to_string(),
                at,
            });
        }
    }
}

/// A position in one file's text (byte offsets; the grammar is ASCII).
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    file: &'a Path,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        let len = self.rest().find(|c| !f(c)).unwrap_or(self.rest().len());
        self.pos += len;
        &self.text[start..self.pos]
    }

    fn origin(&self) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            line: self.text[..self.pos].matches('\n').count() + 1,
        }
    }

    fn syntax_error(&self, what: &str) -> String {
        format!("{}: syntax error: {what}", self.origin())
    }

    /// `%include NAME` (a blank must follow the word): the trimmed name.
    fn include(&mut self) -> Option<&'a str> {
        let rest = self.rest().strip_prefix("%include")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        self.pos += "%include".len();
        self.skip_while(|c| c == ' ' || c == '\t');
        let name = self.skip_while(|c| c != '\n');
        Some(name.trim_end())
    }

    /// `[name]`: the name, everything up to `]` on the same line.
    fn section(&mut self) -> Result<&'a str, String> {
        self.pos += 1;
        let name = self.skip_while(|c| c != ']' && c != '\n');
        if self.peek() != Some(']') {
            return Err(self.syntax_error("section name without closing `]`"));
        }
        self.pos += 1;
        Ok(name)
    }

    /// `key = value` up to the end of the line (trailing blanks dropped).
    fn key_value(&mut self) -> Result<(&'a str, &'a str), String> {
        let key = if self.peek() == Some('\'') {
            self.pos += 1;
            let k = self.skip_while(|c| c != '\'' && c != '\n');
            if self.peek() != Some('\'') || k.is_empty() {
                return Err(self.syntax_error("quoted key without closing `'`"));
            }
            self.pos += 1;
            k
        } else {
            self.skip_while(|c| c.is_ascii_alphanumeric() || "_.-*".contains(c))
        };
        self.skip_while(|c| c == ' ' || c == '\t');
        if key.is_empty() || self.peek() != Some('=') {
            return Err(self.syntax_error("expected `key = value`"));
        }
        self.pos += 1;
        self.skip_while(|c| c == ' ' || c == '\t');
        let value = self.skip_while(|c| c != '\n').trim_end();
        Ok((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    fn kv(e: &[Entry]) -> Vec<(String, String, String, usize)> {
        e.iter()
            .map(|e| (e.section.clone(), e.key.clone(), e.value.clone(), e.at.line))
            .collect()
    }

    #[test]
    fn sections_keys_comments_and_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = file(
            d.path(),
            "a.ini",
            "; comment\n# another\n[databases]\n  app = host=h dbname=x   \n'my db' = host=h\n\n[pgbouncer]\nlisten_port=6432 ; not a comment\r\nunix_socket_dir =\n",
        );
        let e = read(&p).unwrap();
        assert_eq!(
            kv(&e),
            vec![
                (
                    "databases".into(),
                    "app".into(),
                    "host=h dbname=x".into(),
                    4
                ),
                ("databases".into(), "my db".into(), "host=h".into(), 5),
                (
                    "pgbouncer".into(),
                    "listen_port".into(),
                    "6432 ; not a comment".into(),
                    8
                ),
                ("pgbouncer".into(), "unix_socket_dir".into(), "".into(), 9),
            ]
        );
        assert_eq!(e[0].at.file, p);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        for (text, line) in [
            ("[pgbouncer]\n\n\"my db\" = x\n", 3),
            ("[pgbouncer\nx = 1\n", 1),
            ("[pgbouncer]\nlisten_port 6432\n", 2),
            ("[pgbouncer]\n'unterminated = 1\n", 2),
            ("[databases]\n= host=x\n", 2),
        ] {
            let p = file(d.path(), "bad.ini", text);
            let err = read(&p).unwrap_err();
            assert!(
                err.contains(&format!("{}:{line}: syntax error", p.display())),
                "{text:?}: {err}"
            );
        }
        for bad in ["[Databases]\n", "\n[foo]\n"] {
            let p = file(d.path(), "sect.ini", bad);
            let err = read(&p).unwrap_err();
            assert!(err.contains("unknown section"), "{bad:?}: {err}");
        }
        let p = file(d.path(), "nosect.ini", "\nx = 1\n[pgbouncer]\n");
        let err = read(&p).unwrap_err();
        assert!(err.contains(":2: `x` is outside any [section]"), "{err}");
    }

    #[test]
    fn include_is_read_in_place_and_keeps_the_section() {
        let d = tempfile::tempdir().unwrap();
        let inc = file(
            d.path(),
            "dbs.ini",
            "b = host=h2\n[pgbouncer]\npool_mode = transaction\n",
        );
        let main = file(
            d.path(),
            "main.ini",
            &format!(
                "[databases]\na = host=h1\n%include {}  \nlisten_port = 1\n",
                inc.display()
            ),
        );
        let e = read(&main).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.at.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("databases", "a", format!("{}:2", main.display())),
                ("databases", "b", format!("{}:1", inc.display())),
                ("pgbouncer", "pool_mode", format!("{}:3", inc.display())),
                // The included file's section carries on, as in PgBouncer.
                ("pgbouncer", "listen_port", format!("{}:4", main.display())),
            ]
        );
    }

    #[test]
    fn include_errors_name_the_including_line() {
        let d = tempfile::tempdir().unwrap();
        let main = file(
            d.path(),
            "main.ini",
            "[pgbouncer]\n%include /nonexistent/x.ini\n",
        );
        let err = read(&main).unwrap_err();
        assert!(err.contains("/nonexistent/x.ini"), "{err}");
        assert!(err.contains(&format!("{}:2", main.display())), "{err}");
        // A file including itself stops at the depth limit.
        let selfinc = d.path().join("self.ini");
        file(
            d.path(),
            "self.ini",
            &format!("%include {}\n", selfinc.display()),
        );
        let err = read(&selfinc).unwrap_err();
        assert!(err.contains("nested more than 10 levels"), "{err}");
    }
}
