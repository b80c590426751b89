//! The admin console (virtual database `pgbouncer`) and `/metrics`, against
//! a real primary.

mod common;

use std::time::Duration;

use std::io::Write;

use causeway_integration::http_get;
use common::*;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

const ADMIN_USERS: &[(&str, &str)] = &[
    ("app", "app_pw"),
    ("admin", "admin_pw"),
    ("watcher", "watch_pw"),
];

async fn start() -> Cw {
    let c = cluster().await;
    let toml = format!(
        "{}{}",
        base_toml(
            "transaction",
            "admin_users = [\"admin\"]\nstats_users = [\"watcher\"]\ndefault_pool_size = 2\n"
        ),
        db_entry(c, "app", "")
    );
    start_cw(ADMIN_USERS, &toml).await
}

async fn admin(cw: &Cw, user: &str, pw: &str) -> Client {
    cw.connect(user, Some(pw), "pgbouncer")
        .await
        .unwrap_or_else(|e| panic!("admin login as {user}: {e}"))
}

async fn rows(c: &Client, sql: &str) -> Vec<SimpleQueryRow> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn columns(r: &SimpleQueryRow) -> Vec<&str> {
    r.columns().iter().map(|c| c.name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_use_pgbouncer_columns() {
    let cw = start().await;
    let app = cw.app().await;
    simple_one(&app, "SELECT 1").await.unwrap();
    let a = admin(&cw, "admin", "admin_pw").await;

    let pools = rows(&a, "SHOW POOLS").await;
    assert_eq!(
        columns(&pools[0]),
        [
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "load_balance_hosts",
            "cl_pinned"
        ]
    );
    let row = pools
        .iter()
        .find(|r| r.get("user") == Some("app"))
        .expect("app pool");
    assert_eq!(row.get("database"), Some("app"));
    assert_eq!(
        row.get("sv_idle"),
        Some("1"),
        "the server used by SELECT 1 is idle again"
    );
    assert_eq!(row.get("pool_mode"), Some("transaction"));

    let totals = rows(&a, "SHOW STATS_TOTALS").await;
    assert_eq!(
        columns(&totals[0]),
        [
            "database",
            "server_assignment_count",
            "xact_count",
            "query_count",
            "bytes_received",
            "bytes_sent",
            "xact_time",
            "query_time",
            "wait_time",
            "client_parse_count",
            "server_parse_count",
            "bind_count"
        ]
    );
    let xacts: u64 = totals[0].get("xact_count").unwrap().parse().unwrap();
    assert!(xacts >= 1, "SELECT 1 counted");
    // PgBouncer's 23, then `total_requests` for old exporters.
    assert_eq!(rows(&a, "SHOW STATS").await[0].columns().len(), 24);

    let clients = rows(&a, "SHOW CLIENTS").await;
    assert_eq!(
        columns(&clients[0]),
        [
            "type",
            "user",
            "database",
            "replication",
            "state",
            "addr",
            "port",
            "local_addr",
            "local_port",
            "connect_time",
            "request_time",
            "wait",
            "wait_us",
            "close_needed",
            "ptr",
            "link",
            "remote_pid",
            "tls",
            "application_name",
            "prepared_statements",
            "id"
        ]
    );
    assert!(clients
        .iter()
        .any(|r| r.get("user") == Some("app") && r.get("state") == Some("idle")));
    let servers = rows(&a, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].get("type"), Some("S"));
    assert_eq!(
        columns(&rows(&a, "SHOW DATABASES").await[0])[..6],
        [
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_size"
        ]
    );
    let lists = rows(&a, "SHOW LISTS").await;
    assert!(lists
        .iter()
        .any(|r| r.get("list") == Some("free_servers") && r.get("items") == Some("1")));
    let config = rows(&a, "SHOW CONFIG").await;
    assert_eq!(
        columns(&config[0]),
        ["key", "value", "default", "changeable"]
    );
    assert!(config
        .iter()
        .any(|r| r.get("key") == Some("default_pool_size") && r.get("value") == Some("2")));
    assert!(rows(&a, "SHOW VERSION").await[0]
        .get("version")
        .unwrap()
        .contains("Causeway"));

    // SET changes a live setting.
    a.simple_query("SET default_pool_size = 3").await.unwrap();
    let config = rows(&a, "SHOW CONFIG").await;
    assert!(config
        .iter()
        .any(|r| r.get("key") == Some("default_pool_size") && r.get("value") == Some("3")));
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_users_may_only_show_and_others_are_refused() {
    let cw = start().await;
    let w = admin(&cw, "watcher", "watch_pw").await;
    assert_eq!(rows(&w, "SHOW LISTS").await.len(), 14);
    let e = w.simple_query("PAUSE").await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("42501"));
    let e = cw
        .connect("app", Some("app_pw"), "pgbouncer")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("28000"));
    let e = cw
        .connect("admin", Some("wrong"), "pgbouncer")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("28P01"));
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_transactions_then_resume_lets_clients_go_on() {
    let cw = start().await;
    let a = cw.app().await;
    let b = cw.app().await;
    let adm = admin(&cw, "admin", "admin_pw").await;
    let watch = admin(&cw, "admin", "admin_pw").await;
    a.simple_query("BEGIN; SELECT 1").await.unwrap();
    // PAUSE returns only when A's transaction has released its server.
    let pause = tokio::spawn(async move {
        adm.simple_query("PAUSE app").await.unwrap();
        adm
    });
    let w = &watch;
    eventually(STEP, "SHOW DATABASES: app paused", || async move {
        let dbs = rows(w, "SHOW DATABASES").await;
        dbs.iter()
            .any(|r| r.get("name") == Some("app") && r.get("paused") == Some("1"))
    })
    .await;
    // PAUSE took effect; a wrong reply (not waiting for A) would arrive now.
    // sleep-ok: proves PAUSE does NOT return within a window
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction was open"
    );
    a.simple_query("COMMIT").await.unwrap();
    let adm = within(STEP, "PAUSE after COMMIT", pause).await.unwrap();
    // Paused: B waits (no error) ...
    let q = tokio::spawn(async move { simple_one(&b, "SELECT 42").await });
    eventually(STEP, "SHOW POOLS: B waiting on app", || async move {
        let pools = rows(w, "SHOW POOLS").await;
        pools
            .iter()
            .any(|r| r.get("database") == Some("app") && r.get("cl_waiting") == Some("1"))
    })
    .await;
    assert!(!q.is_finished(), "a query ran while paused");
    // ... and goes on after RESUME.
    adm.simple_query("RESUME app").await.unwrap();
    let got = within(STEP, "query after RESUME", q)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "42");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_closes_that_client_only() {
    let cw = start().await;
    let victim = cw.app().await;
    let other = cw.app().await;
    simple_one(&victim, "SET application_name = 'victim'")
        .await
        .ok();
    let adm = admin(&cw, "admin", "admin_pw").await;
    let clients = rows(&adm, "SHOW CLIENTS").await;
    let id = clients
        .iter()
        .find(|r| r.get("user") == Some("app") && r.get("application_name") == Some("victim"))
        .or_else(|| clients.iter().find(|r| r.get("user") == Some("app")))
        .and_then(|r| r.get("id"))
        .unwrap()
        .to_string();
    adm.simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap();
    let (adm, id) = (&adm, id.as_str());
    eventually(
        STEP,
        "killed client no longer in SHOW CLIENTS",
        || async move {
            let after = rows(adm, "SHOW CLIENTS").await;
            let ids: Vec<String> = after
                .iter()
                .filter_map(|r| r.get("id").map(str::to_string))
                .collect();
            if ids.iter().any(|i| i == id) {
                Err(ids)
            } else {
                Ok(())
            }
        },
    )
    .await;
    // Exactly one of the two app clients was killed; the other still works.
    let (a, b) = (
        simple_one(&victim, "SELECT 1").await,
        simple_one(&other, "SELECT 1").await,
    );
    assert!(a.is_ok() != b.is_ok(), "one killed, one alive: {a:?} {b:?}");
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_valid_prometheus_text() {
    let cw = start().await;
    let app = cw.app().await;
    for _ in 0..5 {
        simple_one(&app, "SELECT 1").await.unwrap();
    }
    let port = cw.metrics_port().expect("metrics port");
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let line = body
        .lines()
        .find(|l| l.starts_with("causeway_transactions_total{database=\"app\"}"))
        .unwrap_or_else(|| panic!("no transaction counter in\n{body}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5.0, "{line}");
    assert!(body.contains("causeway_server_connections{"));
    let (h, _) = tokio::task::spawn_blocking(move || http_get(port, "/health"))
        .await
        .unwrap();
    assert_eq!(h, 200);
    let (r, _) = tokio::task::spawn_blocking(move || http_get(port, "/ready"))
        .await
        .unwrap();
    assert_eq!(r, 200);
    // promtool (Debian's `prometheus` package, installed by .ci/run) accepts it.
    if std::env::var("CAUSEWAY_SKIP_PROMTOOL").is_err() {
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect(
                "promtool on PATH (apt-get install prometheus) or set CAUSEWAY_SKIP_PROMTOOL=1",
            );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cw.stop().await;
}

/// SHOW DATABASES after a RELOAD shows the entry as reloaded: settings
/// applied in place (pool_size, pool_mode, max_db_connections) and a new
/// host (the database rebuilt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_databases_follows_reload() {
    let c = cluster().await;
    let cw = start().await;
    let app = cw.app().await;
    simple_one(&app, "SELECT 1").await.unwrap();
    let a = admin(&cw, "admin", "admin_pw").await;
    let get = |r: &[SimpleQueryRow]| {
        let r = r
            .iter()
            .find(|r| r.get("name") == Some("app"))
            .expect("app in SHOW DATABASES");
        ["host", "pool_size", "pool_mode", "max_connections"]
            .map(|k| r.get(k).unwrap_or("").to_string())
    };
    assert_eq!(
        get(&rows(&a, "SHOW DATABASES").await),
        ["127.0.0.1", "2", "", "0"].map(String::from)
    );
    // The file as started (its userlist path filled in), with the entry swapped.
    let started = std::fs::read_to_string(cw.config_path()).unwrap();
    let plain = db_entry(c, "app", "");
    assert!(started.contains(&plain));
    let base = |db: &str| started.replace(&plain, db);
    // Settings only: the database stays, its entry is swapped in place.
    cw.rewrite_config(&base(&db_entry(
        c,
        "app",
        "pool_size = 7\npool_mode = \"session\"\nmax_db_connections = 9",
    )))
    .unwrap();
    rows(&a, "RELOAD").await;
    assert_eq!(
        get(&rows(&a, "SHOW DATABASES").await),
        ["127.0.0.1", "7", "session", "9"].map(String::from)
    );
    // A new host: the database is rebuilt on it.
    let moved = db_entry(c, "app", "pool_size = 5").replace("\"127.0.0.1\"", "\"localhost\"");
    cw.rewrite_config(&base(&moved)).unwrap();
    rows(&a, "RELOAD").await;
    assert_eq!(
        get(&rows(&a, "SHOW DATABASES").await),
        ["localhost", "5", "", "0"].map(String::from)
    );
    // And clients reach it there.
    let app = cw.app().await;
    simple_one(&app, "SELECT 1").await.unwrap();
    cw.stop().await;
}

/// A client that has sent nothing since its welcome waits parked, without
/// a task (session/park.rs): KILL_CLIENT still reaches it, and the client
/// beside it still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_reaches_a_parked_client() {
    let cw = start().await;
    let victim = cw.app().await;
    let adm = admin(&cw, "admin", "admin_pw").await;
    let id = rows(&adm, "SHOW CLIENTS")
        .await
        .iter()
        .find(|r| r.get("user") == Some("app"))
        .and_then(|r| r.get("id"))
        .expect("the app client in SHOW CLIENTS")
        .to_string();
    let other = cw.app().await;
    adm.simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap();
    let victim = &victim;
    eventually(STEP, "the parked client is closed", || async move {
        match victim.is_closed() {
            true => Ok(()),
            false => Err("still open"),
        }
    })
    .await;
    assert_eq!(simple_one(&other, "SELECT 7").await.unwrap(), "7");
    cw.stop().await;
}
