//! Several Causeway processes on one port (`so_reuseport`): a rolling
//! restart under load (the old process drains: transaction-mode clients
//! are closed at a transaction boundary and reconnect to the new one,
//! session-mode clients keep their session), and `peer_id`/`[peers]`:
//! a cancel that lands on the wrong instance is forwarded to the owner.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_integration::{eventually, free_port};
use common::*;
use tokio_postgres::{Client, NoTls};

const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Two processes sharing `port`: the TOML both are started with.
fn shared_port_toml(c: &causeway_integration::Cluster, port: u16, mode: &str) -> String {
    format!("listen_addr = \"127.0.0.1\"\nlisten_port = {port}\nso_reuseport = true\n")
        + &base_toml(mode, "default_pool_size = 8\nmax_client_conn = 200")
        + &db_entry(c, "app", "")
}

/// Starts a second process on the same port and waits until it has bound
/// it (the port answers already, through the first one).
async fn start_second(toml: &str) -> Cw {
    let b = start_cw(APP_USERS, toml).await;
    let b = tokio::task::spawn_blocking(move || {
        b.wait_for_log("listening", Duration::from_secs(30))
            .map(|_| b)
    })
    .await
    .unwrap();
    b.unwrap_or_else(|e| panic!("second process: {e}"))
}

/// What the workers saw, summed.
#[derive(Default)]
struct Tally {
    commits: AtomicU64,
    /// The connection was found closed between transactions (the old
    /// process said goodbye after a ReadyForQuery): reconnected.
    reconnects: AtomicU64,
    /// BEGIN sent on a connection that was being closed: it failed with
    /// "connection closed" / 57P01 and never ran (the row count proves it).
    begin_closed: AtomicU64,
    connect_errors: AtomicU64,
    /// Anything else: an error inside a transaction, or a BEGIN refused
    /// for another reason. Must stay empty.
    failures: Mutex<Vec<String>>,
}

async fn try_connect(cw_port: u16) -> Result<Client, String> {
    let s = format!(
        "host=127.0.0.1 port={cw_port} user=app password=app_pw dbname=app connect_timeout=10"
    );
    let (client, conn) = tokio::time::timeout(STEP, tokio_postgres::connect(&s, NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A client of the kind a pool keeps: one connection, reconnecting when
/// the pooler has closed it, each transaction BEGIN; INSERT; SELECT;
/// COMMIT in separate round trips.
async fn worker(w: i64, port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut client: Option<Client> = None;
    let mut seq = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) if !c.is_closed() => c,
            Some(_) => {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
                client = None;
                continue;
            }
            None => {
                match try_connect(port).await {
                    Ok(c) => client = Some(c),
                    Err(_) => {
                        // Between the old listener closing and the new
                        // one taking over nothing answers: try again.
                        tally.connect_errors.fetch_add(1, Ordering::Relaxed);
                        // sleep-ok: retry pacing of a load loop, not a wait
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                continue;
            }
        };
        match c.simple_query("BEGIN").await {
            Ok(_) => {}
            Err(e) if e.is_closed() || code(&e).as_deref() == Some("57P01") => {
                tally.begin_closed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                tally.failures.lock().unwrap().push(format!("BEGIN: {e}"));
                continue;
            }
        }
        let id = w * 10_000_000 + seq;
        let txn = async {
            c.simple_query(&format!("INSERT INTO rr_t VALUES ({id}, {w})"))
                .await?;
            c.simple_query("SELECT count(*) FROM rr_t WHERE worker = -1")
                .await?;
            c.simple_query("COMMIT").await
        };
        match txn.await {
            Ok(_) => {
                tally.commits.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            Err(e) => tally
                .failures
                .lock()
                .unwrap()
                .push(format!("in transaction {id}: {e}")),
        }
    }
}

async fn commits_reach(tally: &Tally, n: u64, what: &str) {
    eventually(DRAIN_LIMIT, what, || async {
        tally.commits.load(Ordering::Relaxed) >= n
    })
    .await;
}

/// The rolling restart: A serves 40 reconnecting clients in transaction
/// mode, B starts on the same port, A gets SIGTERM. A stops accepting,
/// closes each client right after a transaction ends and exits once all
/// have moved; every transaction either commits or never started, none
/// fails half-way, and the work goes on through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_moves_transaction_clients_without_failed_transactions() {
    const WORKERS: i64 = 40;
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute(
            "DROP TABLE IF EXISTS rr_t; CREATE TABLE rr_t (id bigint PRIMARY KEY, worker int);
             GRANT ALL ON rr_t TO app;",
        )
        .await
        .unwrap();
    let port = free_port().unwrap();
    let toml = shared_port_toml(c, port, "transaction");
    let mut a = start_cw(APP_USERS, &toml).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, port, stop.clone(), tally.clone())))
        .collect();
    commits_reach(&tally, 200, "transactions through A").await;

    let b = start_second(&toml).await;
    let before = tally.commits.load(Ordering::Relaxed);
    a.signal(libc::SIGTERM).unwrap();
    let signalled = Instant::now();
    let st = tokio::task::spawn_blocking(move || {
        let st = a.wait_exit(DRAIN_LIMIT);
        (st, a)
    })
    .await
    .unwrap();
    let (st, a) = st;
    let st = st.unwrap_or_else(|e| panic!("A did not drain: {e}\n{}", a.log_contents()));
    let drained = signalled.elapsed();
    assert!(st.success(), "A exit status {st}\n{}", a.log_contents());
    let at_exit = tally.commits.load(Ordering::Relaxed);
    commits_reach(
        &tally,
        at_exit + 200,
        "transactions through B after A exited",
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        within(STEP, "worker stops", w).await.unwrap();
    }
    let commits = tally.commits.load(Ordering::Relaxed);
    let reconnects = tally.reconnects.load(Ordering::Relaxed);
    let begin_closed = tally.begin_closed.load(Ordering::Relaxed);
    let connect_errors = tally.connect_errors.load(Ordering::Relaxed);
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "rolling restart, {WORKERS} clients: {commits} committed ({before} before SIGTERM), \
         {} failed, {reconnects} reconnects after a clean close, {begin_closed} BEGIN \
         on a closing connection (not run), {connect_errors} connect errors; A drained in {drained:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "failed transactions: {failures:#?}");
    assert!(
        reconnects + begin_closed >= 1,
        "no client of A moved (A exited anyway?)"
    );
    let n: i64 = direct
        .query_one("SELECT count(*) FROM rr_t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n as u64, commits,
        "rows in the table vs transactions the clients saw commit"
    );
    drop(a);
    b.stop().await;
}

/// Session mode across a restart: after SIGTERM the old process keeps its
/// session-mode clients (one inside a transaction commits, an idle one
/// goes on using its session), new connections go to the new process,
/// and the old one exits once its last client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_keeps_session_clients_until_they_leave() {
    let c = cluster().await;
    let direct = direct(c).await;
    direct
        .batch_execute(
            "DROP TABLE IF EXISTS rs_t; CREATE TABLE rs_t (v text); GRANT ALL ON rs_t TO app;",
        )
        .await
        .unwrap();
    let port = free_port().unwrap();
    let toml = shared_port_toml(c, port, "session");
    let mut a = start_cw(APP_USERS, &toml).await;
    let busy = a.app().await;
    let idle = a.app().await;
    idle.batch_execute("SET application_name = 'kept'")
        .await
        .unwrap();
    busy.batch_execute("BEGIN; INSERT INTO rs_t VALUES ('before')")
        .await
        .unwrap();

    let b = start_second(&toml).await;
    a.signal(libc::SIGTERM).unwrap();
    // A's listener closes: new connections are B's.
    a.wait_for_log("no longer accepting new clients", STEP)
        .unwrap();
    for _ in 0..5 {
        let n = eventually(STEP, "a new connection (to B)", || async {
            try_connect(port).await.ok()
        })
        .await;
        n.simple_query("SELECT 1").await.unwrap();
    }
    within(
        STEP,
        "INSERT + COMMIT after SIGTERM",
        busy.batch_execute("INSERT INTO rs_t VALUES ('after'); COMMIT"),
    )
    .await
    .expect("a session-mode transaction was cut by the restart");
    let name = simple_one(&idle, "SHOW application_name")
        .await
        .expect("the idle session-mode client was dropped");
    assert_eq!(name, "kept", "the session's state is still there");
    assert!(a.try_wait().is_none(), "A exited with clients connected");
    let n: i64 = direct
        .query_one("SELECT count(*) FROM rs_t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    drop((busy, idle));
    let st = tokio::task::block_in_place(|| a.wait_exit(STEP))
        .expect("A did not exit after its last session-mode client left");
    assert!(st.success(), "exit status {st}");
    a.stop().await;
    b.stop().await;
}

/// `peer_id` and `[peers]`: two instances, each knowing the other. A
/// client on A runs pg_sleep(30); its cancel key (from A's BackendKeyData)
/// is sent to B, as a load balancer might; B sees A's id in the key and
/// forwards the request, and the query is cancelled (57014).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_sent_to_the_other_peer_still_cancels() {
    let c = cluster().await;
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let peers = format!(
        "\n[peers.1]\nhost = \"127.0.0.1\"\nport = {pa}\n\n[peers.2]\nhost = \"127.0.0.1\"\nport = {pb}\n"
    );
    let toml = |port: u16, id: u16| {
        format!("listen_port = {port}\npeer_id = {id}\n")
            + &base_toml("transaction", "default_pool_size = 4")
            + &peers
            + &db_entry(c, "app", "")
    };
    let a = start_cw(APP_USERS, &toml(pa, 1)).await;
    let b = start_cw(APP_USERS, &toml(pb, 2)).await;
    let client = Arc::new(a.app().await);
    let token = client.cancel_token();
    let sleeper = tokio::spawn({
        let client = client.clone();
        async move { client.simple_query("SELECT pg_sleep(30)").await }
    });
    let direct = direct(c).await;
    eventually(STEP, "pg_sleep running on the primary", || async {
        count_backends(
            &direct,
            "query = 'SELECT pg_sleep(30)' AND state = 'active'",
        )
        .await
            == 1
    })
    .await;

    let sent = Instant::now();
    let to_b = tokio::net::TcpStream::connect(("127.0.0.1", pb))
        .await
        .unwrap();
    token
        .cancel_query_raw(to_b, NoTls)
        .await
        .expect("cancel request to B");
    let r = within(STEP, "the cancelled query returns", sleeper)
        .await
        .unwrap();
    let e = r.expect_err("pg_sleep(30) was not cancelled");
    assert_eq!(code(&e).as_deref(), Some("57014"), "{e}");
    eprintln!(
        "cancel sent to the other peer: query cancelled {:?} later",
        sent.elapsed()
    );
    // The client goes on.
    assert_eq!(simple_one(&client, "SELECT 1").await.unwrap(), "1");
    a.stop().await;
    b.stop().await;
}
