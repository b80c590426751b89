//! The leading words of a SQL statement, for the few statements whose
//! meaning Causeway must know before forwarding them (DROP DATABASE,
//! PREPARE, ...). Not a parser: whitespace and comments are skipped,
//! identifiers come back folded as PostgreSQL folds them (unquoted: lower
//! case; `"Quoted"`: as written), and anything else (a string literal, an
//! operator) ends the walk or is reported as punctuation.

/// One word of the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word<'a> {
    /// An unquoted identifier or keyword, lower case.
    Ident(String),
    /// A double-quoted identifier, as written (`""` unescaped).
    Quoted(String),
    /// A string literal (its text is not needed).
    Literal,
    /// One byte of punctuation: `(`, `)`, `,`, `=`, `;`, ...
    Punct(u8),
    /// Something else (numbers, operators...): `rest` starts there.
    Other { rest: &'a str },
}

impl Word<'_> {
    /// The identifier's name (quoted or not).
    pub fn name(&self) -> Option<&str> {
        match self {
            Word::Ident(s) | Word::Quoted(s) => Some(s),
            _ => None,
        }
    }

    /// An unquoted keyword, compared case-insensitively.
    pub fn is(&self, kw: &str) -> bool {
        matches!(self, Word::Ident(s) if s == kw)
    }
}

/// Walks the words of `sql` from its start.
pub struct Words<'a> {
    sql: &'a str,
    at: usize,
}

impl<'a> Words<'a> {
    pub fn new(sql: &'a str) -> Self {
        Words { sql, at: 0 }
    }

    /// Byte offset just after the last word returned.
    pub fn pos(&self) -> usize {
        self.at
    }

    /// Byte offset of the next word (after skipped space and comments).
    pub fn offset(&mut self) -> usize {
        self.skip_space();
        self.at
    }

    fn skip_space(&mut self) {
        let b = self.sql.as_bytes();
        loop {
            while self.at < b.len() && b[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
            if b[self.at..].starts_with(b"--") {
                while self.at < b.len() && b[self.at] != b'\n' {
                    self.at += 1;
                }
            } else if b[self.at..].starts_with(b"/*") {
                // Nested, as in PostgreSQL.
                let mut depth = 0usize;
                while self.at < b.len() {
                    if b[self.at..].starts_with(b"/*") {
                        depth += 1;
                        self.at += 2;
                    } else if b[self.at..].starts_with(b"*/") {
                        depth -= 1;
                        self.at += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.at += 1;
                    }
                }
                if depth > 0 {
                    self.at = b.len();
                }
            } else {
                return;
            }
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        self.skip_space();
        let b = self.sql.as_bytes();
        let start = self.at;
        let c = *b.get(start)?;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let mut end = start;
            while end < b.len()
                && (b[end].is_ascii_alphanumeric()
                    || b[end] == b'_'
                    || b[end] == b'$'
                    || b[end] >= 0x80)
            {
                end += 1;
            }
            self.at = end;
            return Some(Word::Ident(self.sql[start..end].to_ascii_lowercase()));
        }
        if c == b'"' || c == b'\'' {
            let mut end = start + 1;
            let mut text = Vec::new();
            loop {
                match b.get(end) {
                    None => {
                        // Unterminated: the server will say so.
                        self.at = b.len();
                        return Some(Word::Other {
                            rest: &self.sql[start..],
                        });
                    }
                    Some(&q) if q == c && b.get(end + 1) == Some(&c) => {
                        text.push(c);
                        end += 2;
                    }
                    Some(&q) if q == c => break,
                    Some(&x) => {
                        text.push(x);
                        end += 1;
                    }
                }
            }
            self.at = end + 1;
            return Some(if c == b'"' {
                Word::Quoted(String::from_utf8_lossy(&text).into_owned())
            } else {
                Word::Literal
            });
        }
        if b"(),=;".contains(&c) {
            self.at += 1;
            return Some(Word::Punct(c));
        }
        Some(Word::Other {
            rest: &self.sql[start..],
        })
    }
}

/// The statements of `sql`: the byte range of each, without its `;`
/// (split at each `;` outside quotes, comments and dollar quotes); empty
/// ones (only space or comments) left out. None when a dollar quote is
/// unterminated (the server will say what is wrong).
pub fn statements(sql: &str) -> Option<Vec<(usize, usize)>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |from: usize, to: usize, out: &mut Vec<(usize, usize)>| {
        if Words::new(&sql[from..to]).next().is_some() {
            out.push((from, to));
        }
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                // E'...' strings treat backslash as an escape.
                let escapes = q == b'\'' && i > 0 && b[i - 1].eq_ignore_ascii_case(&b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                // $tag$ ... $tag$ (not $1: a parameter).
                let tag_len = b[i + 1..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == b'_'));
                let dollar = tag_len.filter(|n| {
                    b.get(i + 1 + n) == Some(&b'$') && !b.get(i + 1).is_some_and(u8::is_ascii_digit)
                });
                if let Some(n) = dollar {
                    let tag = &b[i..i + n + 2];
                    let body = i + n + 2;
                    let p = b[body..].windows(tag.len()).position(|w| w == tag)?;
                    i = body + p + tag.len() - 1;
                }
            }
            b'-' if b[i..].starts_with(b"--") => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b[i..].starts_with(b"/*") => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                        i += 1;
                    } else {
                        i += 1;
                    }
                }
            }
            b';' => {
                push(start, i, &mut out);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(start, b.len(), &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_comments_and_quoting() {
        let w: Vec<_> =
            Words::new("  /* a /* nested */ */ -- x\n DROP Database IF EXISTS \"My\"\"Db\" ;")
                .collect();
        assert_eq!(
            w,
            [
                Word::Ident("drop".into()),
                Word::Ident("database".into()),
                Word::Ident("if".into()),
                Word::Ident("exists".into()),
                Word::Quoted("My\"Db".into()),
                Word::Punct(b';'),
            ]
        );
        let mut w = Words::new("create database x template = 'it''s' 1");
        assert_eq!(w.nth(4), Some(Word::Punct(b'=')));
        assert_eq!(w.next(), Some(Word::Literal));
        assert_eq!(w.next(), Some(Word::Other { rest: "1" }));
        assert_eq!(
            Words::new("\"open").next(),
            Some(Word::Other { rest: "\"open" })
        );
        assert_eq!(Words::new("/* open").next(), None);
    }

    #[test]
    fn statements_split_outside_quotes() {
        let texts = |sql: &'static str| -> Vec<&'static str> {
            statements(sql)
                .unwrap()
                .into_iter()
                .map(|(a, b)| sql[a..b].trim())
                .collect()
        };
        assert_eq!(
            texts("PREPARE x AS SELECT 1 ; -- done\n"),
            ["PREPARE x AS SELECT 1"]
        );
        assert_eq!(
            texts("PREPARE x AS SELECT ';', $a$;$a$, $1, E'\\';'"),
            ["PREPARE x AS SELECT ';', $a$;$a$, $1, E'\\';'"]
        );
        assert_eq!(
            texts("BEGIN; EXECUTE q(1);;COMMIT"),
            ["BEGIN", "EXECUTE q(1)", "COMMIT"]
        );
        assert_eq!(texts("SELECT \"a;b\" /* ; */"), ["SELECT \"a;b\" /* ; */"]);
        assert_eq!(statements("SELECT $x$ open"), None);
        let mut w = Words::new("EXECUTE  Foo (1)");
        w.next();
        let start = w.offset();
        assert_eq!(w.next(), Some(Word::Ident("foo".into())));
        assert_eq!((start, w.pos()), (9, 12));
    }
}
