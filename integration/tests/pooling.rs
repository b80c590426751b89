//! Pooling behaviour a PgBouncer user relies on: query_wait_timeout,
//! cancel keys that cannot hit another client's query, session parameters
//! that follow a client across servers in transaction mode, statement mode,
//! and server_idle_timeout.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio_postgres::{Client, NoTls};

const T: Duration = Duration::from_secs(15);

/// pool_size 1, query_wait_timeout 1 s: while A holds the only server in
/// an open transaction, B's query fails (it does not hang) in about a
/// second; after A commits, a new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_fails_waiting_client() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml(
            "transaction",
            "default_pool_size = 1\nquery_wait_timeout = 1",
        ) + &db_entry(c, "app", "")),
    )
    .await;
    let a = cw.app().await;
    within(T, "A: BEGIN; SELECT 1", a.simple_query("BEGIN; SELECT 1"))
        .await
        .unwrap();
    let b = cw.app().await;
    let start = Instant::now();
    let res = within(
        Duration::from_secs(10),
        "B's query while the pool is exhausted",
        b.simple_query("SELECT 'b ran'"),
    )
    .await;
    let took = start.elapsed();
    let err = match res {
        Ok(m) => panic!("B's query ran although A holds the only server: {m:?}"),
        Err(e) => e,
    };
    eprintln!("B got: {err:?} after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "B waited {took:?} before failing"
    );
    assert!(
        took >= Duration::from_millis(800),
        "B failed after {took:?}, before query_wait_timeout"
    );
    assert!(
        msg(&err).contains("query_wait_timeout") || err.is_closed(),
        "{err:?}"
    );

    within(T, "A: COMMIT", a.simple_query("COMMIT"))
        .await
        .unwrap();
    let d = cw.app().await;
    assert_eq!(
        within(
            T,
            "new client after COMMIT",
            simple_one(&d, "SELECT 'd ran'")
        )
        .await
        .unwrap(),
        "d ran"
    );
    assert_eq!(simple_one(&a, "SELECT 'a again'").await.unwrap(), "a again");
    drop((a, b, d));
    cw.stop().await;
}

/// pool_size 1, so B surely runs on the server A used. A's cancel key, used
/// while A is idle and B runs pg_sleep(2), must not cancel B's query. The
/// same key still cancels A's own running query (otherwise the first check
/// would prove nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cancel_does_not_hit_other_client() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "default_pool_size = 1") + &db_entry(c, "app", "")),
    )
    .await;
    let a = cw.app().await;
    let a_pid = simple_one(&a, "SELECT pg_backend_pid()").await.unwrap();
    let a_token = a.cancel_token();
    let b = cw.app().await;

    let start = Instant::now();
    let b_query = b.simple_query("SELECT pg_backend_pid(), pg_sleep(2)");
    let stale_cancel = async {
        until_running(&[c.primary()], "%pg_backend_pid(), pg_sleep(2)%").await;
        a_token.cancel_query(NoTls).await
    };
    let (b_res, sent) = within(T, "B's pg_sleep(2)", async {
        tokio::join!(b_query, stale_cancel)
    })
    .await;
    let took = start.elapsed();
    let _ = sent; // refusing the request outright is fine too
    let b_msgs = b_res.unwrap_or_else(|e| {
        panic!("B's query was hit by A's stale cancel request: {e:?} after {took:?}")
    });
    let b_pid = match &b_msgs[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
        m => panic!("unexpected {m:?}"),
    };
    assert_eq!(b_pid, a_pid, "pool_size 1: B must have used A's server");
    assert!(took >= Duration::from_secs(2), "{took:?}");

    // Control: the key does work for A's own query.
    let start = Instant::now();
    let a_query = a.simple_query("SELECT pg_sleep(5)");
    let cancel = async {
        until_running(&[c.primary()], "SELECT pg_sleep(5)").await;
        a_token.cancel_query(NoTls).await
    };
    let (a_res, sent) = within(T, "A's pg_sleep(5)", async {
        tokio::join!(a_query, cancel)
    })
    .await;
    sent.unwrap();
    let err = a_res.expect_err("A's own cancel key did not cancel A's query");
    assert_eq!(code(&err).as_deref(), Some("57014"), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop((a, b));
    cw.stop().await;
}

struct Seen {
    pid: String,
    tz: String,
    app: String,
    interval: String,
    datestyle: String,
}

async fn settings(c: &Client) -> Seen {
    let m = within(
        T,
        "settings query",
        c.simple_query(
            "SELECT pg_backend_pid(), current_setting('TimeZone'), \
             current_setting('application_name'), current_setting('IntervalStyle'), \
             current_setting('DateStyle')",
        ),
    )
    .await
    .unwrap();
    let r = m
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let g = |i| r.get(i).unwrap().to_string();
    Seen {
        pid: g(0),
        tz: g(1),
        app: g(2),
        interval: g(3),
        datestyle: g(4),
    }
}

/// Transaction mode, pool_size 3, busy neighbours: A's SETs and B's startup
/// parameters follow each of them onto whatever server runs their next
/// transaction, and never leak to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_parameters_follow_clients_across_servers() {
    let c = cluster().await;
    let direct = direct(c).await;
    let server_tz = simple_one(&direct, "SHOW TimeZone").await.unwrap();
    assert_ne!(server_tz, "Asia/Tokyo");
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "default_pool_size = 3") + &db_entry(c, "app", "")),
    )
    .await;

    let a = cw.app().await;
    within(
        T,
        "A's SETs",
        a.batch_execute(
            "SET TimeZone = 'Asia/Tokyo'; SET application_name = 'a1'; \
             SET IntervalStyle = 'iso_8601'",
        ),
    )
    .await
    .unwrap();
    let b = connect_str(&format!(
        "{} application_name=b1 options='-c DateStyle=German'",
        cw.conn_str("app", Some("app_pw"), "app")
    ))
    .await
    .unwrap();

    // Neighbours keep servers busy so A and B move between servers.
    let stop = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    for _ in 0..3 {
        let n = cw.app().await;
        let stop = stop.clone();
        busy.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                n.simple_query("SELECT pg_sleep(0.01)").await.unwrap();
            }
        }));
    }

    let (mut a_pids, mut b_pids) = (HashSet::new(), HashSet::new());
    // At least 30 rounds, and on until both clients have run on two
    // servers (which server a client gets is up to scheduling).
    let mut rounds = 0;
    for i in 0..300 {
        rounds = i + 1;
        if i >= 30 && a_pids.len() >= 2 && b_pids.len() >= 2 {
            break;
        }
        let sa = settings(&a).await;
        assert_eq!(sa.tz, "Asia/Tokyo", "A's TimeZone lost at round {i}");
        assert_eq!(sa.app, "a1", "A's application_name lost at round {i}");
        assert_eq!(
            sa.interval, "iso_8601",
            "A's IntervalStyle lost at round {i}"
        );
        assert!(
            sa.datestyle.starts_with("ISO"),
            "B's DateStyle leaked to A: {}",
            sa.datestyle
        );
        a_pids.insert(sa.pid);
        let show = within(T, "SHOW TimeZone", simple_one(&a, "SHOW TimeZone"))
            .await
            .unwrap();
        assert_eq!(show, "Asia/Tokyo", "SHOW TimeZone for A at round {i}");

        let sb = settings(&b).await;
        assert_eq!(sb.tz, server_tz, "A's TimeZone leaked to B at round {i}");
        assert_eq!(sb.app, "b1", "B's application_name at round {i}");
        assert_eq!(sb.interval, "postgres", "A's IntervalStyle leaked to B");
        assert!(
            sb.datestyle.starts_with("German"),
            "B's startup DateStyle lost at round {i}: {}",
            sb.datestyle
        );
        b_pids.insert(sb.pid);
        // sleep-ok: paces the rounds so the neighbours take servers between them
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in busy {
        within(T, "busy neighbour", h).await.unwrap();
    }
    eprintln!(
        "A ran on {} servers, B on {} servers over {rounds} rounds",
        a_pids.len(),
        b_pids.len()
    );
    assert!(
        a_pids.len() >= 2 && b_pids.len() >= 2,
        "clients never changed server (A used {a_pids:?}, B used {b_pids:?}): the test proves nothing"
    );
    drop((a, b));
    cw.stop().await;
}

/// Statement mode: autocommit statements work; BEGIN is refused with an
/// error naming statement pooling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_transactions() {
    let c = cluster().await;
    create_role("stmt_u", "stmt_pw", None).await;
    let cw = start_cw(
        &[("stmt_u", "stmt_pw")],
        &(base_toml("statement", "default_pool_size = 2") + &db_entry(c, "app", "")),
    )
    .await;
    let a = cw.connect("stmt_u", Some("stmt_pw"), "app").await.unwrap();
    a.simple_query("CREATE TABLE stmt_t (v int)").await.unwrap();
    for i in 0..20i32 {
        within(
            T,
            "autocommit insert",
            a.query_typed(
                "INSERT INTO stmt_t VALUES ($1)",
                &[(&i, tokio_postgres::types::Type::INT4)],
            ),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        simple_one(&a, "SELECT count(*) FROM stmt_t").await.unwrap(),
        "20"
    );

    let b = cw.connect("stmt_u", Some("stmt_pw"), "app").await.unwrap();
    let err = within(T, "BEGIN in statement mode", b.simple_query("BEGIN"))
        .await
        .expect_err("BEGIN accepted in statement mode");
    assert!(
        msg(&err).contains("statement pooling mode"),
        "error does not mention statement pooling mode: {err:?}"
    );
    // Other clients are unaffected and no transaction was left open.
    assert_eq!(
        simple_one(&a, "SELECT 'still fine'").await.unwrap(),
        "still fine"
    );
    let direct = direct(c).await;
    let open = count_backends(
        &direct,
        "usename = 'stmt_u' AND state LIKE 'idle in transaction%'",
    )
    .await;
    assert_eq!(open, 0, "a server was left inside BEGIN");
    drop((a, b));
    cw.stop().await;
}

/// server_idle_timeout = 2: idle pooled server connections are closed after
/// about 2 s; clients are served again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_connections_close_after_server_idle_timeout() {
    let c = cluster().await;
    create_role("idle_u", "idle_pw", None).await;
    let direct = direct(c).await;
    let cw = start_cw(
        &[("idle_u", "idle_pw")],
        &(base_toml(
            "transaction",
            "default_pool_size = 3\nserver_idle_timeout = 2",
        ) + &db_entry(c, "app", "")),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(cw.connect("idle_u", Some("idle_pw"), "app").await.unwrap());
    }
    // Three at once need three servers.
    let runs = clients
        .iter()
        .map(|c| c.simple_query("SELECT pg_sleep(0.5)"));
    for r in futures_util::future::join_all(runs).await {
        r.unwrap();
    }
    let n = count_backends(&direct, "usename = 'idle_u'").await;
    assert_eq!(n, 3, "expected 3 pooled server connections");
    let idle_since = Instant::now();
    // When the first and the last of the three closed.
    let first_close = std::cell::Cell::new(None);
    let closed_after = eventually(
        Duration::from_secs(8),
        "idle server connections closed (server_idle_timeout = 2)",
        || async {
            let n = count_backends(&direct, "usename = 'idle_u'").await;
            if n < 3 && first_close.get().is_none() {
                first_close.set(Some(idle_since.elapsed()));
            }
            if n == 0 {
                Ok(idle_since.elapsed())
            } else {
                Err(format!("{n} open"))
            }
        },
    )
    .await;
    eprintln!(
        "idle servers closed after {:?} (first) .. {closed_after:?} (last)",
        first_close.get().unwrap()
    );
    assert!(
        first_close.get().unwrap() >= Duration::from_millis(800),
        "servers closed long before server_idle_timeout: {:?}",
        first_close.get()
    );
    assert!(
        closed_after >= Duration::from_millis(1500),
        "{closed_after:?}"
    );
    for cl in &clients {
        assert_eq!(simple_one(cl, "SELECT 'again'").await.unwrap(), "again");
    }
    drop(clients);
    cw.stop().await;
}

/// Idle clients park without a task (session/park.rs; a fresh client at
/// once, any other once the sweep finds it a second without a request).
/// client_idle_timeout still closes a parked client on time (its deadline
/// is kept across parking, not restarted), and a client that speaks every
/// 1.5 s, parked and resumed in between, stays open and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_answer_and_time_out_on_time() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "client_idle_timeout = 4") + &db_entry(c, "app", "")),
    )
    .await;
    let idle = cw.app().await;
    simple_one(&idle, "SELECT 1").await.unwrap();
    let since = Instant::now();
    let busy = cw.app().await;
    let mut n = 0;
    while !idle.is_closed() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the idle client outlived client_idle_timeout by far"
        );
        n += 1;
        let got = within(
            T,
            "the speaking client",
            simple_one(&busy, &format!("SELECT {n}")),
        )
        .await
        .unwrap_or_else(|e| panic!("a client speaking every 1.5 s was closed: {e}"));
        assert_eq!(got, n.to_string());
        // sleep-ok: the passage of idle time (parked between queries) is what is tested.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let took = since.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "closed after {took:?}, before client_idle_timeout"
    );
    assert!(n >= 3, "the speaking client was resumed {n} times");
    cw.stop().await;
}
