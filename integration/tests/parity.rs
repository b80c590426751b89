//! Causeway as indistinguishable from a direct connection as a pooler can
//! be (issue 11), against a real PostgreSQL: dead pooled connections are
//! never lent, server login errors reach each client as the server said
//! them, garbage before the StartupMessage is dropped silently, statements
//! re-prepared after a schema change are really re-parsed, psycopg's
//! pipeline error-on-commit pattern, session mode's real backend pid,
//! canonical client_encoding, RESET to the client's startup values, DROP
//! DATABASE with pooled connections to it, SQL PREPARE in transaction
//! mode. Where a behaviour is compared with PostgreSQL itself, the same
//! bytes are sent to both.

mod common;

use std::time::Duration;

use causeway_integration::eventually;
use causeway_integration::frames::*;
use causeway_integration::raw::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Generous bound for conditions on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

const USERS: &[(&str, &str)] = &[("app", "app_pw"), ("admin", "admin_pw")];

/// Causeway in `mode` with an admin user, database `app` on the primary,
/// `top` settings (default_pool_size 4 unless given) and `extra` (more
/// database entries).
async fn causeway(mode: &str, top: &str, extra: &str) -> Cw {
    start_cw(USERS, &toml(mode, top, extra).await).await
}

async fn toml(mode: &str, top: &str, extra: &str) -> String {
    let c = cluster().await;
    let pool = if top.contains("default_pool_size") {
        ""
    } else {
        "default_pool_size = 4"
    };
    base_toml(mode, &format!("admin_users = [\"admin\"]\n{pool}\n{top}"))
        + &db_entry(c, "app", "")
        + extra
}

/// The same with trust authentication, for raw protocol clients
/// ([`Raw::login`]: user and database `app`).
async fn causeway_trust(mode: &str, top: &str) -> Cw {
    let t = toml(mode, top, "")
        .await
        .replace("auth_type = \"scram-sha-256\"", "auth_type = \"trust\"");
    start_cw(USERS, &t).await
}

async fn pid(c: &Client) -> i32 {
    simple_one(c, "SELECT pg_backend_pid()")
        .await
        .expect("pg_backend_pid()")
        .parse()
        .unwrap()
}

/// Terminates backend `pid` and waits until it is gone.
async fn terminate(direct: &Client, pid: i32) {
    direct
        .simple_query(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    eventually(WAIT, "terminated backend gone", || async move {
        count_backends(direct, &format!("pid = {pid}")).await == 0
    })
    .await;
}

/// remote_pid of every server connection in SHOW SERVERS.
async fn server_pids(cw: &Cw) -> Vec<i32> {
    let a = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    let msgs = a.simple_query("SHOW SERVERS").await.unwrap();
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get("remote_pid").and_then(|p| p.parse().ok()),
            _ => None,
        })
        .collect()
}

// ------------------------------------------- 1: dead pooled connections

/// A backend killed while its connection sits in the pool is dropped at
/// once (SHOW SERVERS forgets it without any client activity) and never
/// lent: the next query, in transaction and session mode, just works.
/// Also after `DROP DATABASE ... WITH (FORCE)` and a re-create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_idle_server_connections_are_never_lent() {
    let c = cluster().await;
    let direct = &direct(c).await;
    psql_primary("DROP DATABASE IF EXISTS parity_force; CREATE DATABASE parity_force;").await;
    let force = format!(
        "\n[databases.force]\ndbname = \"parity_force\"\nhost = \"{}\"\nport = {}\n",
        c.primary().host(),
        c.primary().port()
    );
    for mode in ["transaction", "session"] {
        let cw = &causeway(mode, "", &force).await;
        // A tracked parameter of its own: the connection it gets next is
        // set up with a SET (the path that used to fail).
        let conn_str = format!(
            "{} application_name=parity_{mode}",
            cw.conn_str("app", Some("app_pw"), "app")
        );
        let a = connect_str(&conn_str).await.unwrap();
        let first = pid(&a).await;
        let a = if mode == "session" {
            drop(a); // its server goes back to the pool
            eventually(WAIT, "server back in the pool", || async move {
                count_backends(direct, &format!("pid = {first} AND state = 'idle'")).await == 1
                    && server_pids(cw).await.contains(&first)
            })
            .await;
            None
        } else {
            Some(a)
        };
        terminate(direct, first).await;
        eventually(
            WAIT,
            "dead idle connection dropped from SHOW SERVERS",
            || async move { !server_pids(cw).await.contains(&first) },
        )
        .await;
        let b = match a {
            Some(a) => a,
            None => connect_str(&conn_str).await.unwrap(),
        };
        let second = pid(&b).await;
        assert_ne!(first, second, "{mode}");
        if mode == "transaction" {
            // Killed between two transactions of the same client: the next
            // one runs on another connection. (In session mode the client
            // owns its server, and loses its session as it would directly.)
            terminate(direct, second).await;
            let third = pid(&b).await;
            assert_ne!(third, second);
        }
        drop(b);

        // The whole database dropped under the pool, and re-created.
        let f = cw.connect("app", Some("app_pw"), "force").await.unwrap();
        simple_one(&f, "SELECT 1").await.unwrap();
        if mode == "session" {
            drop(f);
            eventually(WAIT, "force connection back in the pool", || async move {
                count_backends(direct, "datname = 'parity_force' AND state = 'idle'").await == 1
            })
            .await;
        }
        psql_primary("DROP DATABASE parity_force WITH (FORCE); CREATE DATABASE parity_force;")
            .await;
        let f = cw.connect("app", Some("app_pw"), "force").await.unwrap();
        assert_eq!(
            simple_one(&f, "SELECT 41 + 1").await.unwrap(),
            "42",
            "{mode}"
        );
        drop(f);
    }
}

// ------------------------------------------------ 2: server login errors

/// A login the server refuses reaches every client as the server said it
/// (same SQLSTATE and message as directly), and is not cached: a database
/// created a moment later is usable at once. Only an unreachable server is
/// throttled for server_login_retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_login_errors_pass_through_and_are_not_cached() {
    let c = cluster().await;
    psql_primary("DROP DATABASE IF EXISTS parity_later;").await;
    let dead_port = causeway_integration::free_port().unwrap();
    let extra = format!(
        "\n[databases.later]\ndbname = \"parity_later\"\nhost = \"{h}\"\nport = {p}\n\
         \n[databases.badpw]\ndbname = \"app\"\nhost = \"{h}\"\nport = {p}\nuser = \"app\"\npassword = \"not_the_password\"\n\
         \n[databases.nowhere]\ndbname = \"app\"\nhost = \"127.0.0.1\"\nport = {dead_port}\n",
        h = c.primary().host(),
        p = c.primary().port()
    );
    let cw = causeway("transaction", "server_login_retry = 60", &extra).await;
    let direct_err = connect_str(&c.primary().conn_str("app", Some("app_pw"), "parity_later"))
        .await
        .map(drop)
        .expect_err("no such database directly");
    let direct_pw = connect_str(&c.primary().conn_str("app", Some("not_the_password"), "app"))
        .await
        .map(drop)
        .expect_err("wrong password directly");
    for _ in 0..2 {
        for (entry, code_want, direct) in [
            ("later", "3D000", &direct_err),
            ("badpw", "28P01", &direct_pw),
        ] {
            let e = cw
                .connect("app", Some("app_pw"), entry)
                .await
                .map(drop)
                .expect_err("refused");
            assert_eq!(code(&e).as_deref(), Some(code_want), "{e:?}");
            assert_eq!(msg(&e), msg(direct));
        }
    }
    psql_primary("CREATE DATABASE parity_later;").await;
    let later = cw.connect("app", Some("app_pw"), "later").await.unwrap();
    assert_eq!(
        simple_one(&later, "SELECT current_database()")
            .await
            .unwrap(),
        "parity_later"
    );

    // Nothing listens: the first client gets the connect error, the next
    // ones the throttled error at once.
    let e = cw
        .connect("app", Some("app_pw"), "nowhere")
        .await
        .err()
        .unwrap();
    assert_eq!(code(&e).as_deref(), Some("08006"), "{e:?}");
    let e = cw
        .connect("app", Some("app_pw"), "nowhere")
        .await
        .err()
        .unwrap();
    assert!(msg(&e).contains("server_login_retry"), "{}", msg(&e));
    drop(later);
    cw.stop().await;
}

// ------------------------------------- 4: garbage before StartupMessage

/// Reads everything the server sends until it closes.
async fn reply_to(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = within(WAIT, "connection closed", s.read_to_end(&mut out)).await;
    out
}

/// What kind of answer a first packet got: nothing, a v3 error's
/// SQLSTATE, or raw text (a protocol-2 error).
fn answer(reply: &[u8]) -> String {
    match reply.first() {
        None => "closed silently".into(),
        Some(b'E') if reply.get(1) == Some(&0) => format!("error {}", field(&reply[5..], b'C')),
        Some(_) => format!("text {}", text(reply)),
    }
}

/// A Terminate, TLS/HTTP bytes, a bad length or a short CancelRequest
/// before the StartupMessage: Causeway answers exactly as PostgreSQL does
/// (mostly by closing without a reply), and keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_startup_closes_silently() {
    let c = cluster().await;
    let cw = causeway("transaction", "", "").await;
    let mut cancel_short = 12i32.to_be_bytes().to_vec();
    cancel_short.extend_from_slice(&80877102i32.to_be_bytes());
    cancel_short.extend_from_slice(&[0, 0, 0, 1]);
    let mut no_terminator = 16i32.to_be_bytes().to_vec();
    no_terminator.extend_from_slice(&V3_0.to_be_bytes());
    no_terminator.extend_from_slice(b"user\0pos");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Terminate", message(b'X', b"")),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "TLS ClientHello",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        ),
        ("length 4", 4i32.to_be_bytes().to_vec()),
        ("short CancelRequest", cancel_short),
        ("no terminator", no_terminator),
        ("protocol 2.0", startup(0x0002_0000, &[("user", "app")])),
        ("protocol 4.0", startup(0x0004_0000, &[("user", "app")])),
    ];
    for (what, bytes) in &cases {
        let pg = answer(&reply_to(c.primary().port(), bytes).await);
        let cwr = answer(&reply_to(cw.port(), bytes).await);
        assert_eq!(cwr, pg, "{what}");
    }
    let app = cw.app().await;
    assert_eq!(simple_one(&app, "SELECT 1").await.unwrap(), "1");
    cw.stop().await;
}

// -------------------------------- 3: re-prepared after a schema change

/// Runs `stmt` (prepared earlier) and returns its first column as text,
/// or the SQLSTATE it failed with.
async fn run_prepared(c: &Client, stmt: &tokio_postgres::Statement) -> Result<String, String> {
    match c.query(stmt, &[]).await {
        Ok(rows) => Ok(rows
            .first()
            .map(|r| match r.try_get::<_, String>(0) {
                Ok(s) => s,
                Err(_) => r.get::<_, i32>(0).to_string(),
            })
            .unwrap_or_default()),
        Err(e) => Err(code(&e).unwrap_or_else(|| format!("{e}"))),
    }
}

/// After `ALTER TABLE ... TYPE`, a statement prepared before fails with
/// 0A000 (as directly), and a new Parse of the same text, by the same
/// client or a brand-new one, is really parsed and runs: the outdated
/// server statement is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_reprepared_after_schema_change_is_reparsed() {
    let c = cluster().await;
    let cw = causeway("transaction", "default_pool_size = 1", "").await;
    for (via, table) in [
        ("direct", "parity_alter_direct"),
        ("causeway", "parity_alter_cw"),
    ] {
        psql_primary(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (a int); INSERT INTO {table} VALUES (7); GRANT ALL ON {table} TO app;"
        ))
        .await;
        let connect = || async {
            match via {
                "direct" => connect_str(&c.primary().conn_str("app", Some("app_pw"), "app"))
                    .await
                    .unwrap(),
                _ => cw.app().await,
            }
        };
        let a = connect().await;
        let sql = format!("SELECT a FROM {table}");
        let old = a.prepare(&sql).await.unwrap();
        assert_eq!(run_prepared(&a, &old).await, Ok("7".into()), "{via}");
        psql_primary(&format!("ALTER TABLE {table} ALTER a TYPE text")).await;
        assert_eq!(
            run_prepared(&a, &old).await,
            Err("0A000".into()),
            "{via}: prepared before"
        );
        let new = a.prepare(&sql).await.unwrap();
        assert_eq!(
            run_prepared(&a, &new).await,
            Ok("7".into()),
            "{via}: re-prepared"
        );
        let b = connect().await;
        let fresh = b.prepare(&sql).await.unwrap();
        assert_eq!(
            run_prepared(&b, &fresh).await,
            Ok("7".into()),
            "{via}: new client"
        );
        assert_eq!(
            run_prepared(&a, &old).await,
            Err("0A000".into()),
            "{via}: still outdated"
        );
    }
    cw.stop().await;
}

// --------------------------------- 5: errors inside an unsynced pipeline

/// An error for extended-protocol requests reaches the client at its
/// Flush or Sync (the protocol promises nothing earlier): a client that
/// flushes gets the error without a ReadyForQuery, one that syncs gets both,
/// and the session goes on. psycopg's error-on-commit pattern, which
/// depends on this, runs 300 times in the driver tests (drivers.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_errors_arrive_at_flush_or_sync() {
    for mode in ["session", "transaction"] {
        let cw = causeway_trust(mode, "").await;
        let mut r = Raw::login(&cw).await;
        let mut batch = Vec::new();
        batch.extend(pbe("SELECT 1/0", &[]));
        batch.extend(pbe("SELECT 2", &[]));
        batch.extend(flush());
        r.send(&batch).await;
        let mut got = Vec::new();
        while got.last().map(|(t, _): &(u8, Vec<u8>)| *t) != Some(b'E') {
            got.push(r.recv().await.expect("replies up to the error at Flush"));
        }
        // ParseComplete, then the error (1/0 is folded at Bind); no
        // ReadyForQuery before the Sync.
        assert_eq!(tags(&got), "1E", "{mode}");
        assert_eq!(field(&got[1].1, b'C'), "22012", "{mode}");
        r.send(&sync()).await;
        let msgs = r.until_ready().await;
        assert_eq!(
            tags(&msgs),
            "Z",
            "{mode}: the skipped SELECT 2 answers nothing"
        );
        assert_eq!(r.simple("SELECT 3").await.0, vec!["3"], "{mode}");
        cw.stop().await;
    }
}

// ------------------------------------- 7: session mode's real backend pid

/// Session mode: BackendKeyData carries the server's real pid (what
/// `pg_backend_pid()` says), a CancelRequest with it (and Causeway's own
/// secret) cancels the client's query, and `pg_terminate_backend(
/// pg_backend_pid())` ends this client's session only, as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_tells_the_real_backend_pid() {
    let cw = causeway_trust("session", "").await;
    let mut a = Raw::login(&cw).await;
    let mut b = Raw::login(&cw).await;
    let pid: i32 = a.simple("SELECT pg_backend_pid()").await.0[0]
        .parse()
        .unwrap();
    assert_eq!(a.key.0, pid, "BackendKeyData pid");
    assert_ne!(b.key.0, pid);

    // Cancel with the key the client was given.
    a.send(&query("SELECT pg_sleep(30)")).await;
    let direct = direct(cluster().await).await;
    eventually(WAIT, "pg_sleep running", || {
        let d = &direct;
        async move { count_backends(d, &format!("pid = {pid} AND state = 'active'")).await == 1 }
    })
    .await;
    let mut cancel = Vec::new();
    cancel.extend_from_slice(&16i32.to_be_bytes());
    cancel.extend_from_slice(&80877102i32.to_be_bytes());
    cancel.extend_from_slice(&a.key.0.to_be_bytes());
    cancel.extend_from_slice(&a.key.1);
    reply_to(cw.port(), &cancel).await;
    let msgs = a.until_ready().await;
    assert_eq!(errors(&msgs), vec!["57014"]);

    // Terminating "my" backend ends my session, nobody else's.
    a.send(&query("SELECT pg_terminate_backend(pg_backend_pid())"))
        .await;
    let mut last = None;
    while let Some(m) = a.recv().await {
        last = Some(m);
    }
    let (t, body) = last.expect("an error before EOF");
    assert_eq!((t, field(&body, b'C')), (b'E', "57P01".into()));
    assert_eq!(b.simple("SELECT 1").await.0, vec!["1"]);
    cw.stop().await;
}

// ------------------------------- 8: parameters in the server's spelling

/// client_encoding is reported as the server spells it (`utf8` -> `UTF8`)
/// in every mode; in session mode every startup value is (DateStyle
/// `iso` -> `ISO, MDY`), and a value the server refuses fails the login
/// with the server's error, as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_reported_as_the_server_spells_them() {
    for mode in ["session", "transaction"] {
        let cw = causeway_trust(mode, "").await;
        let r = Raw::login_with(
            &cw,
            V3_0,
            &[("client_encoding", "utf8"), ("DateStyle", "iso")],
        )
        .await;
        assert_eq!(
            r.reported("client_encoding").as_deref(),
            Some("UTF8"),
            "{mode}"
        );
        if mode == "session" {
            assert_eq!(
                r.reported("DateStyle").as_deref(),
                Some("ISO, MDY"),
                "{mode}"
            );
            let e = Raw::login_at(
                cw.port(),
                V3_0,
                &[
                    ("user", "app"),
                    ("database", "app"),
                    ("DateStyle", "nonsense"),
                ],
            )
            .await
            .err()
            .expect("refused");
            let code = e.iter().find(|(k, _)| *k == b'C').map(|(_, v)| v.as_str());
            assert_eq!(code, Some("22023"), "{e:?}");
        }
        cw.stop().await;
    }
}

// -------------------------------- 9: RESET restores the startup values

/// RESET x, RESET ALL and DISCARD ALL restore what the client asked for at
/// startup, not the pooled connection's own startup values, in every pool
/// mode; values set after startup are reset as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_restores_the_clients_startup_values() {
    let c = cluster().await;
    for via in ["direct", "session", "transaction"] {
        let cw = match via {
            "direct" => None,
            mode => Some(causeway(mode, "", "").await),
        };
        let base = match &cw {
            None => c.primary().conn_str("app", Some("app_pw"), "app"),
            Some(cw) => cw.conn_str("app", Some("app_pw"), "app"),
        };
        let client = connect_str(&format!(
            "{base} application_name=parity_reset options='-c DateStyle=German -c TimeZone=Asia/Tokyo -c search_path=pg_catalog,public'"
        ))
        .await
        .unwrap();
        let show = |what: &'static str| {
            let client = &client;
            async move { simple_one(client, &format!("SHOW {what}")).await.unwrap() }
        };
        client
            .batch_execute("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'UTC'")
            .await
            .unwrap();
        client.batch_execute("RESET DateStyle").await.unwrap();
        assert_eq!(show("DateStyle").await, "German, DMY", "{via}: RESET x");
        assert_eq!(show("TimeZone").await, "UTC", "{via}: not reset");
        client
            .batch_execute(
                "SET application_name = 'other'; SET search_path = public; SET work_mem = '7MB'",
            )
            .await
            .unwrap();
        client.batch_execute("RESET ALL").await.unwrap();
        assert_eq!(show("TimeZone").await, "Asia/Tokyo", "{via}: RESET ALL");
        assert_eq!(show("application_name").await, "parity_reset", "{via}");
        assert_eq!(show("search_path").await, "pg_catalog,public", "{via}");
        assert_eq!(show("work_mem").await, "4MB", "{via}: not a startup value");
        client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        client.batch_execute("DISCARD ALL").await.unwrap();
        assert_eq!(show("TimeZone").await, "Asia/Tokyo", "{via}: DISCARD ALL");
        drop(client);
        if let Some(cw) = cw {
            cw.stop().await;
        }
    }
}

// ------------------------- 10: DROP DATABASE with pooled connections to it

/// DROP DATABASE (extended protocol), ALTER DATABASE ... RENAME and CREATE
/// DATABASE ... TEMPLATE of a database Causeway holds idle pooled
/// connections to: they are closed first, so the statements succeed as
/// directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_ddl_closes_idle_pooled_connections() {
    let c = cluster().await;
    psql_primary("ALTER ROLE app CREATEDB").await;
    for mode in ["transaction", "session"] {
        let names = [
            "parity_ddl_a",
            "parity_ddl_b",
            "parity_ddl_c",
            "parity_ddl_copy",
        ];
        let mut setup = String::new();
        for n in names {
            setup.push_str(&format!("DROP DATABASE IF EXISTS {n};\n"));
        }
        for n in &names[..3] {
            setup.push_str(&format!("CREATE DATABASE {n} OWNER app;\n"));
        }
        psql_primary(&setup).await;
        let mut extra = String::new();
        for (entry, n) in [
            ("ddl_a", names[0]),
            ("ddl_b", names[1]),
            ("ddl_c", names[2]),
        ] {
            extra.push_str(&format!(
                "\n[databases.{entry}]\ndbname = \"{n}\"\nhost = \"{}\"\nport = {}\n",
                c.primary().host(),
                c.primary().port()
            ));
        }
        let cw = causeway(mode, "", &extra).await;
        // One pooled connection to each (idle once the client has gone).
        for entry in ["ddl_a", "ddl_b", "ddl_c"] {
            let x = cw.connect("app", Some("app_pw"), entry).await.unwrap();
            assert_eq!(simple_one(&x, "SELECT 1").await.unwrap(), "1");
        }
        let direct = &direct(c).await;
        eventually(
            WAIT,
            "idle pooled connections to the three databases",
            || async move {
                count_backends(direct, "datname LIKE 'parity_ddl_%' AND state = 'idle'").await == 3
            },
        )
        .await;
        let app = cw.app().await;
        app.execute(&format!("DROP DATABASE {}", names[0]), &[])
            .await
            .unwrap_or_else(|e| panic!("{mode}: DROP DATABASE: {}", msg(&e)));
        app.batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}_renamed",
            names[1], names[1]
        ))
        .await
        .unwrap_or_else(|e| panic!("{mode}: ALTER DATABASE RENAME: {}", msg(&e)));
        app.batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            names[3], names[2]
        ))
        .await
        .unwrap_or_else(|e| panic!("{mode}: CREATE DATABASE TEMPLATE: {}", msg(&e)));
        drop(app);
        cw.stop().await;
        psql_primary(&format!(
            "DROP DATABASE {b}_renamed; DROP DATABASE {}; DROP DATABASE {};",
            names[2],
            names[3],
            b = names[1]
        ))
        .await;
    }
}

// ------------------------------ 6: SQL PREPARE / EXECUTE in transaction mode

/// Runs `sql` as a simple Query: the first column of its last row, or the
/// SQLSTATE it failed with.
async fn outcome(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(msgs) => msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .last()
            .unwrap_or_else(|| "ok".into()),
        Err(e) => code(&e).unwrap_or_else(|| format!("{e}")),
    }
}

/// SQL PREPARE in one transaction and EXECUTE in later ones (on another
/// server: a second client holds the first meanwhile), DEALLOCATE, a name
/// prepared twice, a failed PREPARE: every outcome as on a direct
/// connection. Then SQL EXECUTE / DEALLOCATE of a driver's protocol-level
/// statement (renamed on the servers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepared_statements_follow_the_client() {
    let c = cluster().await;
    let cw = causeway("transaction", "default_pool_size = 2", "").await;
    let mut results = Vec::new();
    for via in ["direct", "causeway"] {
        let connect = || async {
            match via {
                "direct" => connect_str(&c.primary().conn_str("app", Some("app_pw"), "app"))
                    .await
                    .unwrap(),
                _ => cw.app().await,
            }
        };
        let (a, b) = (connect().await, connect().await);
        let mut got = Vec::new();
        got.push(outcome(&a, "PREPARE q (int) AS SELECT $1 * 2").await);
        got.push(outcome(&b, "BEGIN").await);
        for sql in [
            "EXECUTE q(21)",
            "BEGIN; EXECUTE q(5); COMMIT",
            "PREPARE q AS SELECT 1",
            "PREPARE r AS SELECT 'r'; PREPARE s AS SELECT 's'",
            "EXECUTE s",
            "PREPARE bad AS SELECT no_such_column",
            "EXECUTE bad",
            "DEALLOCATE q",
            "EXECUTE q(1)",
        ] {
            got.push(outcome(&a, sql).await);
        }
        got.push(outcome(&b, "COMMIT").await);
        got.push(outcome(&a, "EXECUTE r").await);
        got.push(outcome(&a, "DEALLOCATE ALL").await);
        got.push(outcome(&a, "EXECUTE r").await);
        results.push(got);
    }
    assert_eq!(results[1], results[0], "through Causeway vs direct");
    assert_eq!(results[0][2], "42", "{:?}", results[0]);
    cw.stop().await;

    // A driver's named statement, used from SQL.
    let cw = causeway_trust("transaction", "default_pool_size = 2").await;
    let mut r = Raw::login(&cw).await;
    let mut holder = Raw::login(&cw).await;
    let mut m = parse("drv", "SELECT $1::int + 1", &[]);
    m.extend(sync());
    r.send(&m).await;
    assert_eq!(tags(&r.until_ready().await), "1Z");
    holder.simple("BEGIN").await; // the next unit runs on another server
    assert_eq!(r.simple("EXECUTE drv(41)").await.0, vec!["42"]);
    assert_eq!(r.simple("BEGIN; EXECUTE drv(1); COMMIT").await.0, vec!["2"]);
    holder.simple("COMMIT").await;
    r.simple("DEALLOCATE drv").await;
    r.send(&query("EXECUTE drv(1)")).await;
    let msgs = r.until_ready().await;
    assert_eq!(errors(&msgs), vec!["26000"]);
    let (_, e) = msgs.iter().find(|(t, _)| *t == b'E').unwrap();
    assert_eq!(field(e, b'M'), "prepared statement \"drv\" does not exist");
    cw.stop().await;
}
