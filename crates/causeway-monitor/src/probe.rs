//! One probe of one server: a single query over a tiny deadpool-postgres
//! pool.
//!
//! The query (one round trip; the statement is prepared once per
//! connection):
//!
//! ```sql
//! SELECT pg_is_in_recovery(),
//!        CASE WHEN pg_is_in_recovery() THEN NULL
//!             ELSE pg_current_wal_insert_lsn()::text END,
//!        pg_last_wal_receive_lsn()::text,
//!        pg_last_wal_replay_lsn()::text,
//!        pg_last_xact_replay_timestamp(),
//!        CASE WHEN pg_is_in_recovery()
//!             THEN pg_get_wal_replay_pause_state() <> 'not paused'
//!             ELSE false END,
//!        <timeline>,
//!        (SELECT system_identifier FROM pg_control_system()),
//!        current_setting('wal_block_size')::int8
//! ```
//!
//! * Pause: `pause requested` counts as paused (no further record is
//!   applied once it is requested).
//! * Timeline: on a primary, the first 8 hex digits of
//!   `pg_walfile_name(pg_current_wal_insert_lsn())`, which is the WAL
//!   insertion timeline and so changes the moment a promotion ends
//!   (`pg_control_checkpoint()` only changes at the next checkpoint). On a
//!   standby, `received_tli` from `pg_stat_wal_receiver` (visible only to
//!   superusers and `pg_read_all_stats`), else the last checkpoint's
//!   `timeline_id` from `pg_control_checkpoint()` (may lag). Only the
//!   primary's timeline feeds the generation.
//! * If the probe user may not call `pg_control_*()` or the server predates
//!   `pg_get_wal_replay_pause_state()` (PostgreSQL < 14), SQLSTATE 42501 or
//!   42883 switches this server to a reduced query: `pg_is_wal_replay_paused()`,
//!   standby timeline from `pg_stat_wal_receiver` only, no system
//!   identifier.

use std::time::{Duration, Instant, SystemTime};

use causeway_routing::lsn::Lsn;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::time::timeout;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::config::ServerAddr;

const FULL_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END, \
    pg_last_wal_receive_lsn()::text, \
    pg_last_wal_replay_lsn()::text, \
    pg_last_xact_replay_timestamp(), \
    CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' ELSE false END, \
    CASE WHEN pg_is_in_recovery() \
         THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                       (SELECT timeline_id FROM pg_control_checkpoint()))::int8 \
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8 END, \
    (SELECT system_identifier FROM pg_control_system()), \
    current_setting('wal_block_size')::int8";

const BASIC_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END, \
    pg_last_wal_receive_lsn()::text, \
    pg_last_wal_replay_lsn()::text, \
    pg_last_xact_replay_timestamp(), \
    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
    CASE WHEN pg_is_in_recovery() \
         THEN (SELECT received_tli FROM pg_stat_wal_receiver)::int8 \
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8 END, \
    NULL::int8, \
    current_setting('wal_block_size')::int8";

/// What one successful probe returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeData {
    pub in_recovery: bool,
    pub insert_lsn: Option<Lsn>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub replay_timestamp: Option<SystemTime>,
    pub paused: bool,
    pub timeline: Option<u32>,
    pub system_identifier: Option<u64>,
    pub wal_block_size: Option<u64>,
}

/// The position query (see the `positions` module): one round trip.
const POSITION_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
         ELSE pg_current_wal_insert_lsn() END::text, \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn() END::text, \
    CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8 END";

/// Commits a transaction that wrote WAL with a local synchronous commit:
/// every WAL record before it is flushed (and so sent to standbys) when it
/// returns. One xid and a few bytes of WAL.
const FLUSH_QUERY: &str = "SELECT set_config('synchronous_commit', 'local', true), \
    pg_logical_emit_message(true, 'causeway', 'flush')";

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeError {
    pub message: String,
    /// The server refused the monitor's login (wrong or missing password,
    /// no such role or database, pg_hba.conf): a configuration problem,
    /// not a server failure.
    pub login: bool,
}

impl From<&str> for ProbeError {
    fn from(s: &str) -> Self {
        ProbeError {
            message: s.to_string(),
            login: false,
        }
    }
}

impl From<String> for ProbeError {
    fn from(message: String) -> Self {
        ProbeError {
            message,
            login: false,
        }
    }
}

/// One answer of the position query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PositionData {
    pub in_recovery: bool,
    pub lsn: Lsn,
    pub flush: Option<Lsn>,
    /// Primary only: the timeline it inserts WAL on.
    pub timeline: Option<u32>,
}

/// The probe connection pool of one server.
pub(crate) struct Prober {
    pool: Pool,
    basic: bool,
    step_timeout: Duration,
    label: String,
    user: String,
}

impl Prober {
    pub fn new(addr: &ServerAddr, probe_timeout: Duration) -> Result<Prober, String> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&addr.host)
            .port(addr.port)
            .user(&addr.user)
            .dbname(&addr.dbname)
            .application_name("causeway-monitor")
            .connect_timeout(probe_timeout)
            .options(format!(
                "-c statement_timeout={}",
                probe_timeout.as_millis().max(1)
            ));
        if let Some(pw) = &addr.password {
            pg.password(pw);
        }
        pg.ssl_mode(crate::tls::pg_ssl_mode(&addr.tls, &addr.host));
        let mgr = Manager::from_config(
            pg,
            crate::tls::MakeRustls(addr.tls.clone()),
            ManagerConfig {
                // The probe itself is the liveness test.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(probe_timeout))
            .create_timeout(Some(probe_timeout))
            .recycle_timeout(Some(probe_timeout))
            .build()
            .map_err(|e| format!("probe pool for {}: {e}", addr.label()))?;
        Ok(Prober {
            pool,
            basic: false,
            step_timeout: probe_timeout,
            label: addr.label(),
            user: addr.user.clone(),
        })
    }

    /// Runs the probe query; any failure or timeout is an `Err` with a
    /// message, and the connection is discarded.
    pub async fn probe(&mut self) -> Result<ProbeData, ProbeError> {
        let obj = self.connection().await?;
        let deadline = Instant::now() + self.step_timeout;
        loop {
            let sql = if self.basic { BASIC_QUERY } else { FULL_QUERY };
            let left = deadline.saturating_duration_since(Instant::now());
            let res = timeout(left, async {
                let stmt = obj.prepare_cached(sql).await?;
                obj.query_one(&stmt, &[]).await
            })
            .await;
            match res {
                Ok(Ok(row)) => {
                    return parse(&row)
                        .inspect_err(|_| {
                            drop(Object::take(obj));
                        })
                        .map_err(ProbeError::from)
                }
                Ok(Err(e)) => {
                    let code = e.code().cloned();
                    if !self.basic
                        && matches!(
                            code,
                            Some(SqlState::INSUFFICIENT_PRIVILEGE)
                                | Some(SqlState::UNDEFINED_FUNCTION)
                        )
                    {
                        tracing::warn!(
                            server = %self.label,
                            error = %e,
                            "monitor: full probe query refused, using the reduced one \
                             (no system identifier; standby timeline needs pg_read_all_stats)"
                        );
                        self.basic = true;
                        continue;
                    }
                    drop(Object::take(obj));
                    return Err(format!("probe query: {}", describe(&e)).into());
                }
                Err(_) => {
                    drop(Object::take(obj));
                    return Err(
                        format!("probe query: timed out after {:?}", self.step_timeout).into(),
                    );
                }
            }
        }
    }

    /// The pooled probe connection, connecting if needed.
    async fn connection(&self) -> Result<Object, ProbeError> {
        match timeout(self.step_timeout, self.pool.get()).await {
            Ok(Ok(obj)) => Ok(obj),
            Ok(Err(e)) => {
                let login = match &e {
                    deadpool_postgres::PoolError::Backend(be) => is_login_refusal(be),
                    _ => false,
                };
                let message = if login {
                    format!(
                        "cannot log in as \"{}\": {}",
                        self.user,
                        match &e {
                            deadpool_postgres::PoolError::Backend(be) => describe(be),
                            e => e.to_string(),
                        }
                    )
                } else {
                    format!("connect: {e}")
                };
                Err(ProbeError { message, login })
            }
            Err(_) => Err(format!("connect: timed out after {:?}", self.step_timeout).into()),
        }
    }

    /// Runs the position query (replay LSN on a standby, insert and flush
    /// LSN on a primary).
    pub async fn position(&mut self) -> Result<PositionData, ProbeError> {
        let obj = self.connection().await?;
        let res = timeout(self.step_timeout, async {
            let stmt = obj.prepare_cached(POSITION_QUERY).await?;
            obj.query_one(&stmt, &[]).await
        })
        .await;
        let row = match res {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                drop(Object::take(obj));
                return Err(format!("position query: {}", describe(&e)).into());
            }
            Err(_) => {
                drop(Object::take(obj));
                return Err("position query: timed out".into());
            }
        };
        let in_recovery: bool = row.try_get(0).map_err(|e| format!("column 0: {e}"))?;
        let position = lsn(&row, 1)?.ok_or("position query: no position")?;
        let timeline: Option<i64> = row.try_get(3).map_err(|e| format!("column 3: {e}"))?;
        Ok(PositionData {
            in_recovery,
            lsn: position,
            flush: lsn(&row, 2)?,
            timeline: timeline.and_then(|t| u32::try_from(t).ok()),
        })
    }

    /// Forces a WAL flush on a primary (see [`FLUSH_QUERY`]). `Err(true)`:
    /// the server refused it (not permitted, or not a primary): do not ask
    /// again.
    pub async fn force_flush(&mut self) -> Result<(), (ProbeError, bool)> {
        let obj = self.connection().await.map_err(|e| (e, false))?;
        let res = timeout(self.step_timeout, obj.simple_query(FLUSH_QUERY)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let refused = e.code().is_some();
                if !refused {
                    drop(Object::take(obj));
                }
                Err((
                    format!("forced WAL flush: {}", describe(&e)).into(),
                    refused,
                ))
            }
            Err(_) => {
                drop(Object::take(obj));
                Err(("forced WAL flush: timed out".into(), false))
            }
        }
    }
}

/// The server refused the login itself (as opposed to being down).
fn is_login_refusal(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // 28xxx: invalid authorization (password, role, pg_hba.conf);
        // 3D000: no such database.
        Some(c) => c.code().starts_with("28") || c.code() == "3D000",
        // tokio-postgres' own checks: the server asked for a password and
        // none is configured, or the authentication exchange failed.
        None => {
            let cause = std::error::Error::source(e).map(|c| c.to_string());
            cause.is_some_and(|c| c.contains("password missing"))
                || e.to_string() == "authentication error"
        }
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

fn lsn(row: &Row, i: usize) -> Result<Option<Lsn>, String> {
    let text: Option<String> = row.try_get(i).map_err(|e| format!("column {i}: {e}"))?;
    text.map(|t| t.parse::<Lsn>().map_err(|e| e.to_string()))
        .transpose()
}

fn parse(row: &Row) -> Result<ProbeData, String> {
    let get_err = |i: usize, e: tokio_postgres::Error| format!("column {i}: {e}");
    let timeline: Option<i64> = row.try_get(6).map_err(|e| get_err(6, e))?;
    let sysid: Option<i64> = row.try_get(7).map_err(|e| get_err(7, e))?;
    let block: Option<i64> = row.try_get(8).map_err(|e| get_err(8, e))?;
    Ok(ProbeData {
        in_recovery: row.try_get(0).map_err(|e| get_err(0, e))?,
        insert_lsn: lsn(row, 1)?,
        receive_lsn: lsn(row, 2)?,
        replay_lsn: lsn(row, 3)?,
        replay_timestamp: row.try_get(4).map_err(|e| get_err(4, e))?,
        paused: row
            .try_get::<_, Option<bool>>(5)
            .map_err(|e| get_err(5, e))?
            .unwrap_or(false),
        timeline: timeline.and_then(|t| u32::try_from(t).ok()),
        // int8 on the wire; the value is an unsigned 64-bit number.
        system_identifier: sysid.map(|s| s as u64),
        wal_block_size: block.and_then(|b| u64::try_from(b).ok()).filter(|&b| b > 0),
    })
}
