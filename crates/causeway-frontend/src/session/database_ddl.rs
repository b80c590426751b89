//! Statements PostgreSQL refuses while anyone is connected to the database
//! they name (`database "x" is being accessed by other users`): DROP
//! DATABASE, ALTER DATABASE ... RENAME TO / SET TABLESPACE, and CREATE
//! DATABASE ... TEMPLATE x. Causeway's idle pooled connections to that
//! database count as such users, so before one of these statements is
//! forwarded they are closed (connections lent to clients stay: then the
//! error names real users, as directly).

use super::sqlwords::{Word, Words};

/// The database `sql` (one statement, or the first of several) needs
/// without connections, if any.
pub fn target(sql: &str) -> Option<String> {
    let mut w = Words::new(sql);
    match (w.next()?, w.next()?) {
        (a, b) if a.is("drop") && b.is("database") => {
            let mut name = w.next()?;
            if name.is("if") {
                w.next().filter(|e| e.is("exists"))?;
                name = w.next()?;
            }
            name.name().map(str::to_string)
        }
        (a, b) if a.is("alter") && b.is("database") => {
            let name = w.next()?.name()?.to_string();
            let next = w.next()?;
            let needs = next.is("rename") || (next.is("set") && w.next()?.is("tablespace"));
            needs.then_some(name)
        }
        (a, b) if a.is("create") && b.is("database") => {
            // CREATE DATABASE name [WITH] [option [=] value] ...: the
            // TEMPLATE option's value.
            let mut prev_template = false;
            for word in w {
                match word {
                    Word::Punct(b';') => return None,
                    Word::Punct(b'=') => continue,
                    _ if prev_template => return word.name().map(str::to_string),
                    _ => prev_template = word.is("template"),
                }
            }
            None
        }
        _ => None,
    }
}

/// Whether a statement starting with these bytes could be one of them
/// (or cannot be told yet): the cheap test made on every Query and Parse,
/// so that others are never held whole.
pub fn candidate(sql_start: &[u8]) -> bool {
    let Some(at) = sql_start.iter().position(|b| !b.is_ascii_whitespace()) else {
        return true; // only space so far
    };
    let rest = &sql_start[at..];
    if matches!(rest[0], b'/' | b'-') {
        return true; // a leading comment: look at the whole text
    }
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    let word = &rest[..len];
    let complete = len < rest.len();
    [&b"drop"[..], b"alter", b"create"].iter().any(|kw| {
        if complete {
            word.eq_ignore_ascii_case(kw)
        } else {
            kw.len() >= len && kw[..len].eq_ignore_ascii_case(word)
        }
    })
}

/// [`close_idle`] as a flow calls it: one shared by every session (a
/// weak pointer: the app holds it).
pub fn close_idle_hook(app: &std::sync::Arc<crate::app::App>) -> crate::app::CloseIdle {
    app.close_idle
        .get_or_init(|| {
            let app = std::sync::Arc::downgrade(app);
            std::sync::Arc::new(move |name: &str| {
                if let Some(app) = app.upgrade() {
                    close_idle(&app, name);
                }
            })
        })
        .clone()
}

/// Closes the idle pooled connections to database `name` (its name on the
/// servers), in every pool of every configured database.
pub fn close_idle(app: &crate::app::App, name: &str) {
    let mut closed = 0;
    for db in app.databases.all() {
        for pool in db.pools() {
            if pool.login().database == name {
                closed += pool.drain_idle();
            }
        }
    }
    if closed > 0 {
        tracing::info!(
            database = name,
            closed,
            "closed idle server connections to a database about to be dropped, renamed or copied"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_need_an_unused_database() {
        let cases = [
            ("DROP DATABASE x", Some("x")),
            (
                "drop database if exists \"Mixed Case\" with (force)",
                Some("Mixed Case"),
            ),
            ("/* c */ DROP DATABASE Foo;", Some("foo")),
            ("ALTER DATABASE x RENAME TO y", Some("x")),
            ("ALTER DATABASE x SET TABLESPACE t", Some("x")),
            ("ALTER DATABASE x SET work_mem = '1MB'", None),
            ("ALTER DATABASE x OWNER TO y", None),
            ("CREATE DATABASE y TEMPLATE x", Some("x")),
            (
                "CREATE DATABASE y WITH OWNER = a ENCODING 'UTF8' TEMPLATE = tpl",
                Some("tpl"),
            ),
            ("CREATE DATABASE y", None),
            ("DROP TABLE database", None),
            ("SELECT 1", None),
            ("", None),
        ];
        for (sql, want) in cases {
            assert_eq!(target(sql).as_deref(), want, "{sql}");
        }
        assert!(candidate(b"  drop "));
        assert!(candidate(b"  dr"), "not known yet");
        assert!(candidate(b"-- c\n"));
        assert!(!candidate(b"SELECT"));
        assert!(!candidate(b"DO $$ BEGIN"), "DO is not DROP");
        assert!(!candidate(b"CREATE_x"));
        assert!(candidate(b"  "), "not known yet");
    }
}
