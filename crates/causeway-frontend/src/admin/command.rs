//! Parsing an admin console command (PgBouncer's grammar, case-insensitive).

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Show(String),
    Pause(Option<String>),
    Resume(Option<String>),
    Disable(String),
    Enable(String),
    Reconnect(Option<String>),
    Kill(Option<String>),
    KillClient(u64),
    Reload,
    WaitClose(Option<String>),
    Shutdown(ShutdownMode),
    Set {
        key: String,
        value: String,
    },
    /// Empty query (just `;`).
    Empty,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ShutdownMode {
    Immediate,
    WaitForServers,
    WaitForClients,
}

pub fn parse(sql: &str) -> Result<Command, String> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let arg = words.next().map(unquote);
    let extra = words.next();
    let one = |arg: Option<String>| -> Result<String, String> {
        arg.ok_or_else(|| format!("{verb} needs an argument"))
    };
    let cmd = match verb.as_str() {
        "SHOW" => Command::Show(one(arg)?.to_ascii_uppercase()),
        "PAUSE" => Command::Pause(arg),
        "RESUME" => Command::Resume(arg),
        "DISABLE" => Command::Disable(one(arg)?),
        "ENABLE" => Command::Enable(one(arg)?),
        "RECONNECT" => Command::Reconnect(arg),
        "KILL" => Command::Kill(arg),
        "KILL_CLIENT" => Command::KillClient(
            one(arg)?
                .parse()
                .map_err(|_| "KILL_CLIENT needs a numeric client id".to_string())?,
        ),
        "RELOAD" => Command::Reload,
        "WAIT_CLOSE" => Command::WaitClose(arg),
        "SHUTDOWN" => Command::Shutdown(match arg.map(|a| a.to_ascii_uppercase()).as_deref() {
            None => ShutdownMode::Immediate,
            Some("WAIT_FOR_SERVERS") => ShutdownMode::WaitForServers,
            Some("WAIT_FOR_CLIENTS") => ShutdownMode::WaitForClients,
            Some(o) => return Err(format!("unknown SHUTDOWN mode {o}")),
        }),
        "SET" => {
            // SET key = value  /  SET key TO value
            let rest = text[3..].trim();
            let (key, value) = rest
                .split_once('=')
                .or_else(|| {
                    let lower = rest.to_ascii_lowercase();
                    lower.find(" to ").map(|i| (&rest[..i], &rest[i + 4..]))
                })
                .ok_or("SET expects key = value")?;
            return Ok(Command::Set {
                key: key.trim().to_ascii_lowercase(),
                value: unquote(value.trim()),
            });
        }
        _ => return Err(format!("unknown command: {verb}")),
    };
    if extra.is_some() && !matches!(cmd, Command::Set { .. }) {
        return Err(format!("too many arguments to {verb}"));
    }
    Ok(cmd)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_commands() {
        assert_eq!(parse("show pools;").unwrap(), Command::Show("POOLS".into()));
        assert_eq!(parse("PAUSE").unwrap(), Command::Pause(None));
        assert_eq!(
            parse("pause app").unwrap(),
            Command::Pause(Some("app".into()))
        );
        assert_eq!(parse("KILL_CLIENT 42").unwrap(), Command::KillClient(42));
        assert!(parse("KILL_CLIENT x").is_err());
        assert_eq!(
            parse("SHUTDOWN WAIT_FOR_CLIENTS").unwrap(),
            Command::Shutdown(ShutdownMode::WaitForClients)
        );
        assert_eq!(
            parse("set default_pool_size = '7'").unwrap(),
            Command::Set {
                key: "default_pool_size".into(),
                value: "7".into()
            }
        );
        assert_eq!(
            parse("SET query_timeout TO 5").unwrap(),
            Command::Set {
                key: "query_timeout".into(),
                value: "5".into()
            }
        );
        assert_eq!(parse(" ; ").unwrap(), Command::Empty);
        assert!(parse("DROP TABLE x").is_err());
        assert!(parse("SHOW").is_err());
        assert!(parse("PAUSE a b").is_err());
    }
}
