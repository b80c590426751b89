//! psql through Causeway in transaction mode: what an interactive user or a
//! migration script does.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;

async fn causeway() -> Cw {
    let c = cluster().await;
    start_cw(
        APP_USERS,
        &(base_toml("transaction", "default_pool_size = 2") + &db_entry(c, "app", "")),
    )
    .await
}

/// psql as app through `cw`; `args` after the connection options.
async fn psql(cw: &Cw, cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = libpq_cmd("psql");
    cmd.env("PGPASSWORD", "app_pw").args([
        "-X",
        "-w",
        "-At",
        "-q",
        "-d",
        &format!(
            "host=127.0.0.1 port={} user=app dbname=app sslmode=disable",
            cw.port()
        ),
    ]);
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    run_cmd(cmd, Duration::from_secs(30)).await
}

/// One simple Query with several statements: all results come back, and
/// the statements run as one implicit transaction (a failure in the last
/// one undoes the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_simple_query() {
    let cw = causeway().await;
    let out = psql(
        &cw,
        None,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE psql_multi (id int); INSERT INTO psql_multi VALUES (1), (2); \
             INSERT INTO psql_multi VALUES (3); SELECT 'sum=' || sum(id) FROM psql_multi; SELECT 'second'",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "sum=6\nsecond");

    let out = psql(
        &cw,
        None,
        &["-c", "INSERT INTO psql_multi VALUES (100); SELECT 1/0"],
    )
    .await;
    assert!(!out.status.success(), "division by zero succeeded");
    assert!(
        text(&out.stderr).contains("division by zero"),
        "{}",
        text(&out.stderr)
    );
    let out = psql(&cw, None, &["-c", "SELECT count(*) FROM psql_multi"]).await;
    assert_eq!(
        text(&out.stdout).trim(),
        "3",
        "the failed multi-statement query was not atomic: {}",
        text(&out.stderr)
    );
    cw.stop().await;
}

/// `\copy` in from a CSV file and out again: the same bytes come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let cw = causeway().await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::new();
    for i in 1..=5000 {
        csv.push_str(&format!("{i},\"name {i}, with comma\",{}\n", i * 3));
    }
    std::fs::write(dir.path().join("in.csv"), &csv).unwrap();
    let script = "CREATE TABLE psql_copy (id int PRIMARY KEY, name text, n bigint);\n\
                  \\copy psql_copy FROM 'in.csv' WITH (FORMAT csv)\n\
                  \\copy (SELECT * FROM psql_copy ORDER BY id) TO 'out.csv' WITH (FORMAT csv)\n\
                  SELECT count(*) || ' ' || sum(n) FROM psql_copy;\n";
    std::fs::write(dir.path().join("script.sql"), script).unwrap();
    let out = psql(
        &cw,
        Some(dir.path()),
        &["-v", "ON_ERROR_STOP=1", "-f", "script.sql"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected_sum: i64 = (1..=5000i64).map(|i| i * 3).sum();
    assert_eq!(text(&out.stdout).trim(), format!("5000 {expected_sum}"));
    let back = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(back.len(), csv.len());
    assert!(back == csv, "\\copy out differs from what was copied in");
    cw.stop().await;
}

/// An error inside BEGIN: later statements are refused with "current
/// transaction is aborted" (so the client stayed on its server), ROLLBACK
/// undoes the insert, and the session is fine afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_mid_transaction_then_rollback() {
    let cw = causeway().await;
    let script = "CREATE TABLE psql_rb (v int);\n\
                  BEGIN;\n\
                  INSERT INTO psql_rb VALUES (1);\n\
                  SELECT 1/0;\n\
                  SELECT 'after error';\n\
                  ROLLBACK;\n\
                  SELECT 'count=' || count(*) FROM psql_rb;\n\
                  INSERT INTO psql_rb VALUES (2);\n\
                  SELECT 'count=' || count(*) FROM psql_rb;\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rb.sql"), script).unwrap();
    let out = psql(&cw, Some(dir.path()), &["-f", "rb.sql"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert!(
        stderr.contains("current transaction is aborted"),
        "statement after the error was not refused by the same server: {stderr}"
    );
    assert!(!stdout.contains("after error"), "{stdout}");
    assert_eq!(stdout.trim(), "count=0\ncount=1", "stderr: {stderr}");
    cw.stop().await;
}

/// NOTICE messages reach psql (printed on stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_psql() {
    let cw = causeway().await;
    let out = psql(
        &cw,
        None,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "DO $$ BEGIN RAISE NOTICE 'hi from causeway test'; END $$",
            "-c",
            "SELECT 'done'",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("NOTICE:  hi from causeway test"),
        "notice missing from stderr: {:?}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "done");
    cw.stop().await;
}
