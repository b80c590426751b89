//! Read-your-writes and monotonic reads through Causeway.
//!
//! The checker (`causeway_integration::ryw_check`): sessions each writing
//! their own row and reading it straight back (every 5th read inside
//! `BEGIN READ ONLY`), with a shared counter raised meanwhile. A stale read
//! misses the session's own committed write; a backwards read returns
//! older data than the session already read. With `consistency = session`
//! both must be zero while the replicas serve the reads; with
//! `consistency = none` (negative control) the checker must see stale
//! reads, which proves it can fail. `make ryw-check` runs it at full size
//! (docs/consistency.md); here it runs small.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use causeway_integration::{eventually, http_get, Cluster, ClusterOptions};
use causeway_integration::{frames, ryw_check};
use common::*;
use tokio_postgres::{Client, NoTls};

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One metric value from /metrics (sum of the series starting with `prefix`).
fn metric(cw: &Cw, prefix: &str) -> f64 {
    let (_, body) = http_get(cw.metrics_port().expect("metrics port"), "/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum()
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn checker_toml(c: &Cluster, consistency: &str) -> String {
    split_toml(
        c,
        &format!(
            "consistency = \"{consistency}\"\ndefault_pool_size = 10\nmax_client_conn = 200\nreplica_hold_down = 0.5"
        ),
        "",
    )
}

/// Runs the checker through `cw` and prints what it saw.
async fn check(
    c: &Cluster,
    cw: &Cw,
    what: &str,
    sessions: u64,
    loops: u64,
    key_base: i64,
) -> ryw_check::Tally {
    let primary = c.primary().conn_str("postgres", None, "app");
    let t = ryw_check::run(
        &primary,
        &cw.conn_str("app", Some("app_pw"), "app"),
        sessions,
        loops,
        key_base,
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", cw.log_contents()));
    // Errors are counted and the loop goes on; the checker must still
    // have checked nearly every loop.
    assert!(
        t.loops * 100 >= sessions * loops * 95,
        "{what}: only {} of {} loops completed: {:?}",
        t.loops,
        sessions * loops,
        t.examples
    );
    let port = |i: usize| c.replica(i).port();
    eprintln!(
        "{what}: {} loops in {:.1} s, stale {}, backwards {}, errors {}, on replicas {:.1}% \
         (replica0 {:.1}%, replica1 {:.1}%), read p50 {:.2} ms p99 {:.2} ms, {} ryw fallbacks{}",
        t.loops,
        t.took.as_secs_f64(),
        t.stale,
        t.backwards,
        t.errors,
        100.0 * t.share(&[port(0), port(1)]),
        100.0 * t.share(&[port(0)]),
        100.0 * t.share(&[port(1)]),
        t.read_ms(0.5),
        t.read_ms(0.99),
        metric(cw, "causeway_ryw_fallbacks_total"),
        if t.examples.is_empty() {
            String::new()
        } else {
            format!("; e.g. {:?}", t.examples)
        }
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_checker_finds_no_stale_or_backwards_reads() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let primary = c.primary().conn_str("postgres", None, "app");
    ryw_check::prepare_table(&primary, "app").await.unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let replicas = [c.replica(0).port(), c.replica(1).port()];

    // Both replicas healthy: the reads stay on them.
    let cw = start_cw(APP_USERS, &checker_toml(&c, "session")).await;
    wait_for_replica_reads(&cw).await;
    let t = check(&c, &cw, "session, healthy", 20, 100, 1000).await;
    assert_eq!(t.stale, 0, "stale reads: {:?}", t.examples);
    assert_eq!(t.backwards, 0, "monotonicity violations: {:?}", t.examples);
    assert!(
        t.share(&replicas) >= 0.9,
        "read-your-writes sent {:.1}% of the reads to the primary (at most 10% allowed)",
        100.0 * (1.0 - t.share(&replicas))
    );

    // Replica 0 applies WAL 500 ms late, replica 1 is paused and resumed
    // at random: still no stale read, and no failover, so no stale_token.
    blocking(|| c.set_apply_delay(0, Duration::from_millis(500))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pauser = ryw_check::chaos(Arc::clone(&c), 1, stop.clone());
    let t = check(&c, &cw, "session, chaos", 20, 100, 2000).await;
    assert_eq!(t.stale, 0, "stale reads: {:?}", t.examples);
    assert_eq!(t.backwards, 0, "monotonicity violations: {:?}", t.examples);
    // Replica 1 replays about 80% of the time; reads must follow it there
    // (waiting on one replica at a time, probe by probe, gave ~60%).
    assert!(
        t.share(&replicas) >= 0.7,
        "only {:.1}% of the reads on replicas while one of them was healthy most of the time",
        100.0 * t.share(&replicas)
    );
    assert_eq!(
        metric(&cw, "causeway_routing_decisions_total{database=\"app\",target=\"primary\",reason=\"stale_token\"}"),
        0.0,
        "stale_token counted without any failover"
    );
    cw.stop().await;

    // Negative control: the same load without read-your-writes.
    let cw = start_cw(APP_USERS, &checker_toml(&c, "none")).await;
    wait_for_replica_reads(&cw).await;
    let t = check(&c, &cw, "none, chaos", 20, 50, 3000).await;
    assert!(
        t.stale > 0,
        "the checker saw no stale read without read-your-writes: it cannot fail"
    );
    stop.store(true, Ordering::Relaxed);
    let (pauses, paused) = tokio::task::spawn_blocking(move || pauser.join().unwrap())
        .await
        .unwrap();
    eprintln!("(replica 1 paused {pauses} times, {paused:?} in all)");
    blocking(|| c.set_apply_delay(0, Duration::ZERO)).unwrap();
    cw.stop().await;
}

/// Waits until reads through `cw` reach a replica (the monitor has seen
/// every server).
async fn wait_for_replica_reads(cw: &Cw) {
    let client = cw.app().await;
    eventually(Duration::from_secs(20), "reads on a replica", || async {
        row(&client, "SELECT pg_is_in_recovery()").await.unwrap() == ["t"]
    })
    .await;
}

/// A connection whose ParameterStatus values we can read while it runs.
async fn connect_watching(s: &str) -> (Client, Arc<StdMutex<HashMap<String, String>>>) {
    let (client, mut conn) = tokio_postgres::connect(s, NoTls).await.expect("connect");
    let params = Arc::new(StdMutex::new(HashMap::new()));
    let p = Arc::clone(&params);
    tokio::spawn(async move {
        std::future::poll_fn(|cx| loop {
            let r = conn.poll_message(cx);
            if let Some(v) = conn.parameter("causeway.token") {
                p.lock()
                    .unwrap()
                    .insert("causeway.token".into(), v.to_string());
            }
            match r {
                std::task::Poll::Ready(Some(Ok(_))) => continue,
                std::task::Poll::Ready(_) => return std::task::Poll::Ready(()),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        })
        .await
    });
    (client, params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_move_between_connections_and_instances() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE tk (k int PRIMARY KEY, v int); INSERT INTO tk VALUES (1, 0); GRANT ALL ON tk TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let toml = split_toml(&c, "", "");
    let cw1 = start_cw(APP_USERS, &toml).await;
    let cw2 = start_cw(APP_USERS, &toml).await;
    let (a, a_params) = connect_watching(&cw1.conn_str("app", Some("app_pw"), "app")).await;
    let probe = cw1.app().await;
    until_replica_reads(&probe).await;
    // Both replicas apply WAL 1.5 s late from now on.
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::from_millis(1500))).unwrap();
    }

    let mut v = 0;
    for how in ["set", "startup", "comment", "other instance"] {
        v += 1;
        a.simple_query(&format!("UPDATE tk SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        let shown = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
        assert!(shown.starts_with("cw1-"), "SHOW causeway.token: {shown:?}");
        let what = format!("ParameterStatus causeway.token = {shown}");
        let reported = eventually(Duration::from_secs(5), &what, || async {
            match a_params.lock().unwrap().get("causeway.token") {
                Some(t) if *t == shown => Ok(t.clone()),
                other => Err(other.cloned()),
            }
        })
        .await;
        // Without the token, a fresh session reads the old value from a
        // (delayed) replica: the token is what makes the difference.
        let plain = cw1.app().await;
        let r = row(&plain, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1")
            .await
            .unwrap();
        assert!(
            r[0].parse::<i64>().unwrap() < v && r[1] == "t",
            "{how}: control read without the token: {r:?}"
        );

        let (b, read_sql) = match how {
            "set" => {
                let b = cw1.app().await;
                b.simple_query(&format!("SET causeway.token = '{reported}'"))
                    .await
                    .unwrap();
                (b, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
            "startup" => {
                let s = format!(
                    "{} options='-c causeway.token={reported}'",
                    cw1.conn_str("app", Some("app_pw"), "app")
                );
                (connect_str(&s).await.unwrap(), "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
            "comment" => (
                cw1.app().await,
                format!("/* causeway:token={reported} */ SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1"),
            ),
            _ => {
                let b = cw2.app().await;
                b.simple_query(&format!("SET causeway.token = '{reported}'"))
                    .await
                    .unwrap();
                (b, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
        };
        // At once: the write is seen (the primary, since no replica has it).
        let r = row(&b, &read_sql).await.unwrap();
        assert_eq!(r[0], v.to_string(), "{how}: B missed A's write");
        // Once a replica caught up, the read is served there.
        let what = format!("{how}: B's read served by a replica");
        eventually(Duration::from_secs(10), &what, || async {
            let r = row(&b, &read_sql).await.unwrap();
            assert_eq!(r[0], v.to_string(), "{how}: B missed A's write");
            r[1] == "t"
        })
        .await;
        eprintln!("{how}: imported token honoured, then served by a replica");
    }

    // Bad and foreign tokens are clear errors, and never lower the floor.
    let e = a
        .simple_query("SET causeway.token = 'not-a-token'")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22023"), "{}", msg(&e));
    let e = a
        .simple_query("SET causeway.token = 'cw1-0000000000000001-00000001-0000000000000001'")
        .await
        .unwrap_err();
    assert!(msg(&e).contains("another cluster"), "{}", msg(&e));
    let e = a
        .simple_query("/* causeway:token=cw1-zz */ SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22023"), "{}", msg(&e));
    let before = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
    let lower = format!("{}0000000000000001", &before[..before.len() - 16]);
    a.simple_query(&format!("SET causeway.token = '{lower}'"))
        .await
        .unwrap();
    assert_eq!(
        row(&a, "SHOW causeway.token").await.unwrap()[0],
        before,
        "a token went backwards"
    );
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::ZERO)).unwrap();
    }
    cw1.stop().await;
    cw2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_system_reads_after_writes_never_wait_the_full_timeout() {
    let c = cluster().await;
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("DROP TABLE IF EXISTS idle_ryw; CREATE TABLE idle_ryw (k int PRIMARY KEY, v int); INSERT INTO idle_ryw VALUES (1, 0); GRANT ALL ON idle_ryw TO app;")
        .await
        .unwrap();
    // A generous wait: what is asserted is that caught-up replicas serve
    // the reads after each write, not how fast replay is on a busy machine
    // (the latency is printed, and measured by the checker and the bench).
    let cw = start_cw(APP_USERS, &split_toml(c, "ryw_wait_timeout = 1.0", "")).await;
    let client = cw.app().await;
    until_replica_reads(&client).await;
    let mut lat = Vec::new();
    let mut on_replica = 0;
    for v in 1..=200 {
        client
            .simple_query(&format!("UPDATE idle_ryw SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        let t = Instant::now();
        let r = row(
            &client,
            "SELECT v, pg_is_in_recovery() FROM idle_ryw WHERE k = 1",
        )
        .await
        .unwrap();
        lat.push(t.elapsed().as_micros() as u64);
        assert_eq!(r[0], v.to_string(), "stale read");
        on_replica += usize::from(r[1] == "t");
        // An idle system: nothing else writes.
        // sleep-ok: paces the measured write-then-read loop (not a wait)
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fallbacks = metric(&cw, "causeway_ryw_fallbacks_total");
    let max = *lat.iter().max().unwrap();
    eprintln!(
        "idle system: 200 write-then-read, {on_replica} reads on replicas, {fallbacks} fallbacks, \
         read median {} us, max {max} us",
        pct(&mut lat, 0.5)
    );
    assert_eq!(fallbacks, 0.0, "a read waited the full ryw_wait_timeout");
    assert!(
        on_replica > 150,
        "only {on_replica} of 200 reads on replicas"
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_read_your_writes_and_refuses_old_generation_replicas() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE fo (k int PRIMARY KEY, v int); INSERT INTO fo VALUES (1, 0); GRANT ALL ON fo TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let cw = start_cw(APP_USERS, &split_toml(&c, "", "")).await;
    let a = cw.app().await;
    until_replica_reads(&a).await;
    a.simple_query("UPDATE fo SET v = 1 WHERE k = 1")
        .await
        .unwrap();
    let old_token = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
    let writes = Arc::new(AtomicU64::new(0));

    // Promote replica 0 after stopping the primary; replica 1 stays a
    // standby of the old timeline (not following the new primary).
    let cc = Arc::clone(&c);
    tokio::task::spawn_blocking(move || {
        cc.stop(cc.primary())?;
        cc.promote(0)
    })
    .await
    .unwrap()
    .expect("promote");

    // The session writes again on the new primary and reads its write.
    let b = eventually(
        Duration::from_secs(20),
        "a write after failover",
        || async {
            let b = cw.connect("app", Some("app_pw"), "app").await?;
            b.simple_query("UPDATE fo SET v = 2 WHERE k = 1").await?;
            Ok::<_, tokio_postgres::Error>(b)
        },
    )
    .await;
    writes.fetch_add(1, Ordering::Relaxed);
    let new_token = row(&b, "SHOW causeway.token").await.unwrap()[0].clone();
    assert_ne!(
        &new_token[..29],
        &old_token[..29],
        "the token's timeline did not change: {old_token} -> {new_token}"
    );
    for _ in 0..20 {
        let r = row(&b, "SELECT v FROM fo WHERE k = 1").await.unwrap();
        assert_eq!(r, vec!["2"], "read-your-writes broke after failover");
    }
    // A session holding only an old-generation token reads from the new
    // primary, never from the old timeline's replica.
    let old = cw.app().await;
    old.simple_query(&format!("SET causeway.token = '{old_token}'"))
        .await
        .unwrap();
    let new_primary = c.replica(0).port().to_string();
    for _ in 0..20 {
        let r = row(
            &old,
            "SELECT v, inet_server_port()::text FROM fo WHERE k = 1",
        )
        .await
        .unwrap();
        assert_eq!(r, vec!["2".to_string(), new_primary.clone()]);
    }
    // The first of those reads is what stale_token counts (a failover
    // cause only); its bound then gives the session a current token.
    assert!(
        metric(&cw, "causeway_routing_decisions_total{database=\"app\",target=\"primary\",reason=\"stale_token\"}") >= 1.0,
        "a read with an old-generation token not counted as stale_token"
    );
    cw.stop().await;

    // A Causeway started now, whose configuration still names the dead old
    // primary as primary: logins wait for the monitor to find the new one
    // instead of failing. (Trust logins: no SCRAM work that would give the
    // monitor time to look first.)
    let mut toml = base_toml("transaction", "").replace("scram-sha-256", "trust");
    toml.push_str("\n[databases.app]\ndbname = \"app\"\n");
    toml.push_str(&servers_with_roles(&c));
    let cw = start_cw(APP_USERS, &toml).await;
    let logins: Vec<_> = (0..10)
        .map(|i| {
            let s = cw.conn_str("app", Some("app_pw"), "app");
            tokio::spawn(async move {
                let client = connect_str(&s)
                    .await
                    .map_err(|e| format!("login {i}: {e}"))?;
                client
                    .simple_query(&format!("UPDATE fo SET v = {} WHERE k = 1", 10 + i))
                    .await
                    .map_err(|e| format!("write {i}: {e}"))?;
                row(&client, "SELECT inet_server_port()::text")
                    .await
                    .map_err(|e| format!("read {i}: {e}"))
            })
        })
        .collect();
    for l in logins {
        let r = l.await.unwrap();
        assert!(r.is_ok(), "{r:?}\n{}", cw.log_contents());
    }
    cw.stop().await;
}

/// A server that accepts TCP connections and never answers: the monitor's
/// probe of it hangs until monitor_timeout.
fn silent_server() -> (u16, Arc<AtomicBool>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => held.push(c),
                // sleep-ok: poll interval of a fake server's non-blocking accept
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_write_has_a_token_before_the_monitor_saw_every_server() {
    let c = cluster().await;
    let (silent, stop) = silent_server();
    // The monitor publishes no topology until it has probed every server
    // once, and the silent one takes monitor_timeout (10 s): meanwhile the
    // configured roles route, and a write must still give a token.
    let mut toml = base_toml("transaction", "monitor_timeout = 10");
    toml.push_str("\n[databases.app]\ndbname = \"app\"\n");
    let p = c.primary();
    toml.push_str(&format!(
        "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\nrole = \"primary\"\n\
         \n[[databases.app.servers]]\nhost = \"127.0.0.1\"\nport = {silent}\nrole = \"replica\"\n",
        p.host(),
        p.port()
    ));
    let cw = start_cw(APP_USERS, &toml).await;
    let a = cw.app().await;
    a.batch_execute(
        "CREATE TABLE IF NOT EXISTS first_tok (v int); INSERT INTO first_tok VALUES (1)",
    )
    .await
    .unwrap();
    let token = row(&a, "SHOW causeway.token").await.unwrap();
    assert!(
        token[0].starts_with("cw1-"),
        "no token after the first write: {token:?}"
    );
    // The read after it sees it (on the primary: no replica is known).
    let r = row(&a, "SELECT count(*) FROM first_tok").await.unwrap();
    assert_ne!(r[0], "0");
    stop.store(true, Ordering::Relaxed);
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_only_read_keep_using_replicas_after_a_primary_read() {
    // primary_reads = always: the primary is one candidate of three. A
    // read on the primary must not pin the session there until the next
    // monitor probe; its bound is one coalesced position query.
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &split_toml(
            c,
            "",
            "primary_reads = \"always\"\nload_balance = \"round_robin\"",
        ),
    )
    .await;
    wait_for_replica_reads(&cw).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = cw.app().await;
        tasks.push(tokio::spawn(async move {
            let mut on = HashMap::<String, u32>::new();
            for _ in 0..300 {
                let r = row(&client, "SELECT pg_is_in_recovery()::text")
                    .await
                    .unwrap();
                *on.entry(r[0].clone()).or_default() += 1;
            }
            on
        }));
    }
    let (mut replica, mut total) = (0, 0);
    for t in tasks {
        let on = t.await.unwrap();
        replica += on.get("true").copied().unwrap_or(0);
        total += on.values().sum::<u32>();
    }
    let share = f64::from(replica) / f64::from(total);
    eprintln!(
        "reads only, primary_reads = always: {replica} of {total} on replicas ({:.1}%)",
        100.0 * share
    );
    // Round robin over the primary and two replicas would give two thirds
    // (consistency = none); a read whose replicas have not yet replayed
    // what the primary showed waits for one, then takes its turn. Pinned
    // to the primary, as when a primary read's bound waited for a monitor
    // probe, it was 0.2%.
    assert!(
        share > 0.4,
        "sessions stuck on the primary after reading there: {replica} of {total} reads on replicas"
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_consistency_and_ryw_fallback_error() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE gl (k int PRIMARY KEY, v int); INSERT INTO gl VALUES (1, 0); GRANT ALL ON gl TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let cw = start_cw(APP_USERS, &split_toml(&c, "", "")).await;
    let a = cw.app().await;
    until_replica_reads(&a).await;
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::from_millis(1500))).unwrap();
    }
    let global = cw.app().await;
    global
        .simple_query("SET causeway.consistency = global")
        .await
        .unwrap();
    assert_eq!(
        row(&global, "SHOW causeway.consistency").await.unwrap(),
        vec!["global"]
    );
    let plain = cw.app().await;
    for v in 1..=10 {
        a.simple_query(&format!("UPDATE gl SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        // A's write returned: every global session honours it at once
        // (whether or not A's token has been read yet); a session-mode
        // session without it does not.
        let g = row(&global, "SELECT v FROM gl WHERE k = 1").await.unwrap();
        assert_eq!(
            g,
            vec![v.to_string()],
            "global session missed another session's write"
        );
        let p = row(&plain, "SELECT v, pg_is_in_recovery() FROM gl WHERE k = 1")
            .await
            .unwrap();
        assert!(
            p[0].parse::<i64>().unwrap() < v && p[1] == "t",
            "control: a session without the token read {p:?} from a 1.5 s late replica"
        );
    }
    // Let the replicas catch up before the next part.
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    cw.stop().await;

    // ryw_fallback = error: a read no replica can serve in time fails with
    // 57P03 instead of running on the primary; the session goes on.
    let cw = start_cw(
        APP_USERS,
        &split_toml(&c, "ryw_fallback = \"error\"\nryw_wait_timeout = 0.05", ""),
    )
    .await;
    let s = cw.app().await;
    until_replica_reads(&s).await;
    s.simple_query("UPDATE gl SET v = 100 WHERE k = 1")
        .await
        .unwrap();
    let e = s
        .simple_query("SELECT v FROM gl WHERE k = 1")
        .await
        .expect_err("no replica has the write for 1.5 s");
    assert_eq!(code(&e).as_deref(), Some("57P03"), "{}", msg(&e));
    assert!(msg(&e).contains("ryw_wait_timeout"), "{}", msg(&e));
    assert_eq!(metric(&cw, "causeway_ryw_fallbacks_total"), 1.0);
    // Once a replica has it (1.5 s apply delay), the read is served there;
    // until then it keeps failing with 57P03.
    eventually(STEP, "the read served by a replica", || async {
        match row(&s, "SELECT v, pg_is_in_recovery() FROM gl WHERE k = 1").await {
            Ok(r) => {
                assert_eq!(r, vec!["100", "t"]);
                Ok(())
            }
            Err(e) => {
                assert_eq!(code(&e).as_deref(), Some("57P03"), "{}", msg(&e));
                Err(e)
            }
        }
    })
    .await;
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::ZERO)).unwrap();
    }
    cw.stop().await;
}

/// A raw protocol client (trust login), to see exactly what each protocol
/// path answers.
struct Raw(tokio::net::TcpStream);

/// What one command answered: data values, then the command tag or the
/// error's SQLSTATE.
type Answer = (Vec<String>, String);

impl Raw {
    async fn login(port: u16) -> Raw {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(&frames::startup(
            196608,
            &[("user", "app"), ("database", "app")],
        ))
        .await
        .unwrap();
        let mut raw = Raw(s);
        let msgs = raw.until(b'Z').await;
        assert!(msgs.iter().all(|(t, _)| *t != b'E'), "login failed");
        raw
    }

    async fn send(&mut self, b: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.0.write_all(b).await.unwrap();
    }

    async fn recv(&mut self) -> (u8, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 5];
        within(STEP, "a message", self.0.read_exact(&mut head))
            .await
            .expect("EOF");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.0.read_exact(&mut body).await.unwrap();
        (head[0], body)
    }

    /// Messages up to and including the first `tag` (ParameterStatus left
    /// out: a token may arrive at any time).
    async fn until(&mut self, tag: u8) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.0 == tag;
            if m.0 != b'S' {
                out.push(m);
            }
            if done {
                return out;
            }
        }
    }
}

/// (data values, tag or SQLSTATE) of a reply, and its message types.
fn answer(msgs: &[(u8, Vec<u8>)]) -> (Answer, String) {
    let mut data = Vec::new();
    let mut end = String::new();
    for (t, b) in msgs {
        match t {
            b'D' => {
                let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
                data.push(String::from_utf8_lossy(&b[6..6 + len]).into_owned());
            }
            b'C' => end = String::from_utf8_lossy(&b[..b.len() - 1]).into_owned(),
            b'E' => {
                let mut f = b.split(|&c| c == 0);
                end = f
                    .find_map(|x| x.strip_prefix(b"C"))
                    .map(|c| format!("error {}", String::from_utf8_lossy(c)))
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    let tags = msgs.iter().map(|(t, _)| *t as char).collect();
    ((data, end), tags)
}

/// Bind of `stmt` to the unnamed portal, results in binary (as asyncpg).
fn bind_binary(stmt: &str) -> Vec<u8> {
    let mut b = Vec::new();
    frames::cstr(&mut b, "");
    frames::cstr(&mut b, stmt);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1]);
    frames::message(b'B', &b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_commands_answer_alike_in_every_protocol() {
    let c = cluster().await;
    let mut toml = String::from(
        "pool_mode = \"transaction\"\nauth_type = \"trust\"\nauth_file = \"{userlist}\"\n\n[databases.app]\ndbname = \"app\"\n",
    );
    for n in c.nodes() {
        toml.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\n",
            n.host(),
            n.port()
        ));
    }
    let cw = start_cw(APP_USERS, &toml).await;
    let mut raw = Raw::login(cw.port()).await;
    raw.send(&frames::query(
        "CREATE TABLE IF NOT EXISTS raw_cmds (v int); INSERT INTO raw_cmds VALUES (1)",
    ))
    .await;
    raw.until(b'Z').await;
    raw.send(&frames::query("SHOW causeway.token")).await;
    let ((tok, _), _) = answer(&raw.until(b'Z').await);
    assert!(tok[0].starts_with("cw1-"), "{tok:?}");
    let tok = &tok[0];
    let commands = [
        "SHOW causeway.route".to_string(),
        "SET causeway.route = primary".into(),
        "SHOW causeway.route".into(),
        "RESET causeway.route".into(),
        "SHOW causeway.route".into(),
        format!("SET causeway.token = '{tok}'"),
        "SHOW causeway.token".into(),
        "SET causeway.token = 'not-a-token'".into(),
        "show CAUSEWAY.nope".into(),
        "RESET causeway.token".into(),
    ];
    let want: Vec<Answer> = [
        (vec!["auto"], "SHOW"),
        (vec![], "SET"),
        (vec!["primary"], "SHOW"),
        (vec![], "RESET"),
        (vec!["auto"], "SHOW"),
        (vec![], "SET"),
        (vec![tok.as_str()], "SHOW"),
        (vec![], "error 22023"),
        (vec![], "error 42704"),
        (vec![], "error 55000"),
    ]
    .into_iter()
    .map(|(d, e)| (d.into_iter().map(String::from).collect(), e.to_string()))
    .collect();

    for how in ["simple", "unnamed", "named", "flush"] {
        let mut s = Raw::login(cw.port()).await;
        for (i, sql) in commands.iter().enumerate() {
            let name = format!("cw_{i}");
            let (got, tags) = match how {
                "simple" => {
                    s.send(&frames::query(sql)).await;
                    answer(&s.until(b'Z').await)
                }
                // Parse/Bind/Describe/Execute/Sync, unnamed (psycopg).
                "unnamed" => {
                    let mut m = frames::parse("", sql, &[]);
                    m.extend(frames::bind("", "", &[]));
                    m.extend(frames::describe(b'P', ""));
                    m.extend(frames::execute("", 0));
                    m.extend(frames::sync());
                    s.send(&m).await;
                    answer(&s.until(b'Z').await)
                }
                // Parse+Sync, then Bind/Describe/Execute/Sync twice, then
                // Close+Sync (psycopg once prepared).
                "named" => {
                    let mut m = frames::parse(&name, sql, &[]);
                    m.extend(frames::sync());
                    s.send(&m).await;
                    let (_, t) = answer(&s.until(b'Z').await);
                    assert_eq!(t, "1Z", "named Parse of {sql}");
                    let mut first = None;
                    for _ in 0..2 {
                        let mut m = frames::bind("", &name, &[]);
                        m.extend(frames::describe(b'P', ""));
                        m.extend(frames::execute("", 0));
                        m.extend(frames::sync());
                        s.send(&m).await;
                        let a = answer(&s.until(b'Z').await);
                        assert!(
                            first.as_ref().is_none_or(|f| *f == a),
                            "{sql}: a second execution differs"
                        );
                        first = Some(a);
                    }
                    let mut m = frames::close(b'S', &name);
                    m.extend(frames::sync());
                    s.send(&m).await;
                    assert_eq!(answer(&s.until(b'Z').await).1, "3Z");
                    first.unwrap()
                }
                // Parse + Describe(S) + Flush, answered before any Sync,
                // then Bind (binary results) / Execute / Sync (asyncpg).
                _ => {
                    let mut m = frames::parse(&name, sql, &[]);
                    m.extend(frames::describe(b'S', &name));
                    m.extend(frames::flush());
                    s.send(&m).await;
                    let described = s
                        .until(if sql.to_lowercase().starts_with("show") {
                            b'T'
                        } else {
                            b'n'
                        })
                        .await;
                    let tags: String = described.iter().map(|(t, _)| *t as char).collect();
                    assert!(tags == "1tT" || tags == "1tn", "{sql}: {tags}");
                    let mut m = bind_binary(&name);
                    m.extend(frames::execute("", 0));
                    m.extend(frames::sync());
                    s.send(&m).await;
                    answer(&s.until(b'Z').await)
                }
            };
            assert_eq!(got, want[i], "{how}: {sql} (messages {tags})");
        }
        // The SET took effect: a read goes to the primary.
        s.send(&frames::query("SET causeway.route = primary")).await;
        s.until(b'Z').await;
        s.send(&frames::query("SELECT pg_is_in_recovery()::text"))
            .await;
        let ((v, _), _) = answer(&s.until(b'Z').await);
        assert_eq!(v, ["false"], "{how}");
        eprintln!(
            "{how}: {} commands answered as over the simple protocol",
            commands.len()
        );
    }

    // A Causeway command may not share a unit with other statements.
    let mut m = frames::parse("", "SHOW causeway.token", &[]);
    m.extend(frames::parse("", "SELECT 1", &[]));
    m.extend(frames::sync());
    raw.send(&m).await;
    let ((_, end), tags) = answer(&raw.until(b'Z').await);
    assert_eq!((end.as_str(), tags.as_str()), ("error 0A000", "1EZ"));
    // ... and a name it keeps cannot be prepared again.
    let mut m = frames::parse("kept", "SHOW causeway.route", &[]);
    m.extend(frames::sync());
    m.extend(frames::parse("kept", "SELECT 1", &[]));
    m.extend(frames::sync());
    raw.send(&m).await;
    assert_eq!(answer(&raw.until(b'Z').await).1, "1Z");
    assert_eq!(answer(&raw.until(b'Z').await).0 .1, "error 42P05");
    // The session goes on.
    raw.send(&frames::query("SELECT 1")).await;
    assert_eq!(answer(&raw.until(b'Z').await).0 .0, ["1"]);
    cw.stop().await;
}
