//! Protocol-level named prepared statements in transaction mode
//! (`max_prepared_statements`): drivers' prepared statements across server
//! switches, PostgreSQL's answers for the edge cases (raw protocol), LRU
//! eviction, reads of prepared statements on replicas, and the
//! pass-through when it is off.

mod common;

use std::time::Duration;

use causeway_integration::frames::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::SimpleQueryMessage;

const T: Duration = Duration::from_secs(20);

/// Trust auth, transaction mode, an admin user, `top` extra lines.
async fn trust_cw(top: &str, db_extra: &str) -> Cw {
    let c = cluster().await;
    start_cw(
        &[("app", "app_pw"), ("admin", "admin_pw")],
        &(format!(
            "auth_type = \"trust\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\n\
             admin_users = [\"admin\"]\n{top}\n"
        ) + &db_entry(c, "app", db_extra)),
    )
    .await
}

/// Rows of an admin SHOW command as name -> value maps.
async fn show(cw: &Cw, what: &str) -> Vec<std::collections::HashMap<String, String>> {
    let adm = cw.connect("admin", None, "pgbouncer").await.unwrap();
    let mut rows = Vec::new();
    for m in adm.simple_query(&format!("SHOW {what}")).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            let mut map = std::collections::HashMap::new();
            for (i, c) in r.columns().iter().enumerate() {
                map.insert(c.name().to_string(), r.get(i).unwrap_or("").to_string());
            }
            rows.push(map);
        }
    }
    rows
}

fn stat(rows: &[std::collections::HashMap<String, String>], db: &str, col: &str) -> u64 {
    rows.iter()
        .find(|r| r.get("database").map(String::as_str) == Some(db))
        .and_then(|r| r.get(col))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {col} for {db} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_statements_survive_server_switches() {
    let cw = trust_cw("", "pool_size = 3").await;
    let setup = cw.connect("app", None, "app").await.unwrap();
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS prep_t; CREATE TABLE prep_t (id int primary key, v text);\
             INSERT INTO prep_t SELECT g, 'v' || g FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..20i32 {
        let conn = cw.conn_str("app", None, "app");
        tasks.push(tokio::spawn(async move {
            let client = connect_str(&conn).await.unwrap();
            let add = client.prepare("SELECT $1::int + $2::int").await.unwrap();
            let get = client
                .prepare("SELECT v FROM prep_t WHERE id = $1")
                .await
                .unwrap();
            let count = client.prepare("SELECT count(*) FROM prep_t").await.unwrap();
            for i in 0..50i32 {
                let r = client.query_one(&add, &[&n, &i]).await.unwrap();
                assert_eq!(r.get::<_, i32>(0), n + i);
                let id = (n * 50 + i) % 100 + 1;
                let r = client.query_one(&get, &[&id]).await.unwrap();
                assert_eq!(r.get::<_, String>(0), format!("v{id}"));
                let r = client.query_one(&count, &[]).await.unwrap();
                assert_eq!(r.get::<_, i64>(0), 100);
            }
        }));
    }
    for t in tasks {
        within(Duration::from_secs(60), "client", t).await.unwrap();
    }
    let stats = show(&cw, "STATS_TOTALS").await;
    let (cp, sp, b) = (
        stat(&stats, "app", "client_parse_count"),
        stat(&stats, "app", "server_parse_count"),
        stat(&stats, "app", "bind_count"),
    );
    eprintln!("client parses {cp}, server parses {sp}, binds {b}");
    assert!(cp >= 60, "client parses {cp}");
    assert!(b >= 3000, "binds {b}");
    // 3 connections x 3 statements (plus the unnamed ones of setup).
    assert!(
        sp <= 20,
        "server parses {sp} should stay near pool x statements"
    );
    let servers = show(&cw, "SERVERS").await;
    assert!(
        servers
            .iter()
            .any(|r| r["prepared_statements"].parse::<u64>().unwrap_or(0) >= 3),
        "SHOW SERVERS prepared_statements: {servers:?}"
    );
    cw.stop().await;
}

// ---------------------------------------------------------------- raw protocol

async fn raw(cw: &Cw) -> TcpStream {
    let p = startup(196608, &[("user", "app"), ("database", "app")]);
    let mut s = TcpStream::connect(("127.0.0.1", cw.port())).await.unwrap();
    s.write_all(&p).await.unwrap();
    replies(&mut s).await;
    s
}

/// Reads replies up to and including ReadyForQuery, as a compact string:
/// the tag of each message, with `D(value)` for a one-column DataRow and
/// `E(code message)` for an error.
async fn replies(s: &mut TcpStream) -> String {
    let mut out = String::new();
    loop {
        let mut head = [0u8; 5];
        within(T, "reply", s.read_exact(&mut head)).await.unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        within(T, "reply body", s.read_exact(&mut body))
            .await
            .unwrap();
        match head[0] {
            b'D' => {
                let n = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
                let v = if n < 0 {
                    "NULL".into()
                } else {
                    String::from_utf8_lossy(&body[6..6 + n as usize]).into_owned()
                };
                out.push_str(&format!("D({v})"));
            }
            b'E' => {
                let f: Vec<String> = body
                    .split(|b| *b == 0)
                    .filter(|f| matches!(f.first(), Some(b'C' | b'M')))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                    .collect();
                out.push_str(&format!("E({})", f.join(" ")));
            }
            b'S' | b'K' | b'R' | b'N' => {}
            t => out.push(t as char),
        }
        if head[0] == b'Z' {
            return out;
        }
    }
}

async fn send(s: &mut TcpStream, msgs: &[Vec<u8>]) -> String {
    s.write_all(&msgs.concat()).await.unwrap();
    replies(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_answers_like_postgres() {
    // One server connection: every client shares it.
    let cw = trust_cw("", "pool_size = 1").await;
    let mut a = raw(&cw).await;
    let mut b = raw(&cw).await;

    assert_eq!(
        send(&mut a, &[parse("s1", "select 1", &[]), sync()]).await,
        "1Z"
    );
    // The same name in another client is another statement.
    assert_eq!(
        send(
            &mut b,
            &[
                parse("s1", "select 'b'", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "12D(b)CZ"
    );
    assert_eq!(
        send(&mut a, &[bind("", "s1", &[]), execute("", 0), sync()]).await,
        "2D(1)CZ"
    );
    // Reusing an open name: PostgreSQL's 42P05, the rest skipped to Sync.
    assert_eq!(
        send(
            &mut a,
            &[
                parse("s1", "select 2", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "E(42P05 prepared statement \"s1\" already exists)Z"
    );
    // An earlier error in the pipeline is the one reported.
    assert_eq!(
        send(
            &mut a,
            &[
                parse("", "select 1/0", &[]),
                bind("", "", &[]),
                execute("", 0),
                parse("s1", "x", &[]),
                sync()
            ]
        )
        .await,
        "1E(22012 division by zero)Z"
    );
    // Close then Parse with other text runs the new text.
    assert_eq!(
        send(
            &mut a,
            &[
                close(b'S', "s1"),
                parse("s1", "select 2", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "312D(2)CZ"
    );
    // Describe of a statement, and of one never prepared.
    assert_eq!(send(&mut a, &[describe(b'S', "s1"), sync()]).await, "tTZ");
    assert_eq!(
        send(&mut a, &[bind("", "nope", &[]), execute("", 0), sync()]).await,
        "E(26000 prepared statement \"nope\" does not exist)Z"
    );
    assert_eq!(
        send(&mut a, &[describe(b'S', "nope"), sync()]).await,
        "E(26000 prepared statement \"nope\" does not exist)Z"
    );
    // Closing an unknown name is not an error.
    assert_eq!(send(&mut a, &[close(b'S', "nope"), sync()]).await, "3Z");
    // b's statement is untouched by all this.
    assert_eq!(
        send(&mut b, &[bind("", "s1", &[]), execute("", 0), sync()]).await,
        "2D(b)CZ"
    );

    // DEALLOCATE ALL / DISCARD ALL forget the client's statements.
    assert_eq!(send(&mut a, &[query("DEALLOCATE ALL")]).await, "CZ");
    assert_eq!(
        send(&mut a, &[bind("", "s1", &[]), execute("", 0), sync()]).await,
        "E(26000 prepared statement \"s1\" does not exist)Z"
    );
    assert_eq!(send(&mut b, &[query("DISCARD ALL")]).await, "CZ");
    assert_eq!(
        send(&mut b, &[bind("", "s1", &[]), sync()]).await,
        "E(26000 prepared statement \"s1\" does not exist)Z"
    );
    // ...and the server is still usable for them and others.
    assert_eq!(
        send(
            &mut a,
            &[
                parse("s1", "select 3", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "12D(3)CZ"
    );
    assert_eq!(
        send(
            &mut b,
            &[
                parse("s1", "select 3", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "12D(3)CZ"
    );

    // A client leaving mid-pipeline (no Sync) does not break the next one.
    let mut c = raw(&cw).await;
    c.write_all(
        &[
            parse("gone", "select 42", &[]),
            bind("", "gone", &[]),
            execute("", 0),
        ]
        .concat(),
    )
    .await
    .unwrap();
    // It holds the only server (a and b are idle) ...
    let cwr = &cw;
    eventually(
        T,
        "the unfinished pipeline holds the server",
        || async move { stat(&show(cwr, "POOLS").await, "app", "sv_active") == 1 },
    )
    .await;
    drop(c);
    // ... until Causeway has seen it leave and released the server.
    eventually(
        T,
        "the server released after the client left",
        || async move {
            let pools = show(cwr, "POOLS").await;
            stat(&pools, "app", "sv_active") == 0 && stat(&pools, "app", "cl_active") == 2
        },
    )
    .await;
    assert_eq!(
        send(
            &mut a,
            &[
                parse("gone", "select 43", &[]),
                bind("", "gone", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "12D(43)CZ"
    );
    assert_eq!(
        send(&mut b, &[bind("", "s1", &[]), execute("", 0), sync()]).await,
        "2D(3)CZ"
    );

    // SQL PREPARE lasts until the end of the transaction in transaction
    // mode: a later EXECUTE is an error, never another statement.
    assert_eq!(
        send(&mut a, &[query("PREPARE q AS SELECT 7; EXECUTE q")]).await,
        "CTD(7)CZ"
    );
    assert_eq!(
        send(&mut b, &[query("EXECUTE q")]).await,
        "E(26000 prepared statement \"q\" does not exist)Z"
    );

    let clients = show(&cw, "CLIENTS").await;
    assert!(
        clients.iter().any(|r| r["prepared_statements"] == "1"),
        "SHOW CLIENTS prepared_statements: {clients:?}"
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_results_right() {
    let cw = trust_cw("max_prepared_statements = 2", "pool_size = 1").await;
    let mut a = raw(&cw).await;
    let n_prepared = |rows: Vec<std::collections::HashMap<String, String>>| -> u64 {
        rows.iter()
            .map(|r| r["prepared_statements"].parse::<u64>().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    // One statement per transaction: each new one evicts the oldest.
    for i in 0..5 {
        assert_eq!(
            send(
                &mut a,
                &[parse(&format!("s{i}"), &format!("select {i}"), &[]), sync()]
            )
            .await,
            "1Z"
        );
    }
    assert!(n_prepared(show(&cw, "SERVERS").await) <= 2);
    for round in 0..4 {
        for i in [0, 3, 1, 4, 2] {
            assert_eq!(
                send(
                    &mut a,
                    &[bind("", &format!("s{i}"), &[]), execute("", 0), sync()]
                )
                .await,
                format!("2D({i})CZ"),
                "round {round}"
            );
        }
    }
    assert!(n_prepared(show(&cw, "SERVERS").await) <= 2);
    // A pipeline using all five at once: none is evicted under it.
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(bind("", &format!("s{i}"), &[]));
        all.push(execute("", 0));
    }
    all.push(sync());
    assert_eq!(send(&mut a, &all).await, "2D(0)C2D(1)C2D(2)C2D(3)C2D(4)CZ");
    // The next new statement brings the server back under the bound.
    assert_eq!(
        send(
            &mut a,
            &[
                parse("s5", "select 5", &[]),
                bind("", "s5", &[]),
                execute("", 0),
                sync()
            ]
        )
        .await,
        "12D(5)CZ"
    );
    let n = n_prepared(show(&cw, "SERVERS").await);
    assert!(n <= 2, "evicted down to max_prepared_statements: {n}");
    assert_eq!(
        send(&mut a, &[bind("", "s0", &[]), execute("", 0), sync()]).await,
        "2D(0)CZ"
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_run_on_replicas_and_writes_on_the_primary() {
    let c = cluster().await;
    let cw = start_cw(APP_USERS, &split_toml(c, "consistency = \"none\"", "")).await;
    let client = cw.app().await;
    client
        .batch_execute("DROP TABLE IF EXISTS prep_rw; CREATE TABLE prep_rw (id serial, r bool)")
        .await
        .unwrap();
    // Prepared on the primary...
    client
        .simple_query("SET causeway.route = primary")
        .await
        .unwrap();
    let read = client.prepare("SELECT pg_is_in_recovery()").await.unwrap();
    assert!(
        !client
            .query_one(&read, &[])
            .await
            .unwrap()
            .get::<_, bool>(0),
        "route = primary"
    );
    client
        .simple_query("SET causeway.route = auto")
        .await
        .unwrap();
    // ...then executed as reads: on replicas, prepared there on demand.
    let write = client
        .prepare("INSERT INTO prep_rw (r) VALUES (pg_is_in_recovery()) RETURNING r")
        .await
        .unwrap();
    // The monitor needs a probe or two before replicas take reads.
    let on_replica = std::cell::Cell::new(0);
    eventually(
        Duration::from_secs(15),
        "20 prepared reads on a replica",
        || async {
            while client
                .query_one(&read, &[])
                .await
                .unwrap()
                .get::<_, bool>(0)
            {
                on_replica.set(on_replica.get() + 1);
                if on_replica.get() >= 20 {
                    return Ok(());
                }
            }
            Err(format!("{} on a replica so far", on_replica.get()))
        },
    )
    .await;
    for _ in 0..20 {
        let r = client.query_one(&write, &[]).await.unwrap();
        assert!(!r.get::<_, bool>(0), "a prepared write ran on a replica");
    }
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_or_session_mode_passes_statements_through() {
    let c = cluster().await;
    for (mode, max) in [("session", 200), ("session", 0)] {
        let cw = start_cw(
            APP_USERS,
            &(base_toml(mode, &format!("max_prepared_statements = {max}"))
                + &db_entry(c, "app", "pool_size = 2")),
        )
        .await;
        let client = cw.app().await;
        let st = client.prepare("SELECT $1::int * 2").await.unwrap();
        for i in 0..20i32 {
            assert_eq!(
                client.query_one(&st, &[&i]).await.unwrap().get::<_, i32>(0),
                i * 2
            );
        }
        // The server holds the driver's own name.
        let names = client
            .query_one(
                "SELECT string_agg(name, ',') FROM pg_prepared_statements",
                &[],
            )
            .await
            .unwrap()
            .get::<_, Option<String>>(0)
            .unwrap_or_default();
        assert!(
            !names.contains("causeway_"),
            "{mode}/{max}: statements renamed: {names}"
        );
        drop(client);
        cw.stop().await;
    }
}

/// A prepared read a replica refuses (25006: it writes through a function
/// the classifier cannot see into) is re-run on the primary without the
/// client noticing, like any held read: the rewritten unit is rolled back
/// and replayed from the client's own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_read_refused_by_a_replica_is_retried_on_the_primary() {
    let c = cluster().await;
    let cw = start_cw(APP_USERS, &split_toml(c, "consistency = \"none\"", "")).await;
    let client = cw.app().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS prep_sneaky_t; CREATE TABLE prep_sneaky_t (x int);\
             CREATE OR REPLACE FUNCTION prep_sneaky() RETURNS bool LANGUAGE sql AS \
             'INSERT INTO prep_sneaky_t VALUES (1); SELECT pg_is_in_recovery()'",
        )
        .await
        .unwrap();
    let probe = client.prepare("SELECT pg_is_in_recovery()").await.unwrap();
    eventually(Duration::from_secs(15), "replica reads", || async {
        client
            .query_one(&probe, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    let sneaky = client.prepare("SELECT prep_sneaky()").await.unwrap();
    for i in 0..10 {
        let r = client
            .query_one(&sneaky, &[])
            .await
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert!(!r.get::<_, bool>(0), "the write ran on the primary");
    }
    let n = row(&client, "SELECT count(*) FROM prep_sneaky_t")
        .await
        .unwrap();
    assert_eq!(n, ["10"]);
    let (status, body) =
        causeway_integration::http_get(cw.metrics_port().expect("metrics port"), "/metrics");
    assert_eq!(status, 200);
    let retried: f64 = body
        .lines()
        .filter(|l| l.starts_with("causeway_routing_decisions_total") && l.contains("retry_25006"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("retried on the primary: {retried}");
    assert!(retried >= 1.0, "no 25006 retry counted");
    cw.stop().await;
}
