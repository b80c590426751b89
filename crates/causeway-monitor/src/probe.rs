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

/// The probe connection pool of one server.
pub(crate) struct Prober {
    pool: Pool,
    basic: bool,
    step_timeout: Duration,
    label: String,
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
        })
    }

    /// Runs the probe query; any failure or timeout is an `Err` with a
    /// message, and the connection is discarded.
    pub async fn probe(&mut self) -> Result<ProbeData, String> {
        let obj = match timeout(self.step_timeout, self.pool.get()).await {
            Ok(Ok(obj)) => obj,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err(format!("connect: timed out after {:?}", self.step_timeout)),
        };
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
                    return parse(&row).inspect_err(|_| {
                        drop(Object::take(obj));
                    })
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
                    return Err(format!("probe query: {}", describe(&e)));
                }
                Err(_) => {
                    drop(Object::take(obj));
                    return Err(format!(
                        "probe query: timed out after {:?}",
                        self.step_timeout
                    ));
                }
            }
        }
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
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
