//! Session parameters that must follow a client from server to server.

use causeway_config::Config;
use causeway_pool::{ParamSet, Pool, ServerConn, ServerError};
use causeway_protocol::backend;

use super::lease::Acquire;
use super::{Session, State};

/// Connections that die while being set up are replaced this many times.
const SYNC_ATTEMPTS: u32 = 3;

/// PgBouncer's fixed set; `track_extra_parameters` adds to it.
const ALWAYS_TRACKED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

pub fn is_tracked(name: &str, cfg: &Config) -> bool {
    ALWAYS_TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name))
        || cfg
            .track_extra_parameters
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
}

/// The client's expected parameters at login, and the ParameterStatus
/// messages to welcome it with (the server's values, the client's own
/// where it set one at startup, as PostgreSQL would report them).
pub fn initial<K: AsRef<str>, V: AsRef<str>>(
    welcome: &ParamSet,
    startup: &[(K, V)],
    cfg: &Config,
) -> (ParamSet, Vec<(String, String)>) {
    let mut mine = ParamSet::new();
    for (k, v) in welcome.iter() {
        if is_tracked(k, cfg) {
            mine.set(k, v, true);
        }
    }
    for (k, v) in startup {
        let (k, v) = (k.as_ref(), v.as_ref());
        if cfg
            .ignore_startup_parameters
            .iter()
            .any(|i| i.eq_ignore_ascii_case(k))
        {
            continue;
        }
        // As the server will report it (the welcome has no server to ask).
        let v = match k.eq_ignore_ascii_case("client_encoding") {
            true => super::encoding::canonical(v).unwrap_or(v),
            false => v,
        };
        mine.set(k, v, welcome.contains(k));
    }
    let report = welcome
        .iter()
        .map(|(k, v)| (k.to_string(), mine.get(k).unwrap_or(v).to_string()))
        .collect();
    (mine, report)
}

/// Makes `conn` match the client's parameters. Returns the values the
/// server reported back that differ from what the client believes (the
/// server may normalise, e.g. DateStyle 'iso' -> 'ISO, MDY').
pub async fn sync(
    client: &mut ParamSet,
    conn: &mut ServerConn,
) -> Result<Vec<(String, String)>, ServerError> {
    if conn.synced_fp() == client.fingerprint() {
        return Ok(Vec::new());
    }
    let mut news = Vec::new();
    if let Some((sql, names)) = client.sync_sql(conn.params()) {
        // Record what we set before the server reports its own spelling.
        for (k, v) in client.iter() {
            conn.params_mut().set(k, v, false);
        }
        let values = match conn.internal_query(&sql, Some(0)).await {
            Ok(r) => r.rows,
            Err(e) => {
                conn.mark_broken();
                return Err(e);
            }
        };
        conn.params_mut().drop_unreported_except(client);
        // set_config() returns each value as the server keeps it, reported
        // or not (a SET to the value it already had reports nothing).
        for (k, v) in names.iter().zip(values) {
            let Some(v) = v else { continue };
            if client.get(k) != Some(v.as_str()) {
                client.set(k, &v, false);
                conn.params_mut().set(k, &v, false);
                if conn.params().is_reported(k) {
                    news.push((k.clone(), v));
                }
            }
        }
    }
    conn.set_synced_fp(client.fingerprint());
    Ok(news)
}

impl Session {
    /// Applies the client's parameters to a lent connection and tells the
    /// client of values the server spells differently.
    /// Like [`Session::sync_or_replace`], but a pool that cannot replace a
    /// lost connection is left to the caller (`Err(Err(e))`): a read may
    /// go to another server.
    pub(super) async fn synced(
        &mut self,
        conn: ServerConn,
        pool: &Pool,
    ) -> Result<ServerConn, Result<State, causeway_pool::PoolError>> {
        let (conn, news) = self.sync_or_lose(conn, pool).await?;
        for (k, v) in news {
            backend::write_parameter_status(&mut self.client.out, &k, &v);
        }
        Ok(conn)
    }

    /// Applies the client's parameters to `conn`; returns it with the
    /// values the server reported differently. A connection whose backend
    /// went away after the pool's check is replaced by another (Causeway's
    /// own SETs are safe to run again): the client never pays for a dead
    /// pooled connection. A value the server refuses fails the session with
    /// the server's own error, as it would fail a direct login.
    pub(super) async fn sync_or_replace(
        &mut self,
        conn: ServerConn,
        pool: &Pool,
    ) -> Result<(ServerConn, Vec<(String, String)>), State> {
        match self.sync_or_lose(conn, pool).await {
            Ok(r) => Ok(r),
            Err(Ok(closed)) => Err(closed),
            Err(Err(e)) => {
                self.client.fatal(e.sqlstate(), &e.to_string()).await;
                Err(State::Closed("no server connection"))
            }
        }
    }

    async fn sync_or_lose(
        &mut self,
        conn: ServerConn,
        pool: &Pool,
    ) -> Result<(ServerConn, Vec<(String, String)>), Result<State, causeway_pool::PoolError>> {
        let mut conn = conn;
        let mut attempt = 1;
        loop {
            match sync(&mut self.params, &mut conn).await {
                Ok(news) => return Ok((conn, news)),
                Err(ServerError::Io(e)) if attempt < SYNC_ATTEMPTS => {
                    tracing::info!(client = %self.client.peer, error = %e, "server connection lost while applying session parameters; taking another");
                    drop(conn);
                    attempt += 1;
                    conn = match self.acquire(pool).await {
                        Ok(c) => c,
                        Err(Acquire::Closed(why)) => return Err(Ok(State::Closed(why))),
                        Err(Acquire::Failed(e)) => return Err(Err(e)),
                    };
                }
                Err(ServerError::Query { code, message }) => {
                    self.client.fatal(&code, &message).await;
                    return Err(Ok(State::Closed("parameter refused by the server")));
                }
                Err(e) => {
                    self.client
                        .fatal(
                            e.sqlstate(),
                            &format!("could not apply session parameters: {e}"),
                        )
                        .await;
                    return Err(Ok(State::Closed("parameter sync failed")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_uses_client_values_for_tracked_params() {
        let cfg = Config::default();
        let mut w = ParamSet::new();
        w.set("TimeZone", "UTC", true);
        w.set("server_version", "15.18", true);
        w.set("IntervalStyle", "postgres", true);
        let startup = vec![
            ("TimeZone".to_string(), "Asia/Tokyo".to_string()),
            ("search_path".to_string(), "s1".to_string()),
            ("client_encoding".to_string(), "utf-8".to_string()),
        ];
        let (mine, report) = initial(&w, &startup, &cfg);
        assert_eq!(mine.get("timezone"), Some("Asia/Tokyo"));
        assert_eq!(mine.get("search_path"), Some("s1"));
        assert_eq!(mine.get("client_encoding"), Some("UTF8"), "canonical");
        assert_eq!(
            mine.get("intervalstyle"),
            Some("postgres"),
            "track_extra_parameters default"
        );
        assert!(!mine.contains("server_version"));
        assert!(report.contains(&("TimeZone".into(), "Asia/Tokyo".into())));
        assert!(report.contains(&("server_version".into(), "15.18".into())));
        assert!(
            !report.iter().any(|(k, _)| k == "search_path"),
            "not a reported parameter"
        );
    }

    #[test]
    fn ignored_startup_parameters_are_dropped() {
        let cfg = Config {
            ignore_startup_parameters: vec!["extra_float_digits".into()],
            ..Config::default()
        };
        let (mine, _) = initial(&ParamSet::new(), &[("extra_float_digits", "3")], &cfg);
        assert!(!mine.contains("extra_float_digits"));
    }
}
