//! `make soak`: Causeway in front of a primary and two streaming replicas
//! for SOAK_SECONDS (default 1800) under mixed load (pgbench rounds,
//! tokio-postgres writers recording every acknowledged write, readers),
//! with chaos every SOAK_CHAOS_EVERY seconds (default 5): replica kill and
//! restart, replay pause, apply delay, SIGHUP reload, client churn, and one
//! planned promotion at 70 % of the run. Every SOAK_SAMPLE_EVERY seconds
//! (default 60) it writes RSS, fds, server and client connections, and
//! error counts of the Causeway process to `$SOAK_OUT/soak.csv` (default
//! bench/soak), then plots them (gnuplot) to `soak.png`.
//!
//! Fails (exit 1) if an acknowledged write is missing on the final
//! primary, if RSS in the last third of the run exceeds 1.5x the first
//! third's peak plus 32 MiB, or if the fds not accounted for by client and
//! server sockets grow by more than 16.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_integration::causeway::{causeway_bin, userlist, CausewayBuilder, CausewayProcess};
use causeway_integration::cluster::clear_libpq_env;
use causeway_integration::{Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const WRITERS: usize = 4;
const READERS: usize = 4;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Counters the load tasks bump.
#[derive(Default)]
struct Counters {
    acked: Mutex<Vec<i64>>,
    write_errors: AtomicU64,
    read_errors: AtomicU64,
    reads: AtomicU64,
    ryw_misses: AtomicU64,
    pgbench_rounds: AtomicU64,
    pgbench_failed_rounds: AtomicU64,
    pgbench_xacts: AtomicU64,
    chaos: AtomicU64,
    stop: AtomicBool,
}

struct Soak {
    cluster: Arc<Cluster>,
    cw: CausewayProcess,
    /// Index into cluster.nodes() of the primary now.
    primary: std::sync::atomic::AtomicUsize,
    n: Counters,
    next_id: AtomicI64,
    out: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("causeway-soak: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, String> {
    let total = env_secs("SOAK_SECONDS", 1800);
    let chaos_every = env_secs("SOAK_CHAOS_EVERY", 5);
    let sample_every = env_secs("SOAK_SAMPLE_EVERY", 60);
    let out = PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| "bench/soak".into()));
    std::fs::create_dir_all(&out).map_err(|e| format!("mkdir {}: {e}", out.display()))?;

    eprintln!("soak: starting primary + 2 replicas");
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
        .await
        .map_err(|e| e.to_string())??;
    let cluster = Arc::new(cluster);
    prepare_database(&cluster).await?;
    let cw = start_causeway(&cluster)?;
    eprintln!(
        "soak: causeway pid {} on port {}; {}s, chaos every {}s, samples every {}s",
        cw.pid(),
        cw.port(),
        total.as_secs(),
        chaos_every.as_secs(),
        sample_every.as_secs()
    );
    let soak = Arc::new(Soak {
        cluster,
        cw,
        primary: std::sync::atomic::AtomicUsize::new(0),
        n: Counters::default(),
        next_id: AtomicI64::new(1),
        out,
    });

    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        tasks.push(tokio::spawn(writer(soak.clone())));
    }
    for _ in 0..READERS {
        tasks.push(tokio::spawn(reader(soak.clone())));
    }
    tasks.push(tokio::spawn(pgbench_loop(soak.clone())));
    tasks.push(tokio::spawn(chaos_loop(soak.clone(), chaos_every, total)));
    let samples = tokio::spawn(sampler(soak.clone(), sample_every, total));

    tokio::time::sleep(total).await;
    soak.n.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let rows = samples.await.map_err(|e| e.to_string())?;
    let ok = verdict(&soak, &rows).await?;
    Ok(ok)
}

fn conn_str(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=app password=app_pw dbname=app connect_timeout=10")
}

async fn connect(s: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(s, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// pgbench tables (scale 5) and the ledger of acknowledged writes.
async fn prepare_database(c: &Arc<Cluster>) -> Result<(), String> {
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || {
        let p = c2.primary();
        let mut cmd = Command::new("pgbench");
        clear_libpq_env(&mut cmd);
        cmd.args(["-i", "-q", "-s", "5", "-h", p.host(), "-p"])
            .arg(p.port().to_string())
            .args(["-U", "postgres", "app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let st = cmd.status().map_err(|e| format!("pgbench -i: {e}"))?;
        if !st.success() {
            return Err(format!("pgbench -i failed: {st}"));
        }
        c2.psql(
            p,
            "app",
            "CREATE TABLE soak_ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now());\n\
             GRANT ALL ON ALL TABLES IN SCHEMA public TO app;",
        )
        .map(|_| ())
    })
    .await
    .map_err(|e| e.to_string())?
}

fn start_causeway(c: &Cluster) -> Result<CausewayProcess, String> {
    let b = CausewayBuilder::new()?
        .bin(causeway_bin()?)
        .env("NO_COLOR", "1");
    let users = b.write_file(
        "userlist.txt",
        &userlist(&[("app", "app_pw"), ("admin", "admin_pw")]),
    )?;
    let mut toml = format!(
        "pool_mode = \"transaction\"\nauth_type = \"scram-sha-256\"\nauth_file = \"{}\"\n\
         admin_users = [\"admin\"]\nmax_client_conn = 400\ndefault_pool_size = 12\n\
         query_wait_timeout = 30\nserver_connect_timeout = 5\nquery_timeout = 60\n\
         server_login_retry = 1\nlog_level = \"warn\"\n\
         [databases.app]\ndbname = \"app\"\n",
        users.display()
    );
    for n in c.nodes() {
        let _ = write!(
            toml,
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\n",
            n.host(),
            n.port()
        );
    }
    b.start(&toml)
}

/// Inserts ledger rows one by one; each id whose INSERT returned OK is
/// recorded as acknowledged. Reads its own write back (read-your-writes).
async fn writer(s: Arc<Soak>) {
    let mut client: Option<Client> = None;
    while !s.n.stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&conn_str(s.cw.port())).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    s.n.write_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let id = s.next_id.fetch_add(1, Ordering::SeqCst);
        match c
            .simple_query(&format!("INSERT INTO soak_ledger (id) VALUES ({id})"))
            .await
        {
            Ok(_) => {
                s.n.acked.lock().unwrap().push(id);
                let seen = c
                    .simple_query(&format!("SELECT count(*) FROM soak_ledger WHERE id = {id}"))
                    .await;
                if !matches!(first_value(&seen).as_deref(), Some("1")) && seen.is_ok() {
                    s.n.ryw_misses.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                s.n.write_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn first_value(r: &Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>) -> Option<String> {
    r.as_ref().ok()?.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    })
}

/// Read-only queries (routed to the replicas).
async fn reader(s: Arc<Soak>) {
    let mut client: Option<Client> = None;
    let mut i = 0u64;
    while !s.n.stop.load(Ordering::Relaxed) {
        let c = match &client {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&conn_str(s.cw.port())).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    s.n.read_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        i += 1;
        let sql = format!(
            "SELECT sum(abalance), count(*) FROM pgbench_accounts WHERE aid BETWEEN {} AND {}",
            i % 400_000,
            i % 400_000 + 1000
        );
        match c.simple_query(&sql).await {
            Ok(_) => {
                s.n.reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                s.n.read_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// pgbench rounds of 20 s through Causeway, alternating select-only and
/// tpcb-like (writes).
async fn pgbench_loop(s: Arc<Soak>) {
    let mut round = 0u64;
    while !s.n.stop.load(Ordering::Relaxed) {
        round += 1;
        let script = if round.is_multiple_of(2) {
            "select-only"
        } else {
            "tpcb-like"
        };
        let port = s.cw.port();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new("pgbench");
            clear_libpq_env(&mut cmd);
            cmd.env("PGPASSWORD", "app_pw")
                .args(["-n", "-c", "4", "-j", "1", "-T", "20", "-b", script])
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "app",
                    "app",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            cmd.output()
        })
        .await;
        s.n.pgbench_rounds.fetch_add(1, Ordering::Relaxed);
        match out {
            Ok(Ok(o)) => {
                let text = String::from_utf8_lossy(&o.stdout);
                let xacts = text
                    .lines()
                    .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                    .and_then(|v| v.split('/').next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                s.n.pgbench_xacts.fetch_add(xacts, Ordering::Relaxed);
                if !o.status.success() {
                    s.n.pgbench_failed_rounds.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                s.n.pgbench_failed_rounds.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One chaos action every `every`; the promotion once, at 70 % of the run.
async fn chaos_loop(s: Arc<Soak>, every: Duration, total: Duration) {
    let started = Instant::now();
    let mut promoted = false;
    let mut k = 0usize;
    while !s.n.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        if s.n.stop.load(Ordering::Relaxed) {
            break;
        }
        if !promoted && started.elapsed() >= total.mul_f64(0.7) {
            promoted = true;
            if let Err(e) = promote(&s).await {
                eprintln!("soak: promotion failed: {e}");
            }
            continue;
        }
        k += 1;
        let r = match k % 6 {
            0 => kill_restart_replica(&s, k).await,
            1 => pause_replay(&s, k).await,
            2 => apply_delay(&s, k).await,
            3 => s.cw.signal(libc::SIGHUP),
            4 => churn(&s).await,
            _ => kill_restart_replica(&s, k + 1).await,
        };
        s.n.chaos.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = r {
            eprintln!("soak: chaos step {k}: {e}");
        }
    }
}

/// The replica indexes (into cluster.replicas()) still streaming from the
/// current primary: both before the promotion; none after it (replica 0
/// became the primary, replica 1 follows the stopped old one).
fn replica_for(s: &Soak, k: usize) -> Option<usize> {
    if s.primary.load(Ordering::SeqCst) != 0 {
        // After the promotion only replica 1 is left as a standby.
        return Some(1);
    }
    Some(k % 2)
}

async fn blocking<F>(f: F) -> Result<(), String>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

async fn kill_restart_replica(s: &Arc<Soak>, k: usize) -> Result<(), String> {
    let Some(i) = replica_for(s, k) else {
        return Ok(());
    };
    let c = s.cluster.clone();
    blocking(move || {
        let node = c.replica(i).clone();
        c.kill(&node)?;
        std::thread::sleep(Duration::from_secs(2));
        c.start_node(&node)
    })
    .await
}

async fn pause_replay(s: &Arc<Soak>, k: usize) -> Result<(), String> {
    let Some(i) = replica_for(s, k) else {
        return Ok(());
    };
    let c = s.cluster.clone();
    blocking(move || c.pause_replay(i)).await?;
    let c = s.cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let _ = blocking(move || c.resume_replay(i)).await;
    });
    Ok(())
}

async fn apply_delay(s: &Arc<Soak>, k: usize) -> Result<(), String> {
    let Some(i) = replica_for(s, k) else {
        return Ok(());
    };
    let c = s.cluster.clone();
    blocking(move || c.set_apply_delay(i, Duration::from_secs(3))).await?;
    let c = s.cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let _ = blocking(move || c.set_apply_delay(i, Duration::ZERO)).await;
    });
    Ok(())
}

/// 40 short-lived clients: connect, one query, gone.
async fn churn(s: &Arc<Soak>) -> Result<(), String> {
    let mut hs = Vec::new();
    for _ in 0..40 {
        let cs = conn_str(s.cw.port());
        hs.push(tokio::spawn(async move {
            if let Ok(c) = connect(&cs).await {
                let _ = c.simple_query("SELECT 1").await;
            }
        }));
    }
    for h in hs {
        let _ = h.await;
    }
    Ok(())
}

/// Planned switchover: replica 0 catches up, the primary stops cleanly
/// (its walsenders ship everything first), replica 0 is promoted.
async fn promote(s: &Arc<Soak>) -> Result<(), String> {
    eprintln!("soak: promoting replica 0");
    let c = s.cluster.clone();
    blocking(move || {
        let _ = c.resume_replay(0);
        let _ = c.set_apply_delay(0, Duration::ZERO);
        c.wait_replay_caught_up(0, Duration::from_secs(60))?;
        let old = c.primary().clone();
        c.stop(&old)?;
        c.promote(0)
    })
    .await?;
    s.primary.store(1, Ordering::SeqCst);
    s.n.chaos.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One CSV row per interval.
#[derive(Debug, Clone)]
struct Sample {
    minute: f64,
    rss_kib: u64,
    fds: u64,
    servers: u64,
    clients: u64,
    acked: u64,
    write_errors: u64,
    read_errors: u64,
    reads: u64,
    pgbench_xacts: u64,
    pgbench_failed_rounds: u64,
    chaos: u64,
}

const CSV_HEADER: &str = "minute,rss_kib,fds,server_conns,client_conns,acked_writes,write_errors,read_errors,reads,pgbench_xacts,pgbench_failed_rounds,chaos_events";

async fn sampler(s: Arc<Soak>, every: Duration, total: Duration) -> Vec<Sample> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let path = s.out.join("soak.csv");
    let _ = std::fs::write(&path, format!("{CSV_HEADER}\n"));
    loop {
        let row = sample(&s, started).await;
        eprintln!("soak: {row:?}");
        let line = format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{}\n",
            row.minute,
            row.rss_kib,
            row.fds,
            row.servers,
            row.clients,
            row.acked,
            row.write_errors,
            row.read_errors,
            row.reads,
            row.pgbench_xacts,
            row.pgbench_failed_rounds,
            row.chaos
        );
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
            use std::io::Write as _;
            let _ = f.write_all(line.as_bytes());
        }
        rows.push(row);
        if started.elapsed() + every > total + Duration::from_secs(5) {
            return rows;
        }
        tokio::time::sleep(every).await;
    }
}

async fn sample(s: &Soak, started: Instant) -> Sample {
    let pid = s.cw.pid();
    let (servers, clients) = admin_counts(s.cw.port()).await.unwrap_or((0, 0));
    Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss_kib: rss_kib(pid),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        servers,
        clients,
        acked: s.n.acked.lock().unwrap().len() as u64,
        write_errors: s.n.write_errors.load(Ordering::Relaxed),
        read_errors: s.n.read_errors.load(Ordering::Relaxed),
        reads: s.n.reads.load(Ordering::Relaxed),
        pgbench_xacts: s.n.pgbench_xacts.load(Ordering::Relaxed),
        pgbench_failed_rounds: s.n.pgbench_failed_rounds.load(Ordering::Relaxed),
        chaos: s.n.chaos.load(Ordering::Relaxed),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// (SHOW SERVERS rows, SHOW CLIENTS rows) from the admin console.
async fn admin_counts(port: u16) -> Option<(u64, u64)> {
    let c = connect(&format!(
        "host=127.0.0.1 port={port} user=admin password=admin_pw dbname=pgbouncer connect_timeout=10"
    ))
    .await
    .ok()?;
    let count = |msgs: Vec<SimpleQueryMessage>| {
        msgs.iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count() as u64
    };
    let servers = count(c.simple_query("SHOW SERVERS").await.ok()?);
    let clients = count(c.simple_query("SHOW CLIENTS").await.ok()?);
    Some((servers, clients))
}

/// Checks the run; writes the plot and a summary. True if it passed.
async fn verdict(s: &Soak, rows: &[Sample]) -> Result<bool, String> {
    let acked: Vec<i64> = s.n.acked.lock().unwrap().clone();
    let primary = &s.cluster.nodes()[s.primary.load(Ordering::SeqCst)];
    let direct = connect(&primary.conn_str("postgres", None, "app"))
        .await
        .map_err(|e| format!("connect to the final primary: {e}"))?;
    let present: HashSet<i64> = direct
        .query("SELECT id FROM soak_ledger", &[])
        .await
        .map_err(|e| format!("read the ledger: {e}"))?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();

    let third = rows.len() / 3;
    let peak = |r: &[Sample]| r.iter().map(|x| x.rss_kib).max().unwrap_or(0);
    // fds beyond what client and server sockets account for (+1 admin client).
    let overhead = |x: &Sample| x.fds as i64 - (x.servers + x.clients) as i64;
    let (early, late) = if third > 0 {
        (&rows[..third], &rows[rows.len() - third..])
    } else {
        (rows, rows)
    };
    let rss_ok = peak(late) <= peak(early) * 3 / 2 + 32 * 1024;
    // Median: fds and SHOW are read at slightly different instants, so a
    // single sample can catch connections opening or closing.
    let median_over = |r: &[Sample]| {
        let mut v: Vec<i64> = r.iter().map(overhead).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let fd_ok = median_over(late) <= median_over(early) + 16;
    let summary = format!(
        "samples {}\nacknowledged writes {}\nlost acknowledged writes {}{}\n\
         read-your-writes misses {}\nwrite errors {}\nread errors {}\nreads {}\n\
         pgbench rounds {} (failed {}) transactions {}\nchaos events {}\n\
         RSS peak first third {} KiB, last third {} KiB: {}\n\
         fd overhead (fds - client and server sockets) median first third {}, last third {}: {}\n",
        rows.len(),
        acked.len(),
        lost.len(),
        if lost.is_empty() {
            String::new()
        } else {
            format!(" e.g. {:?}", &lost[..lost.len().min(10)])
        },
        s.n.ryw_misses.load(Ordering::Relaxed),
        s.n.write_errors.load(Ordering::Relaxed),
        s.n.read_errors.load(Ordering::Relaxed),
        s.n.reads.load(Ordering::Relaxed),
        s.n.pgbench_rounds.load(Ordering::Relaxed),
        s.n.pgbench_failed_rounds.load(Ordering::Relaxed),
        s.n.pgbench_xacts.load(Ordering::Relaxed),
        s.n.chaos.load(Ordering::Relaxed),
        peak(early),
        peak(late),
        if rss_ok { "bounded" } else { "GROWING" },
        median_over(early),
        median_over(late),
        if fd_ok { "bounded" } else { "GROWING" },
    );
    eprint!("{summary}");
    let _ = std::fs::write(s.out.join("summary.txt"), &summary);
    plot(&s.out);
    Ok(lost.is_empty() && rss_ok && fd_ok)
}

/// soak.png from soak.csv with gnuplot (skipped, with a note, if absent).
fn plot(out: &std::path::Path) {
    const SCRIPT: &str = r#"set datafile separator ','
set key autotitle columnhead
set terminal pngcairo size 1200,900
set output 'soak.png'
set multiplot layout 2,1 title 'Causeway soak: primary + 2 replicas, chaos every few seconds'
set xlabel 'minutes'
set ylabel 'RSS (MiB)'
set y2label 'fds, connections'
set y2tics
set ytics nomirror
set key outside right
plot 'soak.csv' using 1:($2/1024) with linespoints title 'RSS MiB', '' using 1:3 axes x1y2 with linespoints title 'fds', '' using 1:4 axes x1y2 with linespoints title 'server conns', '' using 1:5 axes x1y2 with linespoints title 'client conns'
unset y2tics
unset y2label
set ylabel 'count (cumulative, log)'
set logscale y
plot 'soak.csv' using 1:($6+1) with linespoints title 'acked writes', '' using 1:($7+1) with linespoints title 'write errors', '' using 1:($8+1) with linespoints title 'read errors', '' using 1:($10+1) with linespoints title 'pgbench xacts', '' using 1:($11+1) with linespoints title 'pgbench failed rounds', '' using 1:($12+1) with linespoints title 'chaos events'
unset multiplot
"#;
    let script = out.join("soak.gp");
    if std::fs::write(&script, SCRIPT).is_err() {
        return;
    }
    let r = Command::new("gnuplot")
        .current_dir(out)
        .arg("soak.gp")
        .status();
    match r {
        Ok(st) if st.success() => eprintln!("soak: plot {}", out.join("soak.png").display()),
        _ => eprintln!(
            "soak: gnuplot failed or missing (apt-get install gnuplot-nox); CSV is in {}",
            out.display()
        ),
    }
}
