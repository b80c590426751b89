//! The connection strings of `[databases]`, `[users]` and `[peers]` lines:
//! `key=value` pairs separated by spaces, a value in single quotes when it
//! holds spaces (`''` for a quote). As PgBouncer's loader: only the space
//! character separates, and an empty value is an error.

/// The pairs in order; an error says what is wrong (never echoing a value,
/// which may be a password).
pub fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches(' ');
    while !rest.is_empty() {
        let end = rest.find(['=', ' ']).unwrap_or(rest.len());
        let key = &rest[..end];
        rest = rest[end..].trim_start_matches(' ');
        let Some(after_eq) = rest.strip_prefix('=') else {
            // The word may be the second half of an unquoted password.
            return Err(match out.last() {
                Some((k, _)) => format!(
                    "expected `key=value` after parameter `{k}` (a value with spaces needs single quotes)"
                ),
                None => "expected `key=value`".into(),
            });
        };
        if key.is_empty() {
            return Err("`=` without a parameter name".into());
        }
        let (value, after) = value(after_eq.trim_start_matches(' '))
            .map_err(|e| format!("parameter `{key}`: {e}"))?;
        out.push((key.to_string(), value));
        rest = after.trim_start_matches(' ');
    }
    Ok(out)
}

/// One value, quoted or not, and what follows it.
fn value(s: &str) -> Result<(String, &str), String> {
    let Some(quoted) = s.strip_prefix('\'') else {
        let end = s.find(' ').unwrap_or(s.len());
        if end == 0 {
            return Err("empty value".into());
        }
        return Ok((s[..end].to_string(), &s[end..]));
    };
    let mut v = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            v.push(c);
            continue;
        }
        if quoted[i + 1..].starts_with('\'') {
            v.push('\'');
            chars.next();
            continue;
        }
        let after = &quoted[i + 1..];
        if !after.is_empty() && !after.starts_with(' ') {
            return Err("a space must follow the closing quote".into());
        }
        if v.is_empty() {
            return Err("empty value".into());
        }
        return Ok((v, after));
    }
    Err("quoted value without closing `'`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        pairs(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn plain_and_quoted_values() {
        assert_eq!(
            p("host=h1,h2  port=5433 connect_query='SELECT ''a b''' dbname = x"),
            vec![
                ("host".into(), "h1,h2".into()),
                ("port".into(), "5433".into()),
                ("connect_query".into(), "SELECT 'a b'".into()),
                ("dbname".into(), "x".into()),
            ]
        );
        assert!(p("").is_empty());
        assert!(p("   ").is_empty());
        // Only the space separates: a tab is part of the value.
        assert_eq!(p("a=x\ty"), vec![("a".into(), "x\ty".into())]);
    }

    #[test]
    fn errors_never_echo_values() {
        for (s, want) in [
            ("host", "expected `key=value`"),
            ("=x", "without a parameter name"),
            ("password=", "empty value"),
            ("password=''", "empty value"),
            ("password='s3cret", "without closing"),
            ("password='s3cret'x", "space must follow"),
            ("password=my s3cret", "after parameter `password`"),
        ] {
            let e = pairs(s).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
            assert!(!e.contains("s3cret"), "{s:?} echoed the value: {e}");
        }
    }
}
