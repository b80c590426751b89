//! Read/write splitting end to end, against a primary and two streaming
//! replicas: where reads, writes and every write hazard land, the lag
//! monitor steering reads away from paused or delayed replicas, a replica
//! stopped under load, a promotion, and the balancing strategies.
//!
//! Which server ran a statement is read from the statement itself
//! (`pg_is_in_recovery()`, `inet_server_port()`), never from Causeway's own
//! account. Tests that pause or delay a replica of the shared cluster take
//! [`SHARED`]; the ones that stop or promote servers get their own cluster.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_integration::{eventually, http_get, Cluster, ClusterOptions, Writer};
use common::*;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::Client;

static SHARED: Mutex<()> = Mutex::const_new(());

async fn shared() -> (MutexGuard<'static, ()>, &'static Cluster) {
    let g = SHARED.lock().await;
    (g, cluster().await)
}

/// These tests are about where reads go, not read-your-writes: without
/// `consistency = none` a session's reads stick to one replica between
/// monitor probes (monotonic reads), which would hide the balancing.
fn rt_toml(c: &Cluster, top: &str, db: &str) -> String {
    split_toml(c, &format!("consistency = \"none\"\n{top}"), db)
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Runs a read and says where it ran: (in recovery, server port).
async fn where_read(client: &Client) -> (bool, u16) {
    let r = row(
        client,
        "SELECT pg_is_in_recovery()::text, inet_server_port()::text",
    )
    .await
    .unwrap_or_else(|e| panic!("read failed: {e}"));
    (r[0] == "true", r[1].parse().expect("port"))
}

/// Reads `n` times; count per server port.
async fn spread(client: &Client, n: usize) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        *m.entry(where_read(client).await.1).or_default() += 1;
    }
    m
}

/// Waits until the monitor has probed everything and reads land on both
/// replicas.
async fn wait_for_replica_reads(client: &Client) {
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    eventually(
        Duration::from_secs(15),
        "reads reach both replicas",
        || async {
            let (replica, port) = where_read(client).await;
            if replica {
                seen.borrow_mut().insert(port);
            }
            let seen = seen.borrow();
            if seen.len() >= 2 {
                Ok(())
            } else {
                Err(seen.clone())
            }
        },
    )
    .await;
}

/// Waits until the lag monitor has probed the servers: the primary shows
/// its role in `causeway_server_role`, and so do `replicas` replicas.
async fn until_monitor_probed(cw: &Cw, replicas: usize) {
    let port = cw.metrics_port().expect("metrics port");
    eventually(STEP, "the monitor has found the servers' roles", || async {
        let (_, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
            .await
            .unwrap();
        let roles: Vec<String> = body
            .lines()
            .filter(|l| l.starts_with("causeway_server_role{"))
            .map(str::to_string)
            .collect();
        let count = |role: &str| {
            let label = format!("role=\"{role}\"");
            roles.iter().filter(|l| l.contains(&label)).count()
        };
        if count("primary") >= 1 && count("replica") >= replicas {
            Ok(())
        } else {
            Err(roles)
        }
    })
    .await;
}

/// `causeway_routing_decisions_total` for (target, reason), 0 if absent.
fn decisions(cw: &Cw, target: &str, reason: &str) -> u64 {
    let (status, body) = http_get(cw.metrics_port().expect("metrics port"), "/metrics");
    assert_eq!(status, 200);
    let key = format!(
        "causeway_routing_decisions_total{{database=\"app\",target=\"{target}\",reason=\"{reason}\"}} "
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().expect("counter value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_writes_and_hazards_to_the_primary() {
    let (_g, c) = shared().await;
    let cw = start_cw(
        APP_USERS,
        &rt_toml(c, "writing_functions = [\"rt_touch\"]", ""),
    )
    .await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;

    let replica_ports: Vec<u16> = c.replicas().iter().map(|n| n.port()).collect();
    let seen = spread(&client, 40).await;
    for port in seen.keys() {
        assert!(
            replica_ports.contains(port),
            "a read ran on {port}: {seen:?}"
        );
    }
    assert_eq!(seen.len(), 2, "round robin uses both replicas: {seen:?}");

    client
        .batch_execute(
            "DROP TABLE IF EXISTS rt_items; DROP SEQUENCE IF EXISTS rt_seq;
             CREATE TABLE rt_items (k int PRIMARY KEY, v int);
             CREATE SEQUENCE rt_seq;
             INSERT INTO rt_items VALUES (1, 1), (2, 2);
             CREATE OR REPLACE FUNCTION rt_touch() RETURNS int LANGUAGE sql AS
               'INSERT INTO rt_items VALUES (1000 + nextval(''rt_seq'')::int, 0) RETURNING 1';
             CREATE OR REPLACE FUNCTION rt_sneaky() RETURNS int LANGUAGE sql AS
               'INSERT INTO rt_items VALUES (5000 + nextval(''rt_seq'')::int, 0) RETURNING 1';",
        )
        .await
        .expect("setup through causeway");
    let misrouted_before = decisions(&cw, "primary", "retry_25006");

    // Each must run on the primary: those that can say so return
    // pg_is_in_recovery() = false; all must succeed.
    let hazards: &[(&str, &str)] = &[
        (
            "insert",
            "INSERT INTO rt_items VALUES (10, 0) RETURNING pg_is_in_recovery()",
        ),
        (
            "update",
            "UPDATE rt_items SET v = v + 1 WHERE k = 10 RETURNING pg_is_in_recovery()",
        ),
        (
            "delete",
            "DELETE FROM rt_items WHERE k = 10 RETURNING pg_is_in_recovery()",
        ),
        ("merge", "MERGE INTO rt_items t USING (SELECT 3 AS k) s ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = 0 WHEN NOT MATCHED THEN INSERT VALUES (s.k, 0)"),
        ("ddl", "CREATE TABLE IF NOT EXISTS rt_ddl (x int)"),
        ("for update", "SELECT pg_is_in_recovery() FROM rt_items WHERE k = 1 FOR UPDATE"),
        ("for share", "SELECT pg_is_in_recovery() FROM rt_items WHERE k = 1 FOR SHARE"),
        ("select into", "DROP TABLE IF EXISTS rt_into; SELECT 1 AS x INTO rt_into"),
        (
            "writing cte",
            "WITH d AS (DELETE FROM rt_items WHERE k = -1 RETURNING 1) SELECT pg_is_in_recovery()",
        ),
        ("nextval", "SELECT pg_is_in_recovery(), nextval('rt_seq')"),
        ("setval", "SELECT pg_is_in_recovery(), setval('rt_seq', 100)"),
        ("configured writing function", "SELECT pg_is_in_recovery(), rt_touch()"),
        ("advisory lock", "SELECT pg_is_in_recovery(), pg_try_advisory_xact_lock(42)"),
        ("listen", "LISTEN rt_chan"),
        ("notify", "NOTIFY rt_chan"),
        (
            "temp table",
            "BEGIN; CREATE TEMP TABLE rt_tmp (x int) ON COMMIT DROP; SELECT pg_is_in_recovery(); COMMIT",
        ),
        ("set", "SET work_mem = '8MB'"),
        (
            "multi-statement with a write",
            "SELECT pg_is_in_recovery(); INSERT INTO rt_items VALUES (11, 0)",
        ),
        ("explain analyze of a write", "EXPLAIN ANALYZE INSERT INTO rt_items VALUES (12, 0)"),
    ];
    for (what, sql) in hazards {
        let r = row(&client, sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: {sql}: {e}"));
        if r.first().is_some_and(|v| v == "t" || v == "f") {
            assert_eq!(r[0], "f", "{what} ran on a replica: {sql}");
        }
    }
    // COPY FROM STDIN.
    let sink = client
        .copy_in("COPY rt_items FROM STDIN")
        .await
        .expect("copy in");
    {
        use futures_util::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"20\t0\n21\t0\n"))
            .await
            .expect("copy data");
        let n = sink.as_mut().finish().await.expect("copy finish");
        assert_eq!(n, 2);
    }
    // An explicit transaction stays where it began: the primary.
    client.simple_query("BEGIN").await.unwrap();
    let (rec, _) = where_read(&client).await;
    client.simple_query("COMMIT").await.unwrap();
    assert!(!rec, "a read inside BEGIN..COMMIT ran on a replica");
    assert_eq!(
        decisions(&cw, "primary", "retry_25006"),
        misrouted_before,
        "a write reached a replica and was refused there"
    );

    // Read-only transactions go to a replica, whole.
    for begin in ["BEGIN READ ONLY", "START TRANSACTION READ ONLY"] {
        client.simple_query(begin).await.unwrap();
        let a = where_read(&client).await;
        let b = where_read(&client).await;
        client.simple_query("COMMIT").await.unwrap();
        assert!(a.0 && b.0, "{begin}: ran on the primary");
        assert_eq!(a.1, b.1, "{begin}: the transaction moved servers");
    }

    // The safety net: a function the classifier cannot know writes goes
    // to a replica, is refused there (25006) and re-runs on the primary
    // without the client noticing.
    let r = row(&client, "SELECT rt_sneaky(), pg_is_in_recovery()")
        .await
        .expect("a misrouted write is re-run on the primary");
    assert_eq!(r, vec!["1", "f"]);
    assert_eq!(
        decisions(&cw, "primary", "retry_25006"),
        misrouted_before + 1
    );

    // Manual overrides.
    let r = row(&client, "/* causeway:primary */ SELECT pg_is_in_recovery()")
        .await
        .unwrap();
    assert_eq!(r, vec!["f"], "hint ignored");
    client
        .simple_query("SET causeway.route = primary")
        .await
        .unwrap();
    assert_eq!(
        row(&client, "SHOW causeway.route").await.unwrap(),
        vec!["primary"]
    );
    assert!(
        !where_read(&client).await.0,
        "causeway.route = primary ignored"
    );
    let e = client
        .simple_query("SET causeway.route = sideways")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22023"));
    client.simple_query("RESET causeway.route").await.unwrap();
    assert!(where_read(&client).await.0, "RESET causeway.route ignored");

    // Extended protocol, unnamed statement: a replica too.
    let rows = client
        .query_typed("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("extended-protocol read");
    assert!(
        rows[0].get::<_, bool>(0),
        "unnamed extended read on the primary"
    );

    client
        .batch_execute("DROP TABLE rt_items; DROP TABLE IF EXISTS rt_into, rt_ddl; DROP SEQUENCE rt_seq; DROP FUNCTION rt_touch(); DROP FUNCTION rt_sneaky()")
        .await
        .unwrap();
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replica_gets_no_reads_then_returns_after_hold_down() {
    let (_g, c) = shared().await;
    let cw = start_cw(APP_USERS, &rt_toml(c, "replica_hold_down = 2.0", "")).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    let writer = Writer::start(c, "rt_writes").await;
    let paused = c.replica(0).port();

    blocking(|| c.pause_replay(0)).unwrap();
    let t = Instant::now();
    eventually(
        Duration::from_secs(5),
        "paused replica left out",
        || async { !spread(&client, 10).await.contains_key(&paused) },
    )
    .await;
    let took = t.elapsed();
    eprintln!("paused replica excluded after {took:?} (probe interval 250 ms)");
    let seen = spread(&client, 40).await;
    assert!(
        !seen.contains_key(&paused),
        "read on the paused replica: {seen:?}"
    );

    blocking(|| c.resume_replay(0)).unwrap();
    let t = Instant::now();
    eventually(Duration::from_secs(15), "resumed replica back", || async {
        spread(&client, 10).await.contains_key(&paused)
    })
    .await;
    let back = t.elapsed();
    eprintln!("resumed replica back after {back:?} (hold-down 2 s)");
    assert!(
        back >= Duration::from_millis(1500),
        "came back before the hold-down: {back:?}"
    );
    writer.stop().await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_replica_is_excluded_by_time_lag_with_tiny_byte_lag() {
    let (_g, c) = shared().await;
    let cw = start_cw(APP_USERS, &rt_toml(c, "max_replica_lag = 1.0", "")).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    let writer = Writer::start(c, "rt_writes").await;
    let delayed = c.replica(1).port();

    blocking(|| c.set_apply_delay(1, Duration::from_secs(2))).unwrap();
    let t = Instant::now();
    eventually(
        Duration::from_secs(10),
        "delayed replica left out",
        || async { !spread(&client, 10).await.contains_key(&delayed) },
    )
    .await;
    let took = t.elapsed();
    let seen = spread(&client, 40).await;
    assert!(
        !seen.contains_key(&delayed),
        "read on the delayed replica: {seen:?}"
    );
    let (_, body) = http_get(cw.metrics_port().unwrap(), "/metrics");
    let lag_bytes: u64 = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "causeway_replica_lag_bytes{{database=\"app\",server=\"127.0.0.1:{delayed}\"}} "
            ))
        })
        .expect("lag series for the delayed replica")
        .trim()
        .parse()
        .unwrap();
    eprintln!("delayed replica excluded after {took:?} with byte lag {lag_bytes}");
    assert!(lag_bytes < 1_000_000, "byte lag {lag_bytes}");

    blocking(|| c.set_apply_delay(1, Duration::ZERO)).unwrap();
    eventually(Duration::from_secs(20), "delayed replica back", || async {
        spread(&client, 10).await.contains_key(&delayed)
    })
    .await;
    writer.stop().await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_replica_under_read_load_gives_no_client_errors() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let cw = start_cw(APP_USERS, &rt_toml(&c, "default_pool_size = 10", "")).await;
    wait_for_replica_reads(&cw.app().await).await;
    let stopped = c.replica(1).port();

    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(cw.app().await);
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            // (when the read started, the port that served it) or the error
            let mut reads = Vec::new();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                match row(&client, "SELECT pg_is_in_recovery()::text, inet_server_port()::text, count(*) FROM pg_class").await {
                    Ok(r) => reads.push((at, r[1].parse::<u16>().unwrap())),
                    Err(e) => errors.push(e.to_string()),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (reads, errors)
        }));
    }
    // The load runs on both replicas, then replica1 stops under it.
    let d = &done;
    eventually(STEP, "200 reads under load", || async move {
        d.load(Ordering::Relaxed) >= 200
    })
    .await;
    let cc = Arc::clone(&c);
    tokio::task::spawn_blocking(move || cc.stop(cc.replica(1)))
        .await
        .unwrap()
        .expect("stop replica1");
    let stopped_at = Instant::now();
    // Reads go on after the stop: first re-run elsewhere, then steered
    // away by the monitor.
    let at_stop = done.load(Ordering::Relaxed);
    eventually(STEP, "400 reads after the stop", || async move {
        d.load(Ordering::Relaxed) >= at_stop + 400
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut after, mut on_stopped_after) = (0, 0, 0);
    for t in tasks {
        let (reads, errors) = t.await.unwrap();
        assert!(errors.is_empty(), "client-visible errors: {errors:?}");
        total += reads.len();
        for (at, port) in reads {
            if at > stopped_at {
                after += 1;
                on_stopped_after += usize::from(port == stopped);
            }
        }
    }
    let retries =
        decisions(&cw, "replica", "retry_failure") + decisions(&cw, "primary", "retry_failure");
    eprintln!(
        "{total} reads by 20 clients, 0 errors; {retries} re-run elsewhere after replica1 \
         stopped (at {:?}); {after} reads after the stop",
        stopped_at - start
    );
    assert!(total > 200 && after > 20, "the load ran: {total} / {after}");
    assert_eq!(on_stopped_after, 0, "reads served by a stopped server?");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_is_followed_without_restart_or_reload() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let cw = start_cw(APP_USERS, &rt_toml(&c, "", "")).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    client
        .batch_execute("CREATE TABLE rt_failover (id int)")
        .await
        .unwrap();

    let cc = Arc::clone(&c);
    tokio::task::spawn_blocking(move || {
        cc.stop(cc.primary())?;
        cc.promote(0)
    })
    .await
    .unwrap()
    .expect("stop primary, promote replica0");
    let new_primary = c.replica(0).port();

    // Writes succeed again through the same Causeway (a client may see
    // errors while no primary exists; it reconnects and retries).
    let t = Instant::now();
    let where_written = eventually(
        Duration::from_secs(20),
        "a write succeeds after the promotion",
        || async {
            let client = cw.app().await;
            row(
                &client,
                "INSERT INTO rt_failover VALUES (1) RETURNING pg_is_in_recovery()::text, inet_server_port()::text",
            )
            .await
        },
    )
    .await;
    eprintln!("writes succeed {:?} after the promotion", t.elapsed());
    assert_eq!(
        where_written,
        vec!["false".to_string(), new_primary.to_string()]
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_and_least_outstanding_spread_load_as_configured() {
    let (_g, c) = shared().await;
    let (light, heavy) = (c.replica(0).port(), c.replica(1).port());
    let mut toml = base_toml(
        "transaction",
        "load_balance = \"weighted\"\nconsistency = \"none\"",
    );
    toml.push_str("\n[databases.app]\ndbname = \"app\"\n");
    for (n, w) in [(c.primary(), 1), (c.replica(0), 1), (c.replica(1), 3)] {
        toml.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\nweight = {w}\n",
            n.host(),
            n.port()
        ));
    }
    let cw = start_cw(APP_USERS, &toml).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    let seen = spread(&client, 400).await;
    let share = *seen.get(&heavy).unwrap_or(&0) as f64 / 400.0;
    eprintln!("weighted 1:3 -> {seen:?} (heavy share {share:.2})");
    assert!((0.65..0.85).contains(&share), "{seen:?}");
    assert!(seen.get(&light).is_some_and(|&n| n > 40), "{seen:?}");
    cw.stop().await;

    let cw = start_cw(
        APP_USERS,
        &rt_toml(c, "load_balance = \"least_outstanding\"", ""),
    )
    .await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    // One long read occupies a replica; quick reads meanwhile go to the other.
    let slow = cw.app().await;
    let long = tokio::spawn(async move {
        row(&slow, "SELECT inet_server_port()::text, pg_sleep(1.5)")
            .await
            .map(|r| r[0].parse::<u16>().unwrap())
    });
    until_running(
        &[c.replica(0), c.replica(1)],
        "SELECT inet_server_port()::text, pg_sleep(1.5)",
    )
    .await;
    let quick = spread(&client, 20).await;
    let busy = long.await.unwrap().expect("long read");
    eprintln!("least_outstanding: long read on {busy}, quick reads {quick:?}");
    assert!(!quick.contains_key(&busy), "{quick:?}");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_routable_replica_falls_back_to_the_primary_or_errors_by_config() {
    let c = cluster().await;
    let dead = causeway_integration::free_port().unwrap();
    let db = |extra: &str| {
        let mut t = base_toml("transaction", &format!("consistency = \"none\"\n{extra}"));
        t.push_str(&format!(
            "\n[databases.app]\ndbname = \"app\"\n\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\n\n[[databases.app.servers]]\nhost = \"127.0.0.1\"\nport = {dead}\nrole = \"replica\"\n",
            c.primary().host(),
            c.primary().port()
        ));
        t
    };
    let cw = start_cw(APP_USERS, &db("")).await;
    let client = cw.app().await;
    until_monitor_probed(&cw, 0).await;
    for _ in 0..5 {
        assert!(!where_read(&client).await.0);
    }
    assert!(decisions(&cw, "primary", "no_replica") >= 5);
    cw.stop().await;

    let cw = start_cw(APP_USERS, &db("replica_unavailable = \"error\"")).await;
    let client = cw.app().await;
    until_monitor_probed(&cw, 0).await;
    let e = client
        .simple_query("SELECT 1")
        .await
        .expect_err("a read with no replica");
    assert_eq!(code(&e).as_deref(), Some("57P03"), "{}", msg(&e));
    // The session goes on and writes still work.
    client
        .simple_query("CREATE TEMP TABLE rt_x (x int)")
        .await
        .expect("writes go on");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_everything_on_the_primary() {
    let c = cluster().await;
    let mut toml = rt_toml(c, "", "");
    toml = toml.replacen("pool_mode = \"transaction\"", "pool_mode = \"session\"", 1);
    let cw = start_cw(APP_USERS, &toml).await;
    let client = cw.app().await;
    until_monitor_probed(&cw, 2).await;
    for _ in 0..5 {
        assert!(
            !where_read(&client).await.0,
            "a session-mode read on a replica"
        );
    }
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_shows_replicas_and_routing() {
    let (_g, c) = shared().await;
    let users = [("app", "app_pw"), ("admin", "admin_pw")];
    let cw = start_cw(&users, &rt_toml(c, "admin_users = [\"admin\"]", "")).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    client
        .simple_query("CREATE TEMP TABLE rt_adm (x int)")
        .await
        .unwrap();
    let adm = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    let rows: Vec<Vec<String>> = adm
        .simple_query("SHOW REPLICAS")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let primary = format!("127.0.0.1:{}", c.primary().port());
    for r in &rows {
        assert_eq!(r[0], "app");
        let expected_role = if r[1] == primary {
            "primary"
        } else {
            "replica"
        };
        assert_eq!(r[2], expected_role, "{r:?}");
        assert_eq!(r[3], "routable", "{r:?}");
    }
    let replica_served: u64 = rows
        .iter()
        .filter(|r| r[2] == "replica")
        .map(|r| r[12].parse::<u64>().unwrap())
        .sum();
    assert!(replica_served >= 2, "{rows:?}");
    let routing = adm.simple_query("SHOW ROUTING").await.unwrap();
    let mut seen = Vec::new();
    for m in routing {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            seen.push(format!(
                "{}/{}",
                r.get(1).unwrap_or(""),
                r.get(2).unwrap_or("")
            ));
        }
    }
    assert!(seen.contains(&"replica/read".to_string()), "{seen:?}");
    assert!(seen.contains(&"primary/write".to_string()), "{seen:?}");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_conflict_on_a_replica_is_retried_elsewhere() {
    let c = Arc::new(
        blocking(|| {
            Cluster::start(ClusterOptions::default().conf("max_standby_streaming_delay = 0"))
        })
        .expect("cluster"),
    );
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE rt_conf (x int); INSERT INTO rt_conf VALUES (1); GRANT ALL ON rt_conf TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let cw = start_cw(APP_USERS, &rt_toml(&c, "", "")).await;
    let client = cw.app().await;
    wait_for_replica_reads(&client).await;
    let long = tokio::spawn(async move {
        row(
            &client,
            "SELECT count(*)::text, pg_sleep(1.5)::text FROM rt_conf",
        )
        .await
    });
    until_running(
        &[c.replica(0), c.replica(1)],
        "SELECT count(*)::text, pg_sleep(1.5)::text FROM rt_conf",
    )
    .await;
    // An ACCESS EXCLUSIVE lock replayed on the replica cancels the query
    // holding a lock there (max_standby_streaming_delay = 0): 40001.
    direct
        .batch_execute("BEGIN; LOCK TABLE rt_conf IN ACCESS EXCLUSIVE MODE; COMMIT;")
        .await
        .unwrap();
    let r = long
        .await
        .unwrap()
        .expect("the cancelled read is re-run elsewhere, no error");
    assert_eq!(r[0], "1");
    let retried =
        decisions(&cw, "replica", "retry_conflict") + decisions(&cw, "primary", "retry_conflict");
    eprintln!("recovery conflict: read re-run {retried} time(s)");
    assert!(retried >= 1, "no conflict retry counted");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_cannot_log_in_does_not_take_traffic_down() {
    let c = cluster().await;
    // The monitor logs in as a role that does not exist (as with a
    // PgBouncer auth_file without `postgres`): it never sees a server.
    let users = [("app", "app_pw"), ("admin", "admin_pw")];
    let mut toml = base_toml(
        "transaction",
        "monitor_user = \"ghost\"\nadmin_users = [\"admin\"]",
    );
    toml.push_str("\n[databases.app]\ndbname = \"app\"\n");
    toml.push_str(&servers_with_roles(c));
    let cw = start_cw(&users, &toml).await;
    let client = cw.app().await;
    // Reads and writes keep working, on the configured primary.
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rt_nomon (v int); INSERT INTO rt_nomon VALUES (1)",
        )
        .await
        .unwrap_or_else(|e| panic!("write: {e}\n{}", cw.log_contents()));
    let adm = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    // Once the monitor has tried every server, it still routes by the hints.
    eventually(
        Duration::from_secs(15),
        "SHOW REPLICAS names the login error",
        || async {
            let msgs = adm.simple_query("SHOW REPLICAS").await.unwrap();
            let states: Vec<(String, String)> = msgs
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                        r.get(3).unwrap_or("").to_string(),
                        r.get(13).unwrap_or("").to_string(),
                    )),
                    _ => None,
                })
                .collect();
            states.len() == 3
                && states
                    .iter()
                    .all(|(s, e)| s == "monitor_login_refused" && e.contains("\"ghost\""))
        },
    )
    .await;
    for _ in 0..20 {
        let (replica, port) = where_read(&client).await;
        assert!(!replica && port == c.primary().port(), "read on {port}");
    }
    client
        .simple_query("INSERT INTO rt_nomon VALUES (2)")
        .await
        .unwrap();
    // The metric and /ready say so; /ready stays 200 (traffic flows).
    let port = cw.metrics_port().unwrap();
    let (_, body) = http_get(port, "/metrics");
    let errors = body
        .lines()
        .filter(|l| l.starts_with("causeway_monitor_login_error{") && l.ends_with(" 1"))
        .count();
    assert_eq!(errors, 3, "causeway_monitor_login_error:\n{body}");
    let (status, ready) = http_get(port, "/ready");
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("ghost"), "/ready: {ready}");
    // Logged once per server, however many probes failed: a few more
    // probes (monitor_interval 0.25 s) must NOT log it again.
    // sleep-ok: proves the error is NOT logged again within a window
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = cw.log_contents();
    let logged = log.matches("monitor: cannot log in").count();
    assert_eq!(logged, 3, "login errors logged {logged} times:\n{log}");
    assert!(log.contains("ghost"), "{log}");
    cw.stop().await;

    // check-config --connect finds it before Causeway runs, and passes
    // with a user that can log in.
    let dir = tempfile::tempdir().unwrap();
    let users_path = dir.path().join("userlist.txt");
    std::fs::write(&users_path, causeway_integration::userlist(&users)).unwrap();
    let cfg_path = dir.path().join("causeway.toml");
    let check = |toml: String| {
        std::fs::write(
            &cfg_path,
            toml.replace("{userlist}", &users_path.display().to_string()),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(causeway_integration::causeway_bin().unwrap());
        cmd.arg("--no-system-config")
            .arg("--config")
            .arg(&cfg_path)
            .args(["check-config", "--connect"]);
        cmd
    };
    let out = run_cmd(check(toml.clone()), STEP).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.matches("FAILED").count(), 3, "{stdout}");
    assert!(
        stdout.contains("as \"ghost\"") && stdout.contains("login refused"),
        "{stdout}"
    );
    let good = toml.replace("monitor_user = \"ghost\"", "monitor_user = \"postgres\"");
    let out = run_cmd(check(good), STEP).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("# ok").count(), 3, "{stdout}");
    assert!(
        stdout.contains(": primary at") && stdout.contains(": replica at"),
        "{stdout}"
    );
}
