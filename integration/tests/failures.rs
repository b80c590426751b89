//! When things go wrong: a server backend dies under one client while others
//! keep working, and a SIGTERM'd Causeway lets an open transaction finish.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(15);

/// 20 clients run 100 small transactions each through a pool of 10 while a
/// 21st runs pg_sleep(30); its backend is terminated on the primary. The
/// 21st gets an error and is disconnected; the 20 see no error at all and
/// every row they inserted is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_fails_only_its_client() {
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute("CREATE TABLE kill_t (client int, i int); GRANT ALL ON kill_t TO app;")
        .await
        .unwrap();
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "default_pool_size = 10") + &db_entry(c, "app", "")),
    )
    .await;

    let victim = cw.app().await;
    let victim_query = tokio::spawn(async move {
        let r = victim.simple_query("SELECT pg_sleep(30)").await;
        (victim, r)
    });
    // Wait until the sleep runs on the primary.
    until_running(&[c.primary()], "%pg_sleep(30)%").await;

    let progress = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..20i32 {
        let client = cw.app().await;
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut errors = Vec::new();
            for i in 0..100i32 {
                if Instant::now() > deadline {
                    errors.push(format!("worker {w}: out of time at {i}"));
                    break;
                }
                let r = client
                    .simple_query(&format!(
                        "INSERT INTO kill_t VALUES ({w}, {i}); \
                         SELECT count(*) FROM kill_t WHERE client = {w}"
                    ))
                    .await;
                match r {
                    Ok(msgs) => {
                        let n = msgs.iter().find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).map(str::to_string)
                            }
                            _ => None,
                        });
                        if n.as_deref() != Some(&(i + 1).to_string()) {
                            errors.push(format!("worker {w} round {i}: count {n:?}"));
                        }
                    }
                    Err(e) => errors.push(format!("worker {w} round {i}: {e:?}")),
                }
                progress.fetch_add(1, Ordering::Relaxed);
                // Paced, so that the kill lands while all of them still run.
                // sleep-ok: load pacing, not a wait
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        }));
    }
    // Kill the sleeper's backend while the workers are in full swing.
    let p = &progress;
    eventually(STEP, "workers make progress (60 rounds)", || async move {
        p.load(Ordering::Relaxed) >= 60
    })
    .await;
    let killed = direct
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(killed, 1);
    let done_at_kill = progress.load(Ordering::Relaxed);

    let (victim, res) = within(T, "the victim's query", victim_query).await.unwrap();
    let err = res.expect_err("pg_sleep(30) survived pg_terminate_backend");
    eprintln!("victim got {err:?} (workers had done {done_at_kill} of 2000)");
    eventually(
        Duration::from_secs(3),
        "victim's connection closed after its server died",
        || async { victim.is_closed() },
    )
    .await;
    assert!(victim.simple_query("SELECT 1").await.is_err());

    let mut all_errors = Vec::new();
    for h in workers {
        all_errors.extend(within(Duration::from_secs(70), "worker", h).await.unwrap());
    }
    assert!(
        all_errors.is_empty(),
        "{} errors in the other clients, e.g. {:?}",
        all_errors.len(),
        &all_errors[..all_errors.len().min(5)]
    );
    assert!(
        done_at_kill < 1500,
        "workers had done {done_at_kill} of 2000 transactions at the kill: too late to prove anything"
    );
    let row = direct
        .query_one(
            "SELECT count(*), count(DISTINCT (client, i)), count(DISTINCT client) FROM kill_t",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2000);
    assert_eq!(row.get::<_, i64>(1), 2000);
    assert_eq!(row.get::<_, i64>(2), 20);

    // The pool recovered: a new client is served.
    let fresh = cw.app().await;
    assert_eq!(simple_one(&fresh, "SELECT 'fresh'").await.unwrap(), "fresh");
    drop(fresh);
    cw.stop().await;
}

/// SIGTERM with a client inside a transaction: new connections are refused,
/// the open transaction still commits, and once that client leaves the
/// process exits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_transaction_commit_then_exits() {
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute("CREATE TABLE term_t (v text); GRANT ALL ON term_t TO app;")
        .await
        .unwrap();
    let mut cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "default_pool_size = 4") + &db_entry(c, "app", "")),
    )
    .await;
    let client = cw.app().await;
    within(
        T,
        "BEGIN; INSERT",
        client.batch_execute("BEGIN; INSERT INTO term_t VALUES ('in flight')"),
    )
    .await
    .unwrap();

    cw.signal(libc::SIGTERM).unwrap();
    // New connections are refused (once the signal has landed).
    eventually(
        Duration::from_secs(3),
        "new connections refused after SIGTERM",
        || async {
            match tokio::time::timeout(
                Duration::from_secs(3),
                cw.connect("app", Some("app_pw"), "app"),
            )
            .await
            {
                Ok(Err(e)) => {
                    eprintln!("new connection after SIGTERM: {e:?}");
                    true
                }
                Err(_) => true, // not answered at all: also not served
                Ok(Ok(_extra)) => false,
            }
        },
    )
    .await;

    within(
        T,
        "more work in the open transaction",
        client.batch_execute("INSERT INTO term_t VALUES ('after sigterm')"),
    )
    .await
    .expect("open transaction broken by SIGTERM");
    within(T, "COMMIT", client.batch_execute("COMMIT"))
        .await
        .expect("COMMIT after SIGTERM failed");
    let row = direct
        .query_one("SELECT count(*) FROM term_t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "committed rows missing");
    assert!(
        cw.try_wait().is_none(),
        "causeway exited while a client was still connected"
    );

    drop(client);
    let st = tokio::task::block_in_place(|| cw.wait_exit(Duration::from_secs(5)))
        .expect("causeway did not exit after its last client left");
    assert!(st.success(), "exit status {st}");
    cw.stop().await;
}

/// SIGINT: clients that are idle are closed at once; a session-mode client
/// inside a transaction finishes it (COMMIT works) and is closed right
/// after, without having to send anything else; then the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_each_client_once_its_transaction_ends() {
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute(
            "DROP TABLE IF EXISTS int_t; CREATE TABLE int_t (v text); GRANT ALL ON int_t TO app;",
        )
        .await
        .unwrap();
    let mut cw = start_cw(
        APP_USERS,
        &(base_toml("session", "default_pool_size = 4") + &db_entry(c, "app", "")),
    )
    .await;
    let idle = cw.app().await;
    idle.simple_query("SELECT 1").await.unwrap();
    let busy = cw.app().await;
    busy.batch_execute("BEGIN; INSERT INTO int_t VALUES ('in flight')")
        .await
        .unwrap();

    cw.signal(libc::SIGINT).unwrap();
    eventually(T, "idle session-mode client closed", || async {
        idle.is_closed()
    })
    .await;
    within(T, "COMMIT", busy.batch_execute("COMMIT"))
        .await
        .expect("COMMIT after SIGINT failed");
    eventually(T, "busy client closed after its transaction", || async {
        busy.is_closed()
    })
    .await;
    let row = direct
        .query_one("SELECT count(*) FROM int_t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the committed row is missing");
    let st = tokio::task::block_in_place(|| cw.wait_exit(Duration::from_secs(5)))
        .expect("causeway did not exit after its clients were closed");
    assert!(st.success(), "exit status {st}");
    cw.stop().await;
}
