//! Statements out of psql scripts (PostgreSQL's regression .sql files):
//! psql meta-commands and COPY data are dropped, the rest is split at `;`
//! by PostgreSQL's own scanner.

use std::path::PathBuf;

/// Every `*.sql` file in `dir`, sorted by name.
pub fn sql_files(dir: &str) -> Vec<(PathBuf, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        eprintln!("classifier-check: cannot read {dir}");
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            Some((p, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

/// The SQL statements of a psql script.
pub fn statements(script: &str) -> Vec<String> {
    let sql = strip_psql(script);
    match pg_query::split_with_scanner(&sql) {
        Ok(parts) => parts
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Drops meta-command lines (`\set`, `\d`, ...) and the data lines after a
/// `COPY ... FROM stdin` up to `\.`. A statement ended by a meta-command
/// (`\gset`, `\gexec`) keeps its text before the backslash.
fn strip_psql(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut in_copy = false;
    for line in script.lines() {
        if in_copy {
            if line.trim_end() == "\\." {
                in_copy = false;
            }
            continue;
        }
        let t = line.trim_start();
        if t.starts_with('\\') {
            let lower = t.to_ascii_lowercase();
            if lower.starts_with("\\copy") && lower.contains("stdin") {
                in_copy = true;
            }
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.trim_start().starts_with("copy ")
            && lower.contains("from stdin")
            && lower.trim_end().ends_with(';')
        {
            in_copy = true;
        }
        match line.find("\\g") {
            Some(i) if !line[..i].contains('\'') => {
                out.push_str(&line[..i]);
                out.push_str(";\n");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}
