//! PgBouncer's value types: integers as C's `strtol(v, 0)` reads them
//! (`0x` hex, leading-`0` octal), booleans as integers (non-zero is on),
//! seconds as non-negative decimals, lists separated by commas or blanks,
//! and enumerations matched case-insensitively.

/// An integer the way PgBouncer's `CF_INT` reads it.
pub fn int(v: &str) -> Result<i64, String> {
    let t = v.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or(t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    let n = i64::from_str_radix(digits, radix)
        .ok()
        .filter(|_| !digits.starts_with(['+', '-']))
        .ok_or_else(|| format!("`{v}` is not an integer"))?;
    Ok(if neg { -n } else { n })
}

/// A connection-string integer (`atoi`, but strict: junk is an error).
pub fn decimal(v: &str) -> Result<i64, String> {
    v.parse().map_err(|_| format!("`{v}` is not an integer"))
}

/// Puts a connection-string integer into `t` unless it is below `min`,
/// which is how PgBouncer spells "not set, inherit".
pub fn insert_unless_below(
    t: &mut toml::Table,
    key: &str,
    v: &str,
    min: i64,
) -> Result<(), String> {
    let n = decimal(v)?;
    if n >= min {
        t.insert(key.into(), toml::Value::Integer(n));
    }
    Ok(())
}

/// A PgBouncer boolean: an integer, non-zero is on.
pub fn boolean(v: &str) -> Result<bool, String> {
    int(v)
        .map(|n| n != 0)
        .map_err(|_| format!("`{v}` is not 0 or 1"))
}

/// Seconds (`CF_TIME_USEC`): a non-negative decimal number.
pub fn seconds(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("`{v}` is not a number of seconds >= 0")),
    }
}

/// A list such as `admin_users = alice, bob`.
pub fn list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One of `choices`, case-insensitively; returns the canonical spelling.
pub fn lookup(v: &str, choices: &[&'static str]) -> Result<&'static str, String> {
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(v))
        .copied()
        .ok_or_else(|| format!("`{v}` is not one of {}", choices.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_strtol() {
        assert_eq!(int("6432"), Ok(6432));
        assert_eq!(int("0777"), Ok(0o777));
        assert_eq!(int("0x1F"), Ok(31));
        assert_eq!(int("-1"), Ok(-1));
        assert_eq!(int("+5"), Ok(5));
        assert_eq!(int("0"), Ok(0));
        for bad in ["", "yes", "10 ; comment", "1.5", "--1", "0x", "08"] {
            assert!(int(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans_are_integers() {
        assert_eq!(boolean("1"), Ok(true));
        assert_eq!(boolean("2"), Ok(true));
        assert_eq!(boolean("0"), Ok(false));
        assert!(boolean("yes").is_err());
        assert!(boolean("on").is_err());
    }

    #[test]
    fn seconds_and_lists_and_lookups() {
        assert_eq!(seconds("1.5"), Ok(1.5));
        assert_eq!(seconds("1e1"), Ok(10.0));
        assert!(seconds("-1").is_err());
        assert!(seconds("inf").is_err());
        assert!(seconds("5s").is_err());
        assert_eq!(list(" a, b  c,,"), vec!["a", "b", "c"]);
        assert!(list("").is_empty());
        assert_eq!(
            lookup("Transaction", &["session", "transaction"]),
            Ok("transaction")
        );
        assert!(lookup("tx", &["session"]).is_err());
    }
}
