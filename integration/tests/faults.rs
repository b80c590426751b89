//! Dead and misbehaving peers, through the fault proxy
//! (`causeway_integration::faults`): a server black-holed mid-query,
//! mid-login, while idle in the pool and during a cancel, a server reply
//! cut mid-message, and clients vanishing mid-COPY and mid-result. Each
//! time the affected client gets the right SQLSTATE within the configured
//! timeout, a client of another database carries on throughout, and
//! nothing leaks: Causeway's server connections match the backends on the
//! primary and the relay's connections, and its open file descriptors come
//! back to what its clients and servers account for.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_integration::eventually;
use causeway_integration::faults::{Dir, Fault, FaultProxy};
use common::*;
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Generous bound for an outcome that the settings below make quick.
const T: Duration = Duration::from_secs(30);

const USERS: &[(&str, &str)] = &[("app", "app_pw"), ("admin", "admin_pw")];

/// query_timeout 4 s, internal_query_timeout 2 s, server_connect_timeout
/// 3 s; every reuse runs the server check (server_check_delay 0).
const TOP: &str = "admin_users = [\"admin\"]\ndefault_pool_size = 4\nquery_timeout = 4\n\
internal_query_timeout = 2\nserver_connect_timeout = 3\nserver_check_delay = 0\n\
server_login_retry = 0\n";

struct Rig {
    cw: Cw,
    /// Between Causeway and the primary, for database `app`.
    server: FaultProxy,
    /// Between the clients and Causeway.
    client: FaultProxy,
    admin: Client,
    direct: Client,
    /// File descriptors not accounted for by clients and servers, at the start.
    base_overhead: i64,
}

impl Rig {
    /// A client of `app` through the client-side relay.
    async fn app_via_proxy(&self) -> Client {
        connect_str(&format!(
            "host=127.0.0.1 port={} user=app password=app_pw dbname=app connect_timeout=10",
            self.client.port()
        ))
        .await
        .expect("connect through the client relay")
    }

    async fn rows(&self, sql: &str) -> Vec<tokio_postgres::SimpleQueryRow> {
        self.admin
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Server connections Causeway holds for database `db`.
    async fn servers(&self, db: &str) -> usize {
        self.rows("SHOW SERVERS")
            .await
            .iter()
            .filter(|r| r.get("database") == Some(db))
            .count()
    }

    /// Open fds of the Causeway process minus its client and server
    /// sockets (SHOW CLIENTS + SHOW SERVERS): listeners, runtime, logs.
    async fn overhead(&self) -> i64 {
        let accounted =
            self.rows("SHOW SERVERS").await.len() + self.rows("SHOW CLIENTS").await.len();
        fds(self.cw.pid()) as i64 - accounted as i64
    }

    /// Backends of database `app` for user `app` on the primary (the
    /// bystander's database `healthy` is the primary's `postgres`).
    async fn backends(&self) -> i64 {
        count_backends(&self.direct, "usename = 'app' AND datname = 'app'").await
    }

    /// Nothing leaked: Causeway's server connections for `app` are exactly
    /// the relay's connections and the primary's backends, and no file
    /// descriptor is left beyond what clients and servers account for.
    async fn assert_no_leak(&self, what: &str) {
        let what = format!("{what}: no leaked connection or fd");
        eventually(T, &what, || async {
            let servers = self.servers("app").await;
            let relayed = self.server.open_connections();
            let backends = self.backends().await;
            let overhead = self.overhead().await;
            let ok = servers == relayed
                && backends == servers as i64
                && overhead <= self.base_overhead;
            if !ok {
                eprintln!(
                    "{what}: servers {servers} relayed {relayed} backends {backends} fd overhead {overhead} (base {})",
                    self.base_overhead
                );
            }
            ok
        })
        .await;
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn sqlstate(r: &Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>) -> Option<String> {
    r.as_ref().err().and_then(code)
}

/// A client of the `healthy` database (straight to the primary) running
/// `SELECT 1` in a loop: it must never fail while `app` suffers.
struct Bystander {
    done: Arc<AtomicUsize>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    async fn start(cw: &Cw) -> Bystander {
        let client = cw
            .connect("app", Some("app_pw"), "healthy")
            .await
            .expect("bystander connects");
        let done = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, e, s) = (done.clone(), errors.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(10), client.simple_query("SELECT 1"))
                    .await
                {
                    Ok(Ok(_)) => {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(err)) => e.lock().unwrap().push(format!("{err:?}")),
                    Err(_) => e.lock().unwrap().push("SELECT 1 took over 10 s".into()),
                }
                // sleep-ok: pacing of a bystander's load, not a wait
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Bystander {
            done,
            errors,
            stop,
            task,
        }
    }

    /// Carried on during the last step: progress, and no error so far.
    async fn carried_on(&self, step: &str, since: usize) {
        eventually(T, &format!("bystander progresses after {step}"), || async {
            self.done.load(Ordering::Relaxed) > since + 3
        })
        .await;
        let errors = self.errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "bystander failed during {step}: {errors:?}"
        );
    }

    fn count(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "bystander failed: {errors:?}");
    }
}

async fn rig() -> Rig {
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute(
            "DROP TABLE IF EXISTS faults_copy; CREATE TABLE faults_copy (v text); \
             GRANT ALL ON faults_copy TO app;",
        )
        .await
        .unwrap();
    let primary = format!("{}:{}", c.primary().host(), c.primary().port())
        .parse()
        .unwrap();
    let server = FaultProxy::start(primary).unwrap();
    let toml = format!(
        "{}\n[databases.app]\ndbname = \"app\"\nhost = \"127.0.0.1\"\nport = {}\n\
         \n[databases.healthy]\ndbname = \"postgres\"\nhost = \"{}\"\nport = {}\n",
        base_toml("transaction", TOP),
        server.port(),
        c.primary().host(),
        c.primary().port(),
    );
    let cw = start_cw(USERS, &toml).await;
    let client = FaultProxy::start(cw.addr()).unwrap();
    let admin = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .expect("admin console");
    let mut rig = Rig {
        cw,
        server,
        client,
        admin,
        direct,
        base_overhead: 0,
    };
    rig.base_overhead = rig.overhead().await;
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peers_cost_only_their_client() {
    let rig = rig().await;
    let by = Bystander::start(&rig.cw).await;
    // The first login also caches the server parameters new clients get.
    let warm = rig.cw.app().await;
    assert_eq!(simple_one(&warm, "SELECT 'warm'").await.unwrap(), "warm");
    drop(warm);
    rig.assert_no_leak("start").await;

    black_holed_mid_query(&rig, &by).await;
    black_holed_mid_login(&rig, &by).await;
    black_holed_while_idle_in_pool(&rig, &by).await;
    black_holed_during_cancel(&rig, &by).await;
    cut_mid_message(&rig, &by).await;
    client_vanishes_mid_copy(&rig, &by).await;
    client_vanishes_mid_result(&rig, &by).await;
    by.finish().await;
    rig.cw.stop().await;
}

/// The server stops answering while a query runs (a 10 s sleep, so the
/// fault is surely in place before any reply): query_timeout (4 s) ends it
/// with 57014, the connection is closed.
async fn black_holed_mid_query(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let a = rig.cw.app().await;
    simple_one(&a, "SELECT 1").await.unwrap();
    let started = Instant::now();
    let q = tokio::spawn(async move {
        let r = a.simple_query("SELECT pg_sleep(10), 42").await;
        (a, r)
    });
    eventually(T, "the query runs on the server", || async {
        count_backends(
            &rig.direct,
            "query = 'SELECT pg_sleep(10), 42' AND state = 'active'",
        )
        .await
            == 1
    })
    .await;
    // Its reply will never arrive.
    rig.server.set(Dir::ToClient, Fault::BlackHole);
    let (a, r) = within(T, "query to a black-holed server", q).await.unwrap();
    eprintln!(
        "mid-query: {:?} after {:?}",
        sqlstate(&r),
        started.elapsed()
    );
    assert_eq!(sqlstate(&r).as_deref(), Some("57014"), "{r:?}");
    assert!(
        msg(r.as_ref().unwrap_err()).contains("query_timeout"),
        "{r:?}"
    );
    by.carried_on("black hole mid-query", since).await;
    rig.server.heal();
    eventually(T, "client closed after query_timeout", || async {
        a.is_closed()
    })
    .await;
    rig.assert_no_leak("black hole mid-query").await;
}

/// The server accepts the TCP connection but never answers the login:
/// server_connect_timeout (3 s) gives the client 08006.
async fn black_holed_mid_login(rig: &Rig, by: &Bystander) {
    let since = by.count();
    eventually(T, "no server connection left for app", || async {
        rig.servers("app").await == 0
    })
    .await;
    rig.server.set(Dir::ToClient, Fault::BlackHole);
    let started = Instant::now();
    let state = match rig.cw.connect("app", Some("app_pw"), "app").await {
        Ok(b) => {
            let r = within(
                T,
                "query needing a server login",
                b.simple_query("SELECT 1"),
            )
            .await;
            sqlstate(&r)
        }
        Err(e) => code(&e),
    };
    eprintln!("mid-login: {state:?} after {:?}", started.elapsed());
    assert_eq!(state.as_deref(), Some("08006"));
    by.carried_on("black hole mid-login", since).await;
    rig.server.heal();
    rig.assert_no_leak("black hole mid-login").await;
}

/// A pooled connection's server went silent while idle: the server check
/// before reuse hits internal_query_timeout (2 s), the connection is
/// dropped and the client is served on a fresh one.
async fn black_holed_while_idle_in_pool(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let c = rig.cw.app().await;
    assert_eq!(simple_one(&c, "SELECT 'pooled'").await.unwrap(), "pooled");
    eventually(T, "an idle pooled connection", || async {
        rig.servers("app").await >= 1
    })
    .await;
    let accepted = rig.server.accepted();
    rig.server.set_existing(Dir::ToClient, Fault::BlackHole);
    rig.server.set_existing(Dir::ToUpstream, Fault::BlackHole);
    let started = Instant::now();
    let v = within(
        T,
        "query after the pooled server went silent",
        simple_one(&c, "SELECT 'fresh'"),
    )
    .await
    .expect("served on a fresh connection");
    eprintln!("idle in pool: served after {:?}", started.elapsed());
    assert_eq!(v, "fresh");
    assert!(
        rig.server.accepted() > accepted,
        "no new server connection was opened"
    );
    by.carried_on("black hole while idle", since).await;
    drop(c);
    rig.server.heal();
    rig.assert_no_leak("black hole while idle in the pool")
        .await;
}

/// The whole server goes silent while a query runs and the client cancels:
/// the cancel cannot arrive either; query_timeout still ends the query
/// with 57014, and the cancel's own connection is given up (bounded).
async fn black_holed_during_cancel(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let d = rig.cw.app().await;
    simple_one(&d, "SELECT 1").await.unwrap();
    let token = d.cancel_token();
    let q = tokio::spawn(async move {
        let r = d.simple_query("SELECT pg_sleep(10)").await;
        (d, r)
    });
    eventually(T, "pg_sleep running", || async {
        count_backends(
            &rig.direct,
            "query = 'SELECT pg_sleep(10)' AND state = 'active'",
        )
        .await
            == 1
    })
    .await;
    rig.server.set(Dir::ToClient, Fault::BlackHole);
    rig.server.set(Dir::ToUpstream, Fault::BlackHole);
    let started = Instant::now();
    let cancel = tokio::spawn(async move { token.cancel_query(NoTls).await });
    let (d, r) = within(T, "cancelled query on a silent server", q)
        .await
        .unwrap();
    eprintln!(
        "during cancel: {:?} after {:?}",
        sqlstate(&r),
        started.elapsed()
    );
    assert_eq!(sqlstate(&r).as_deref(), Some("57014"), "{r:?}");
    // Causeway's deadline, not a cancel that got through.
    assert!(
        msg(r.as_ref().unwrap_err()).contains("query_timeout"),
        "{r:?}"
    );
    let _ = within(T, "cancel request returns", cancel).await;
    by.carried_on("black hole during cancel", since).await;
    drop(d);
    rig.server.heal();
    rig.assert_no_leak("black hole during a cancel").await;
}

/// The server's reply stops mid-DataRow (connection closed): the client
/// gets an error at once, not a hang, and the next client is served.
async fn cut_mid_message(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let e = rig.cw.app().await;
    simple_one(&e, "SELECT 1").await.unwrap();
    rig.server
        .set(Dir::ToClient, Fault::CutAfter { bytes: 300 });
    let r = within(
        T,
        "query whose reply is cut",
        e.simple_query("SELECT repeat('x', 100000)"),
    )
    .await;
    assert!(r.is_err(), "a cut reply was delivered as complete");
    let state = sqlstate(&r);
    assert!(matches!(state.as_deref(), None | Some("08006")), "{r:?}");
    rig.server.heal();
    let f = rig.cw.app().await;
    assert_eq!(simple_one(&f, "SELECT 'next'").await.unwrap(), "next");
    by.carried_on("reply cut mid-message", since).await;
    drop((e, f));
    rig.assert_no_leak("reply cut mid-message").await;
}

/// The client's connection is reset in the middle of COPY FROM STDIN: the
/// server connection is dropped (the COPY is rolled back, no row
/// committed) and nothing is left behind.
async fn client_vanishes_mid_copy(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let g = rig.app_via_proxy().await;
    let sink = g
        .copy_in::<_, Bytes>("COPY faults_copy FROM STDIN")
        .await
        .expect("COPY starts");
    let mut sink = Box::pin(sink);
    for i in 0..200 {
        sink.send(Bytes::from(format!("row {i}\n"))).await.unwrap();
    }
    sink.flush().await.unwrap();
    eventually(T, "COPY data reaches Causeway", || async {
        rig.client.bytes_moved(Dir::ToUpstream) > 1000
    })
    .await;
    rig.client.reset_all();
    drop(sink);
    drop(g);
    eventually(T, "the COPY's backend goes away", || async {
        count_backends(
            &rig.direct,
            "query LIKE 'COPY faults_copy%' AND state <> 'idle'",
        )
        .await
            == 0
    })
    .await;
    let rows = simple_one(&rig.direct, "SELECT count(*) FROM faults_copy")
        .await
        .unwrap();
    assert_eq!(rows, "0", "a vanished client's COPY committed rows");
    by.carried_on("client vanished mid-COPY", since).await;
    rig.assert_no_leak("client vanished mid-COPY").await;
}

/// A slow client disappears while a large result streams to it: the
/// server connection (mid-result, unusable) is dropped, its backend ends.
async fn client_vanishes_mid_result(rig: &Rig, by: &Bystander) {
    let since = by.count();
    let h = rig.app_via_proxy().await;
    rig.client.set(
        Dir::ToClient,
        Fault::Drip {
            bytes: 4096,
            every: Duration::from_millis(10),
        },
    );
    let q = tokio::spawn(async move {
        let r = h
            .simple_query("SELECT repeat('x', 1000) FROM generate_series(1, 100000)")
            .await;
        drop(h);
        r
    });
    eventually(T, "the big result streams", || async {
        rig.client.bytes_moved(Dir::ToClient) > 64 * 1024
    })
    .await;
    rig.client.reset_all();
    rig.client.heal();
    let r = within(T, "the vanished client's query", q).await.unwrap();
    assert!(r.is_err());
    eventually(T, "the streaming backend goes away", || async {
        count_backends(&rig.direct, "query LIKE '%generate_series(1, 100000)%' AND state <> 'idle' AND pid <> pg_backend_pid()").await
            == 0
    })
    .await;
    by.carried_on("client vanished mid-result", since).await;
    rig.assert_no_leak("client vanished mid-result").await;
}
