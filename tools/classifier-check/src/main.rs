//! Runs Causeway's classifier and PostgreSQL's parser (libpg_query, via
//! `pg_query`) over the same statements and reports every statement the
//! classifier calls a replica-safe read while the parse tree shows it
//! writes, locks, calls a function with side effects (or, with
//! `strict_functions`, any function not known read-only), modifies data in
//! a CTE, touches temporary objects or changes session state.
//!
//! Usage: classifier-check DIR... (directories of .sql files, e.g.
//! PostgreSQL's src/test/regress/sql). Exit status 1 on any unsafe
//! disagreement.

mod generate;
mod oracle;
mod regress;

use std::collections::BTreeMap;
use std::process::ExitCode;

use causeway_routing::Classifier;
use oracle::Functions;

#[derive(Default)]
struct Tally {
    checked: usize,
    oracle_unsafe: usize,
    /// Classified a read while the parser shows it is not one.
    unsafe_as_read: Vec<(String, String)>,
    /// Parser shows a read, classifier sends it to the primary.
    conservative: usize,
}

struct Mode {
    name: &'static str,
    classifier: Classifier,
    functions: Functions,
    tally: Tally,
}

impl Mode {
    fn check(&mut self, sql: &str, tree: &serde_json::Value) {
        let reason = oracle::unsafe_reason(tree, self.functions);
        let read = self.classifier.classify(sql).class.is_read();
        let t = &mut self.tally;
        t.checked += 1;
        match reason {
            Some(r) => {
                t.oracle_unsafe += 1;
                if read {
                    t.unsafe_as_read.push((r, sql.to_string()));
                }
            }
            None if !read => t.conservative += 1,
            None => {}
        }
    }
}

#[derive(Default)]
struct Source {
    statements: usize,
    unparsed: usize,
}

fn main() -> ExitCode {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    let mut modes = [
        Mode {
            name: "default (unknown functions are reads)",
            classifier: Classifier::default(),
            functions: Functions::SideEffects,
            tally: Tally::default(),
        },
        Mode {
            name: "strict_functions = true",
            classifier: Classifier::default().strict_functions(true),
            functions: Functions::KnownReadOnly,
            tally: Tally::default(),
        },
    ];
    let mut sources: BTreeMap<&str, Source> = BTreeMap::new();
    let mut files = 0usize;
    for dir in &dirs {
        for (_path, text) in regress::sql_files(dir) {
            files += 1;
            let src = sources.entry("regression").or_default();
            for stmt in regress::statements(&text) {
                run(&stmt, &mut modes, src);
            }
        }
    }
    let src = sources.entry("generated").or_default();
    for stmt in generate::statements() {
        run(&stmt, &mut modes, src);
    }
    println!("classifier-check: {files} regression files");
    for (name, s) in &sources {
        println!(
            "  {name}: {} statements, {} not parsed by PostgreSQL's parser (skipped)",
            s.statements, s.unparsed
        );
    }
    let mut bad = 0;
    for m in &modes {
        let t = &m.tally;
        println!(
            "mode {}: {} checked, {} unsafe per the parser, {} unsafe-as-read, {} conservative (read sent to the primary)",
            m.name,
            t.checked,
            t.oracle_unsafe,
            t.unsafe_as_read.len(),
            t.conservative
        );
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for (reason, sql) in &t.unsafe_as_read {
            let n = shown.entry(reason).or_default();
            *n += 1;
            if *n <= 3 {
                println!("  UNSAFE-AS-READ ({reason}): {}", one_line(sql));
            }
        }
        for (reason, n) in shown {
            println!("  {n:6} unsafe-as-read: {reason}");
        }
        bad += t.unsafe_as_read.len();
    }
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Parses `sql`; each statement PostgreSQL's parser accepts is checked
/// (the classifier sees the same text).
fn run(sql: &str, modes: &mut [Mode], src: &mut Source) {
    src.statements += 1;
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        src.unparsed += 1;
        return;
    };
    let Ok(tree) = serde_json::to_value(&parsed.protobuf) else {
        src.unparsed += 1;
        return;
    };
    let stmts = tree
        .get("stmts")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    if stmts.is_empty() {
        return;
    }
    for m in modes.iter_mut() {
        // Several statements: unsafe if any is.
        let worst = stmts
            .iter()
            .find(|s| oracle::unsafe_reason(s, m.functions).is_some())
            .unwrap_or(&stmts[0]);
        m.check(sql, worst);
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 200 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}
