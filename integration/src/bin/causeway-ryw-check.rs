//! `make ryw-check`: the read-your-writes checker at full size (see
//! `causeway_integration::ryw_check` and docs/consistency.md).
//!
//! Starts a primary with two streaming replicas and, for each
//! `synchronous_commit` setting and scenario asked for, Causeway with
//! `consistency = session` and then `none` (the negative control), runs
//! the checker through it and prints one table row per run.
//!
//! ```text
//! causeway-ryw-check [--sessions 50] [--loops 2000] [--sync on,off]
//!                    [--scenario healthy,chaos] [--consistency session,none]
//!                    [--set 'key = value']...
//! ```
//!
//! `--set` adds a top-level line to Causeway's configuration (e.g.
//! `--set 'ryw_poll_interval = 0.0005'`).
//!
//! Scenarios: `healthy` (both replicas replaying), `chaos` (replica 0
//! applies WAL 500 ms late, replica 1 is paused and resumed at random).
//! Exit status 1 when a `session` run saw a stale or backwards read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use causeway_integration::ryw_check::{self, Tally};
use causeway_integration::{http_get, userlist, CausewayBuilder, Cluster, ClusterOptions};

struct Args {
    sessions: u64,
    loops: u64,
    sync: Vec<String>,
    scenarios: Vec<String>,
    modes: Vec<String>,
    extra: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        sessions: 50,
        loops: 2000,
        sync: vec!["on".into(), "off".into()],
        scenarios: vec!["healthy".into(), "chaos".into()],
        modes: vec!["session".into(), "none".into()],
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let list = || v.split(',').map(str::to_string).collect::<Vec<_>>();
        match k.as_str() {
            "--sessions" => a.sessions = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--loops" => a.loops = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--sync" => a.sync = list(),
            "--scenario" => a.scenarios = list(),
            "--consistency" => a.modes = list(),
            "--set" => a.extra.push(v),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    Ok(a)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sum of the series of one metric family in a /metrics body.
fn metric(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn toml(c: &Cluster, users: &str, consistency: &str, extra: &[String]) -> String {
    let mut t = format!(
        "pool_mode = \"transaction\"\nauth_type = \"scram-sha-256\"\nauth_file = \"{users}\"\n\
         default_pool_size = 20\nmax_client_conn = 300\nconsistency = \"{consistency}\"\n\
         {}\n{}\n\n[databases.app]\ndbname = \"app\"\n",
        if extra
            .iter()
            .any(|l| l.trim_start().starts_with("log_level"))
        {
            ""
        } else {
            "log_level = \"warn\""
        },
        extra.join("\n")
    );
    for n in c.nodes() {
        t.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\n",
            n.host(),
            n.port()
        ));
    }
    t
}

struct Row {
    sync: String,
    scenario: String,
    mode: String,
    t: Tally,
    ports: Vec<u16>,
    fallbacks: f64,
    load: (String, String),
    paused: Option<(u32, Duration)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("causeway-ryw-check: {e}");
            std::process::exit(2);
        }
    };
    let c = Arc::new(
        tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
            .await
            .expect("cluster thread")
            .unwrap_or_else(|e| panic!("cluster: {e}")),
    );
    let primary_dsn = c.primary().conn_str("postgres", None, "app");
    ryw_check::prepare_table(&primary_dsn, "app")
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    let ports: Vec<u16> = c.nodes().iter().map(|n| n.port()).collect();
    let mut rows = Vec::new();
    let mut key_base = 1000;
    for sync in &a.sync {
        let cc = Arc::clone(&c);
        let sql =
            format!("ALTER SYSTEM SET synchronous_commit = '{sync}'; SELECT pg_reload_conf();");
        tokio::task::spawn_blocking(move || cc.psql(cc.primary(), "postgres", &sql))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("synchronous_commit: {e}"));
        for scenario in &a.scenarios {
            for mode in &a.modes {
                let chaos = scenario == "chaos";
                if chaos {
                    let cc = Arc::clone(&c);
                    tokio::task::spawn_blocking(move || {
                        cc.set_apply_delay(0, Duration::from_millis(500))
                    })
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("apply delay: {e}"));
                }
                let b = CausewayBuilder::new().unwrap_or_else(|e| panic!("{e}"));
                let users = b
                    .write_file("userlist.txt", &userlist(&[("app", "app_pw")]))
                    .unwrap_or_else(|e| panic!("{e}"));
                let cfg = toml(&c, &users.display().to_string(), mode, &a.extra);
                let cw = tokio::task::spawn_blocking(move || b.start(&cfg))
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("causeway: {e}"));
                let dsn = format!(
                    "host=127.0.0.1 port={} user=app password=app_pw dbname=app",
                    cw.port()
                );
                // Let the monitor see every server once before measuring.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let stop = Arc::new(AtomicBool::new(false));
                let pauser = chaos.then(|| ryw_check::chaos(Arc::clone(&c), 1, stop.clone()));
                let before = loadavg();
                let t = ryw_check::run(&primary_dsn, &dsn, a.sessions, a.loops, key_base).await;
                let after = loadavg();
                stop.store(true, Ordering::Relaxed);
                let paused = match pauser {
                    Some(p) => Some(
                        tokio::task::spawn_blocking(move || p.join())
                            .await
                            .unwrap()
                            .unwrap_or_default(),
                    ),
                    None => None,
                };
                key_base += a.sessions as i64;
                let body = cw
                    .metrics_port()
                    .map(|p| http_get(p, "/metrics").1)
                    .unwrap_or_default();
                let fallbacks = metric(&body, "causeway_ryw_fallbacks_total");
                let waits = metric(&body, "causeway_ryw_wait_seconds_count");
                let wait_sum = metric(&body, "causeway_ryw_wait_seconds_sum");
                eprintln!(
                    "  ({waits} reads waited for a replica, {:.2} ms on average; {} position queries, {} forced WAL flushes)",
                    if waits > 0.0 { 1000.0 * wait_sum / waits } else { 0.0 },
                    metric(&body, "causeway_ryw_position_queries_total"),
                    metric(&body, "causeway_ryw_forced_flushes_total"),
                );
                let t =
                    t.unwrap_or_else(|e| panic!("checker run failed: {e}\n{}", cw.log_contents()));
                if let Some(path) = std::env::var_os("RYW_CHECK_LOG") {
                    let _ = std::fs::write(path, cw.log_contents());
                }
                drop(cw);
                if chaos {
                    let cc = Arc::clone(&c);
                    tokio::task::spawn_blocking(move || {
                        cc.set_apply_delay(0, Duration::ZERO)?;
                        cc.resume_replay(1)?;
                        cc.wait_replay_caught_up(0, Duration::from_secs(30))?;
                        cc.wait_replay_caught_up(1, Duration::from_secs(30))
                    })
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("reset replicas: {e}"));
                }
                let row = Row {
                    sync: sync.clone(),
                    scenario: scenario.clone(),
                    mode: mode.clone(),
                    t,
                    ports: ports.clone(),
                    fallbacks,
                    load: (before, after),
                    paused,
                };
                print_row(&row);
                rows.push(row);
            }
        }
    }
    println!("\n{}", table(&rows));
    let bad = rows
        .iter()
        .any(|r| r.mode != "none" && (r.t.stale > 0 || r.t.backwards > 0));
    std::process::exit(i32::from(bad));
}

fn print_row(r: &Row) {
    let t = &r.t;
    eprintln!(
        "synchronous_commit={} {} consistency={}: {} loops in {:.1} s, stale {}, backwards {}, errors {}, \
         primary {:.1}%, replica0 {:.1}%, replica1 {:.1}%, read p50 {:.2} ms p99 {:.2} ms, \
         {} ryw fallbacks, load {} -> {}{}{}",
        r.sync,
        r.scenario,
        r.mode,
        t.loops,
        t.took.as_secs_f64(),
        t.stale,
        t.backwards,
        t.errors,
        100.0 * t.share(&r.ports[..1]),
        100.0 * t.share(&r.ports[1..2]),
        100.0 * t.share(&r.ports[2..3]),
        t.read_ms(0.5),
        t.read_ms(0.99),
        r.fallbacks,
        r.load.0,
        r.load.1,
        r.paused
            .map(|(n, d)| format!(", replica1 paused {n} times ({:.1} s)", d.as_secs_f64()))
            .unwrap_or_default(),
        if t.examples.is_empty() {
            String::new()
        } else {
            format!("\n  e.g. {:?}", t.examples)
        }
    );
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| synchronous_commit | scenario | consistency | loops | stale | backwards | on replicas | replica 0 / replica 1 | read p50 | read p99 | fallbacks | load avg (1 min, start -> end) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let t = &r.t;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1}% | {:.1}% / {:.1}% | {:.2} ms | {:.2} ms | {} | {} -> {} |\n",
            r.sync,
            r.scenario,
            r.mode,
            t.loops,
            t.stale,
            t.backwards,
            100.0 * t.share(&r.ports[1..]),
            100.0 * t.share(&r.ports[1..2]),
            100.0 * t.share(&r.ports[2..3]),
            t.read_ms(0.5),
            t.read_ms(0.99),
            r.fallbacks,
            r.load.0.split(' ').next().unwrap_or(""),
            r.load.1.split(' ').next().unwrap_or(""),
        ));
    }
    s
}
