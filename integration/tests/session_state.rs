//! Session state in transaction mode, against a real PostgreSQL: what a
//! client's transactions leave on a server besides reported parameters.
//! `search_path` and `role` follow the client to whichever server runs its
//! next transaction (and never leak to another client); with
//! `pin_session_state`, temporary tables, session advisory locks and
//! LISTEN keep the client on its server until they are gone, counted in
//! SHOW POOLS and /metrics, and are cleared before the server is pooled
//! when the client leaves.

mod common;

use std::time::Duration;

use causeway_integration::{eventually, http_get};
use common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

const WAIT: Duration = Duration::from_secs(30);

const USERS: &[(&str, &str)] = &[("app", "app_pw"), ("admin", "admin_pw")];

/// Transaction mode over a pool of 2, with `top` settings.
async fn causeway(top: &str) -> Cw {
    let c = cluster().await;
    start_cw(
        USERS,
        &(base_toml(
            "transaction",
            &format!("admin_users = [\"admin\"]\ndefault_pool_size = 2\n{top}"),
        ) + &db_entry(c, "app", "")),
    )
    .await
}

async fn one(c: &Client, sql: &str) -> String {
    simple_one(c, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", msg(&e)))
}

/// SHOW POOLS cl_pinned of the app pool.
async fn pinned(cw: &Cw) -> i64 {
    let a = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    for m in a.simple_query("SHOW POOLS").await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            if r.get("user") == Some("app") {
                return r.get("cl_pinned").unwrap().parse().unwrap();
            }
        }
    }
    panic!("no app pool in SHOW POOLS");
}

/// `SET search_path` and `SET ROLE` are carried to the server of the
/// client's next transaction (a second client holds the first server
/// meanwhile), undone by RESET, not kept after SET LOCAL, and never seen
/// by another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_and_role_follow_the_client() {
    psql_primary(
        "DROP SCHEMA IF EXISTS state_sp CASCADE; CREATE SCHEMA state_sp AUTHORIZATION app;\n\
         CREATE TABLE state_sp.where_am_i AS SELECT 'state_sp'::text AS v; ALTER TABLE state_sp.where_am_i OWNER TO app;\n\
         DO $$ BEGIN CREATE ROLE state_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
         GRANT state_reader TO app;\n\
         GRANT USAGE ON SCHEMA state_sp TO state_reader; GRANT SELECT ON state_sp.where_am_i TO state_reader;",
    )
    .await;
    let cw = causeway("").await;
    let (a, holder) = (cw.app().await, cw.app().await);
    one(&a, "SET search_path = state_sp, public").await;
    one(&a, "SET ROLE state_reader").await;
    // The next transaction runs on the other server.
    holder.batch_execute("BEGIN").await.unwrap();
    assert_eq!(one(&a, "SELECT v FROM where_am_i").await, "state_sp");
    assert_eq!(one(&a, "SELECT current_user").await, "state_reader");
    holder.batch_execute("COMMIT").await.unwrap();
    // Another client, on either server: none of it.
    let b = cw.app().await;
    for _ in 0..2 {
        assert_eq!(one(&b, "SELECT current_user").await, "app");
        assert_eq!(one(&b, "SHOW search_path").await, "\"$user\", public");
        let _in_use = b.batch_execute("BEGIN").await;
        assert_eq!(one(&a, "SELECT current_user").await, "state_reader");
        b.batch_execute("COMMIT").await.unwrap();
    }
    one(&a, "RESET ROLE").await;
    assert_eq!(one(&a, "SELECT current_user").await, "app");
    one(&a, "BEGIN; SET LOCAL search_path = public; COMMIT").await;
    assert_eq!(one(&a, "SHOW search_path").await, "state_sp, public");
    one(&a, "RESET search_path").await;
    holder.batch_execute("BEGIN").await.unwrap();
    assert_eq!(one(&a, "SHOW search_path").await, "\"$user\", public");
    holder.batch_execute("COMMIT").await.unwrap();
    cw.stop().await;
}

/// With pin_session_state: a temporary table, a session advisory lock and
/// LISTEN keep the client on its server (and are counted) until DISCARD
/// TEMP, the unlock, UNLISTEN *; a client that leaves while pinned has its
/// server reset before anyone else gets it. Without the setting, the
/// client is not pinned (PgBouncer's behaviour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_session_state_keeps_state_with_its_client() {
    let cw = causeway("pin_session_state = true").await;
    let (a, holder) = (cw.app().await, cw.app().await);
    let server = one(&a, "SELECT pg_backend_pid()").await;
    one(&a, "CREATE TEMP TABLE pinned_tt (x int)").await;
    assert_eq!(pinned(&cw).await, 1);
    let (_, metrics) =
        tokio::task::block_in_place(|| http_get(cw.metrics_port().unwrap(), "/metrics"));
    assert!(
        metrics.contains("causeway_client_pinned{database=\"app\",user=\"app\"} 1"),
        "{metrics}"
    );
    // The holder takes the other server; `a` stays on its own.
    holder.batch_execute("BEGIN").await.unwrap();
    assert_eq!(one(&a, "SELECT count(*) FROM pinned_tt").await, "0");
    assert_eq!(one(&a, "SELECT pg_backend_pid()").await, server);
    holder.batch_execute("COMMIT").await.unwrap();
    one(&a, "DISCARD TEMP").await;
    assert_eq!(pinned(&cw).await, 0);

    one(&a, "SELECT pg_advisory_lock(4242)").await;
    assert_eq!(pinned(&cw).await, 1);
    assert_eq!(one(&holder, "SELECT pg_try_advisory_lock(4242)").await, "f");
    one(&a, "SELECT pg_advisory_unlock(4242)").await;
    assert_eq!(pinned(&cw).await, 0);

    one(&a, "LISTEN pinned_channel").await;
    assert_eq!(pinned(&cw).await, 1);
    one(&a, "UNLISTEN *").await;
    assert_eq!(pinned(&cw).await, 0);

    // Leaving while pinned: the server is reset, then pooled.
    let server = one(&a, "SELECT pg_backend_pid()").await;
    one(&a, "CREATE TEMP TABLE left_behind (x int)").await;
    drop(a);
    eventually(WAIT, "pin released", || async { pinned(&cw).await == 0 }).await;
    // The next client gets it (the most recently pooled): clean.
    let b = cw.app().await;
    assert_eq!(one(&b, "SELECT pg_backend_pid()").await, server, "LIFO");
    assert_eq!(
        one(
            &b,
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
        )
        .await,
        "0",
        "the leaving client's temporary table"
    );
    cw.stop().await;

    // Off (the default): not pinned.
    let cw = causeway("").await;
    let a = cw.app().await;
    one(&a, "CREATE TEMP TABLE not_pinned (x int)").await;
    assert_eq!(pinned(&cw).await, 0);
    cw.stop().await;
}
