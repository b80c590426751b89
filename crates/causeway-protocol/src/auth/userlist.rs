//! PgBouncer's `auth_file` (userlist.txt): one `"user" "secret"` per line.
//!
//! Inside quotes `""` stands for one `"`. Blank lines and lines starting with
//! `;` or `#` are ignored. As in PgBouncer, anything after the secret (once
//! separated by whitespace) is ignored, so files with extra columns still load.

use super::secret::{Secret, SecretError};

/// A line of the auth file that could not be parsed. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth_file line {line}: {kind}")]
pub struct UserlistError {
    pub line: usize,
    #[source]
    pub kind: UserlistErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserlistErrorKind {
    #[error("expected a double-quoted user name")]
    ExpectedUser,
    #[error("expected whitespace and a double-quoted secret after the user name")]
    ExpectedSecret,
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("unexpected text right after a closing quote")]
    TrailingText,
    #[error("empty user name")]
    EmptyUser,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Parses the whole file, in file order. A user listed twice appears twice;
/// collecting into a map keeps the last one, as PgBouncer does.
pub fn parse_userlist(text: &str) -> Result<Vec<(String, Secret)>, UserlistError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let entry = parse_line(trimmed).map_err(|kind| UserlistError {
            line: index + 1,
            kind,
        })?;
        users.push(entry);
    }
    Ok(users)
}

fn parse_line(line: &str) -> Result<(String, Secret), UserlistErrorKind> {
    let rest = line
        .strip_prefix('"')
        .ok_or(UserlistErrorKind::ExpectedUser)?;
    let (user, rest) = quoted(rest)?;
    if user.is_empty() {
        return Err(UserlistErrorKind::EmptyUser);
    }
    let rest = require_separator(rest)?
        .strip_prefix('"')
        .ok_or(UserlistErrorKind::ExpectedSecret)?;
    let (secret, rest) = quoted(rest)?;
    if !rest.is_empty() {
        require_separator(rest)?;
    }
    let secret = Secret::parse(&secret)?;
    Ok((user, secret))
}

/// Reads a quoted string's content (the opening quote already consumed) up to
/// its closing quote, unescaping `""`. Returns the content and what follows.
fn quoted(s: &str) -> Result<(String, &str), UserlistErrorKind> {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let end = rest.find('"').ok_or(UserlistErrorKind::Unterminated)?;
        out.push_str(&rest[..end]);
        let after = &rest[end + 1..];
        match after.strip_prefix('"') {
            Some(more) => {
                out.push('"');
                rest = more;
            }
            None => return Ok((out, after)),
        }
    }
}

/// After a closing quote: at least one whitespace character, then the rest.
fn require_separator(s: &str) -> Result<&str, UserlistErrorKind> {
    let trimmed = s.trim_start();
    if trimmed.len() == s.len() {
        // Nothing was skipped: either end of line or text glued to the quote.
        return Err(if s.is_empty() {
            UserlistErrorKind::ExpectedSecret
        } else {
            UserlistErrorKind::TrailingText
        });
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_comments_and_escapes() {
        let md5 = "md520eb1b22a92b5c573dc1eb4331fc49ee";
        let scram = postgres_protocol::password::scram_sha_256(b"pw");
        let text = format!(
            "\u{feff}; PgBouncer comment\n\
             # hash comment\n\
             \n   \t\n\
             \"alice\" \"hunter2\"\n\
             \"bob\"\t\"{md5}\"\r\n\
             \"we\"\"ird\" \"pa\"\"ss\"\"\" extra ignored column\n\
             \"carol\" \"{scram}\"\n\
             \x20 \"dave\"   \"\"\n"
        );
        let users = parse_userlist(&text).unwrap();
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "we\"ird", "carol", "dave"]);
        assert_eq!(users[0].1, Secret::Plain("hunter2".into()));
        assert_eq!(users[1].1, Secret::Md5(md5.into()));
        assert_eq!(users[2].1, Secret::Plain("pa\"ss\"".into()));
        assert!(matches!(users[3].1, Secret::Scram(_)));
        assert_eq!(users[4].1, Secret::Plain(String::new()));
    }

    #[test]
    fn later_duplicate_wins_in_a_map() {
        let users = parse_userlist("\"a\" \"1\"\n\"a\" \"2\"\n").unwrap();
        let map: std::collections::HashMap<_, _> = users.into_iter().collect();
        assert_eq!(map["a"], Secret::Plain("2".into()));
    }

    #[test]
    fn bad_lines_report_their_number() {
        let cases: &[(&str, usize, UserlistErrorKind)] = &[
            (
                "\"a\" \"b\"\nalice hunter2\n",
                2,
                UserlistErrorKind::ExpectedUser,
            ),
            ("; c\n\n\"alice\"\n", 3, UserlistErrorKind::ExpectedSecret),
            ("\"alice\" hunter2", 1, UserlistErrorKind::ExpectedSecret),
            ("\"alice\"\"", 1, UserlistErrorKind::Unterminated),
            // `"alice"""` is the user `alice"` with nothing after it.
            ("\"alice\"\"\"", 1, UserlistErrorKind::ExpectedSecret),
            ("\"alice\" \"hunter2", 1, UserlistErrorKind::Unterminated),
            ("\"alice", 1, UserlistErrorKind::Unterminated),
            ("\"alice\"x \"y\"", 1, UserlistErrorKind::TrailingText),
            ("\"alice\" \"y\"junk", 1, UserlistErrorKind::TrailingText),
            ("\"\" \"y\"", 1, UserlistErrorKind::EmptyUser),
            // A quoted string may not span lines.
            (
                "\"alice\" \"multi\nline\"",
                1,
                UserlistErrorKind::Unterminated,
            ),
        ];
        for (text, line, kind) in cases {
            let err = parse_userlist(text).unwrap_err();
            assert_eq!((err.line, &err.kind), (*line, kind), "{text:?}");
        }
        let err = parse_userlist("\n\"alice\" \"SCRAM-SHA-256$4096:broken\"").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(matches!(err.kind, UserlistErrorKind::Secret(_)));
        assert!(err.to_string().starts_with("auth_file line 2: "), "{err}");
    }

    #[test]
    fn every_truncation_is_ok_or_err_never_panics() {
        let text = "\"we\"\"ird\" \"pa\"\"ss\" x\n; c\n\"b\" \"c\"\n";
        for end in 0..=text.len() {
            if text.is_char_boundary(end) {
                let _ = parse_userlist(&text[..end]);
            }
        }
        assert!(parse_userlist("\"we\"\"ird\" \"pa\"\"s").is_err());
    }
}
