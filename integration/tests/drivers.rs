//! Real drivers through Causeway: asyncpg and psycopg 3 (Python, in a venv
//! under `integration/drivers/python/.venv`) and node-postgres + Sequelize
//! (`integration/drivers/node`, `npm ci`). Each script runs directly
//! against PostgreSQL (so a failure there is the script's), through
//! Causeway in session mode, and in transaction mode over a pool of 5.
//! Besides the usual work, each runs its driver's pipeline,
//! prepared-statement-invalidation and reconnect patterns (see
//! docs/protocol.md, "Real drivers").
//!
//! `make drivers` (called by `make test` and `.ci/run`) installs the pinned
//! versions; if they are missing when a test runs, the test installs them
//! itself (python3 -m venv + pip, npm ci), or fails saying what to run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// Installs are done once per test binary, one at a time.
static INSTALL: Mutex<()> = Mutex::new(());

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers")
}

fn run_install(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (run `make drivers`)"));
    assert!(
        out.status.success(),
        "{what} failed (run `make drivers`):\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The venv's python, creating the venv from requirements.txt if needed.
fn python() -> PathBuf {
    let dir = drivers_dir().join("python");
    let py = dir.join(".venv/bin/python");
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let ready = dir.join(".venv/.installed");
    let reqs = std::fs::read(dir.join("requirements.txt")).expect("requirements.txt");
    if std::fs::read(&ready).ok().as_deref() != Some(&reqs[..]) {
        eprintln!("creating the Python venv in {}", dir.display());
        run_install(
            Command::new("python3")
                .args(["-m", "venv", ".venv"])
                .current_dir(&dir),
            "python3 -m venv (on Debian: apt-get install python3-venv)",
        );
        run_install(
            Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r", "requirements.txt"])
                .current_dir(&dir),
            "pip install -r requirements.txt",
        );
        std::fs::write(&ready, &reqs).expect("write .installed");
    }
    py
}

/// `integration/drivers/node`, with node_modules installed by `npm ci`.
fn node_dir() -> PathBuf {
    let dir = drivers_dir().join("node");
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let ready = dir.join("node_modules/.package-lock.json");
    let lock = std::fs::read(dir.join("package-lock.json")).expect("package-lock.json");
    let installed = std::fs::metadata(&ready).is_ok()
        && dir.join("node_modules/.causeway-lock").exists()
        && std::fs::read(dir.join("node_modules/.causeway-lock"))
            .ok()
            .as_deref()
            == Some(&lock[..]);
    if !installed {
        eprintln!("npm ci in {}", dir.display());
        run_install(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci",
        );
        std::fs::write(dir.join("node_modules/.causeway-lock"), &lock).expect("write marker");
    }
    dir
}

/// Where a script connects.
enum Target {
    Direct,
    Causeway(&'static str),
}

impl Target {
    fn mode(&self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Causeway(m) => m,
        }
    }
}

/// Starts what `target` needs and returns (URL, the Causeway if any).
async fn endpoint(target: &Target) -> (String, Option<Cw>) {
    let c = cluster().await;
    match target {
        Target::Direct => {
            let p = c.primary();
            (
                format!("postgresql://app:app_pw@{}:{}/app", p.host(), p.port()),
                None,
            )
        }
        Target::Causeway(mode) => {
            // Session mode holds a server per client: room for the 50
            // concurrent asyncpg connections. Transaction mode: a pool of 5.
            let pool = if *mode == "session" { 60 } else { 5 };
            let cw = start_cw(
                APP_USERS,
                &(base_toml(
                    mode,
                    &format!("default_pool_size = {pool}\nmax_client_conn = 300"),
                ) + &db_entry(c, "app", "")),
            )
            .await;
            (
                format!("postgresql://app:app_pw@127.0.0.1:{}/app", cw.port()),
                Some(cw),
            )
        }
    }
}

/// Runs `prog args.. URL TAG MODE`; prints its output; panics with it on failure.
async fn run_script(prog: PathBuf, cwd: PathBuf, script: &str, tag: &str, target: Target) {
    let (url, cw) = endpoint(&target).await;
    let tag = format!("{tag}_{}", target.mode());
    let mut cmd = Command::new(&prog);
    causeway_integration::cluster::clear_libpq_env(&mut cmd);
    cmd.current_dir(&cwd)
        .arg(script)
        .args([&url, &tag, target.mode()])
        .env("PYTHONUNBUFFERED", "1");
    let (status, stdout, stderr) = run_logged(cmd, SCRIPT_LIMIT).await;
    eprintln!("----- {script} ({}) -----\n{stdout}{stderr}", target.mode());
    if status != Some(0) {
        let log = cw.as_ref().map(|c| c.log_contents()).unwrap_or_default();
        let log_tail: String = log
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{script} against {} failed (exit {status:?}; None = killed after {SCRIPT_LIMIT:?}):\n{stdout}\n{stderr}\n----- causeway log (tail) -----\n{log_tail}",
            target.mode(),
        );
    }
    assert!(stdout.contains("all checks passed"), "{stdout}");
    if let Some(cw) = cw {
        cw.stop().await;
    }
}

const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` with its output in temp files, killing it after `limit`;
/// returns (exit code, None if killed; stdout; stderr) either way.
async fn run_logged(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (o, e) = (dir.path().join("out"), dir.path().join("err"));
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {cmd:?}: {err}"));
        let status = match poll_blocking(limit, "driver script exits", || child.try_wait().unwrap())
        {
            Ok(st) => st.code(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        let read = |p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        (status, read(&o), read(&e))
    })
    .await
    .unwrap()
}

async fn asyncpg(target: Target) {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let dir = drivers_dir().join("python");
    run_script(py, dir, "asyncpg_check.py", "apg", target).await;
}

async fn psycopg(target: Target) {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let dir = drivers_dir().join("python");
    run_script(py, dir, "psycopg_check.py", "pg3", target).await;
}

async fn node(target: Target) {
    let dir = tokio::task::spawn_blocking(node_dir).await.unwrap();
    run_script("node".into(), dir, "check.js", "node", target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_direct() {
    asyncpg(Target::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_session_mode() {
    asyncpg(Target::Causeway("session")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_transaction_mode() {
    asyncpg(Target::Causeway("transaction")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_direct() {
    psycopg(Target::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_session_mode() {
    psycopg(Target::Causeway("session")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_transaction_mode() {
    psycopg(Target::Causeway("transaction")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_sequelize_direct() {
    node(Target::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_sequelize_session_mode() {
    node(Target::Causeway("session")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_sequelize_transaction_mode() {
    node(Target::Causeway("transaction")).await;
}

/// Causeway in transaction mode in front of the primary and both replicas.
async fn split_cw() -> Cw {
    let c = cluster().await;
    start_cw(
        APP_USERS,
        &split_toml(c, "default_pool_size = 5\nmax_client_conn = 100", ""),
    )
    .await
}

/// Runs `prog script args..` and fails the test with its output (and the
/// Causeways' logs) unless it prints "all checks passed".
async fn run_checks(prog: PathBuf, cwd: PathBuf, script: &str, args: &[String], cws: &[&Cw]) {
    let mut cmd = Command::new(&prog);
    causeway_integration::cluster::clear_libpq_env(&mut cmd);
    cmd.current_dir(&cwd)
        .arg(script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    let (status, stdout, stderr) = run_logged(cmd, SCRIPT_LIMIT).await;
    eprintln!("----- {script} -----\n{stdout}{stderr}");
    if status != Some(0) || !stdout.contains("all checks passed") {
        let logs: Vec<String> = cws.iter().map(|c| c.log_contents()).collect();
        panic!(
            "{script} failed (exit {status:?}):\n{stdout}\n{stderr}\n----- causeway logs -----\n{}",
            logs.join("\n-----\n")
        );
    }
}

/// SET/SHOW/RESET causeway.* through psycopg (never prepared, default
/// threshold, prepare_threshold=0) and asyncpg (prepared with
/// Parse/Describe/Flush; execute), and tokens carried between two Causeway
/// instances through prepared SHOW and SET: 0 stale reads, while a session
/// without the token reads stale data from the (late) replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_commands_and_tokens_through_python_drivers() {
    let c = cluster().await;
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let a = split_cw().await;
    let b = split_cw().await;
    let url = |cw: &Cw| format!("postgresql://app:app_pw@127.0.0.1:{}/app", cw.port());
    // Replicas apply WAL 1 s late: without a token, a read right after
    // a write misses it.
    for i in 0..2 {
        tokio::task::spawn_blocking(move || c.set_apply_delay(i, Duration::from_secs(1)))
            .await
            .unwrap()
            .expect("apply delay");
    }
    run_checks(
        py,
        drivers_dir().join("python"),
        "causeway_commands.py",
        &[url(&a), url(&b), "py".into()],
        &[&a, &b],
    )
    .await;
    for i in 0..2 {
        tokio::task::spawn_blocking(move || c.set_apply_delay(i, Duration::ZERO))
            .await
            .unwrap()
            .expect("apply delay");
    }
    a.stop().await;
    b.stop().await;
}

/// The same commands through node-postgres: simple, unnamed extended and
/// named prepared queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_commands_through_node_postgres() {
    let dir = tokio::task::spawn_blocking(node_dir).await.unwrap();
    let cw = split_cw().await;
    let url = format!("postgresql://app:app_pw@127.0.0.1:{}/app", cw.port());
    run_checks(
        "node".into(),
        dir,
        "commands.js",
        &[url, "node".into()],
        &[&cw],
    )
    .await;
    cw.stop().await;
}
