//! pgbench through Causeway in transaction mode with a pool of 10 for 50
//! clients (`-M simple`, `extended` and `prepared`): no failed
//! transactions, never more than 10 server connections (counted on the
//! primary), and server parses near pool size x statements.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn pgbench(cw: &Cw, args: &[&str]) -> std::process::Command {
    let mut cmd = libpq_cmd("pgbench");
    cmd.env("PGPASSWORD", "bench_pw")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cw.port().to_string(),
            "-U",
            "bench",
        ])
        .args(args)
        .arg("benchdb");
    cmd
}

/// `name: value` from pgbench's report.
fn report_value<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(|v| v.trim_start_matches(':').trim())
}

/// (client parses, server parses, binds) for benchdb from SHOW STATS.
async fn parse_counts(cw: &Cw) -> (i64, i64, i64) {
    let adm = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    for m in adm.simple_query("SHOW STATS").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            if r.get("database") == Some("benchdb") {
                let v = |c: &str| r.get(c).and_then(|v| v.parse().ok()).unwrap_or(0);
                return (
                    v("total_client_parse_count"),
                    v("total_server_parse_count"),
                    v("total_bind_count"),
                );
            }
        }
    }
    (0, 0, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_and_extended_through_transaction_pool() {
    let c = cluster().await;
    create_role("bench", "bench_pw", Some("benchdb")).await;
    let direct = direct(c).await;
    let cw = start_cw(
        &[("bench", "bench_pw"), ("admin", "admin_pw")],
        &(base_toml(
            "transaction",
            "max_client_conn = 200\ndefault_pool_size = 20\nadmin_users = [\"admin\"]",
        )
            + &format!(
                "\n[databases.benchdb]\ndbname = \"benchdb\"\nhost = \"{}\"\nport = {}\npool_size = 10\n",
                c.primary().host(),
                c.primary().port()
            )),
    )
    .await;

    // Watch the server side for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (stop, max_seen) = (stop.clone(), max_seen.clone());
        tokio::spawn(async move {
            for _ in 0..1200 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = count_backends(&direct, "usename = 'bench'").await;
                max_seen.fetch_max(n, Ordering::Relaxed);
                // sleep-ok: sampling interval of a watcher, not a wait
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            direct
        })
    };

    let out = run_cmd(
        pgbench(&cw, &["-i", "-s", "2", "-q"]),
        Duration::from_secs(90),
    )
    .await;
    assert!(
        out.status.success(),
        "pgbench -i failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    for mode in ["simple", "extended", "prepared"] {
        let before = parse_counts(&cw).await;
        let out = run_cmd(
            pgbench(&cw, &["-c", "50", "-j", "2", "-T", "10", "-M", mode]),
            Duration::from_secs(60),
        )
        .await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "pgbench -M {mode} failed:\n{stdout}\n{stderr}"
        );
        let failed = report_value(&stdout, "number of failed transactions")
            .unwrap_or_else(|| panic!("no failed-transactions line:\n{stdout}"));
        assert!(
            failed.starts_with("0 "),
            "-M {mode}: failed transactions: {failed}\n{stderr}"
        );
        let processed: u64 = report_value(&stdout, "number of transactions actually processed")
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no processed line:\n{stdout}"));
        let tps = stdout
            .lines()
            .find(|l| l.starts_with("tps"))
            .unwrap_or("")
            .to_string();
        eprintln!("-M {mode}: {processed} transactions, {tps}");
        assert!(processed > 100, "-M {mode}: only {processed} transactions");
        let after = parse_counts(&cw).await;
        let (client, server, binds) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        eprintln!("-M {mode}: client parses {client}, server parses {server}, binds {binds}");
        if mode == "prepared" {
            // pgbench's 7 statements prepared once per client, and on each
            // of the 10 server connections about once.
            assert!(client >= 50, "client parses {client}");
            assert!(binds >= processed as i64, "binds {binds}");
            assert!(
                server <= 10 * 7 * 2,
                "server parses {server}: should stay near pool size x statements"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let direct = within(STEP, "watcher", watcher).await.unwrap();
    let after = count_backends(&direct, "usename = 'bench'").await;
    let max = max_seen.load(Ordering::Relaxed).max(after);
    eprintln!("max server connections seen for bench: {max} (after: {after})");
    assert!(max <= 10, "{max} server connections for a pool of 10");
    assert!(
        max >= 2,
        "pool barely used ({max}); the watcher saw nothing"
    );
    cw.stop().await;
}
