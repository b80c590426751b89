//! PgBouncer's own configuration file, for real: the same `pgbouncer.ini`
//! started by PgBouncer and by Causeway in front of the same cluster gives
//! the same databases (same server database, login user, startup
//! parameters, connect_query), pgbench runs through both, and SHOW
//! DATABASES agrees; `causeway import` turns the ini into TOML that starts
//! a Causeway whose SHOW CONFIG, DATABASES and USERS equal the ini's.
//!
//! PgBouncer: `$PGBOUNCER`, else Debian's (`apt-get install pgbouncer`;
//! .ci/run does). Skipped, loudly, only when none is installed.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use causeway_integration::{
    causeway_bin, eventually, eventually_blocking, free_port, CausewayBuilder,
};
use common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

const USERS: &[(&str, &str)] = &[
    ("mig_app", "mig_app_pw"),
    ("mig_forced", "mig_forced_pw"),
    ("mig_admin", "mig_admin_pw"),
];

fn pgbouncer_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGBOUNCER") {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A directory PgBouncer (run as `postgres` when we are root) can read
/// and write: the ini, the userlist, its log and pid files.
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("causeway-pgbouncer-ini-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// The roles and databases of these tests, once per cluster.
async fn prepare() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        create_role("mig_app", "mig_app_pw", Some("migdb")).await;
        create_role("mig_forced", "mig_forced_pw", None).await;
        create_role("mig_admin", "mig_admin_pw", None).await;
        psql_primary(
            "CREATE DATABASE migdb2 OWNER mig_app; GRANT ALL ON DATABASE migdb TO mig_forced;",
        )
        .await;
        psql_primary("ALTER DATABASE migdb OWNER TO mig_app").await;
    })
    .await;
}

/// The shared cluster with this file's roles, and a directory holding
/// their userlist.
async fn setup() -> (&'static causeway_integration::Cluster, tempfile::TempDir) {
    let c = cluster().await;
    prepare().await;
    let dir = shared_dir();
    write(
        dir.path(),
        "userlist.txt",
        &causeway_integration::userlist(USERS),
    );
    (c, dir)
}

/// An ini both poolers accept: several database shapes (renamed, forced
/// user with startup parameters and connect_query, per-database limits,
/// the `*` fallback, a Unix socket directory as host), a [users] entry, and settings Causeway only warns
/// about (logfile, pidfile).
fn ini(dir: &Path, port: u16, pg: u16, sock: &Path) -> String {
    let d = dir.display();
    let sock = sock.display();
    format!(
        "[databases]
mig = host=127.0.0.1 port={pg} dbname=migdb
forced = host=127.0.0.1 port={pg} dbname=migdb user=mig_forced password=mig_forced_pw timezone=Asia/Tokyo datestyle='SQL, DMY' application_name=from_ini connect_query='SET work_mem = ''3MB''' pool_size=3 pool_mode=transaction
other = host=127.0.0.1 port={pg} dbname=migdb2 pool_size=2 max_db_connections=2
local = host={sock} port={pg} dbname=migdb
* = host=127.0.0.1 port={pg}

[users]
mig_forced = pool_mode=transaction

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {d}/userlist.txt
admin_users = mig_admin
pool_mode = session
default_pool_size = 4
max_client_conn = 60
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
"
    )
}

/// PgBouncer as a child process, stopped (SIGINT, then SIGKILL) on drop.
struct PgBouncer(Child);

impl PgBouncer {
    fn start(bin: &Path, ini: &Path, port: u16) -> PgBouncer {
        // PgBouncer refuses to run as root. setpriv execs in place, so the
        // child is PgBouncer itself and the signals on drop reach it
        // (runuser stayed as a parent: a killed runuser left PgBouncer
        // running).
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg(ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let mut p = PgBouncer(child);
        eventually_blocking(STEP, "PgBouncer listening", || {
            if let Ok(Some(st)) = p.0.try_wait() {
                let log = std::fs::read_to_string(ini.with_file_name("pgbouncer.log"));
                panic!("PgBouncer exited ({st}):\n{}", log.unwrap_or_default());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        p
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGINT: PgBouncer's fast shutdown.
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: plain syscall on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let exited = poll_blocking(Duration::from_secs(5), "PgBouncer exits", || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        });
        if exited.is_ok() {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect(
    port: u16,
    user: &str,
    pw: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    connect_str(&format!(
        "host=127.0.0.1 port={port} user={user} password={pw} dbname={db} connect_timeout=10"
    ))
    .await
}

async fn text_rows(c: &Client, sql: &str) -> Vec<BTreeMap<String, String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_string(), r.get(i).unwrap_or("").to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// What a client of database `db` finds on the server it lands on.
async fn landing(port: u16, db: &str) -> Result<Vec<String>, String> {
    let c = connect(port, "mig_app", "mig_app_pw", db)
        .await
        .map_err(|e| code(&e).unwrap_or_else(|| e.to_string()))?;
    let r = row(
        &c,
        "SELECT current_database(), current_user, current_setting('TimeZone'), \
         current_setting('DateStyle'), current_setting('application_name'), \
         current_setting('work_mem')",
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(r)
}

fn pgbench(port: u16, args: &[&str]) -> Command {
    let mut cmd = libpq_cmd("pgbench");
    cmd.env("PGPASSWORD", "mig_app_pw")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "mig_app"])
        .args(args)
        .arg("mig");
    cmd
}

async fn pgbench_ok(port: u16, args: &[&str], who: &str) -> String {
    let out = run_cmd(pgbench(port, args), Duration::from_secs(120)).await;
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "pgbench {args:?} through {who}:\n{o}\n{e}"
    );
    o
}

/// Columns of SHOW DATABASES both PgBouncer 1.18 and 1.25 have, for the
/// databases the ini lists.
async fn show_databases(port: u16) -> BTreeMap<String, Vec<String>> {
    let a = connect(port, "mig_admin", "mig_admin_pw", "pgbouncer")
        .await
        .unwrap();
    text_rows(&a, "SHOW DATABASES")
        .await
        .into_iter()
        .filter(|r| ["mig", "forced", "other"].contains(&r["name"].as_str()))
        .map(|r| {
            let cols = [
                "host",
                "port",
                "database",
                "force_user",
                "pool_size",
                "pool_mode",
                "max_connections",
            ];
            (
                r["name"].clone(),
                cols.iter().map(|c| format!("{c}={}", r[*c])).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_ini_runs_pgbouncer_and_causeway() {
    let Some(bin) = pgbouncer_bin() else {
        eprintln!(
            "\n\n!!!!! SKIPPED same_ini_runs_pgbouncer_and_causeway: PgBouncer is not installed \
             (apt-get install --no-install-recommends pgbouncer; .ci/run does) !!!!!\n"
        );
        return;
    };
    let (c, dir) = setup().await;
    let (pgb_port, cw_port) = (free_port().unwrap(), free_port().unwrap());
    let ini_text = ini(
        dir.path(),
        pgb_port,
        c.primary().port(),
        &c.primary().socket_dir(),
    );
    let ini = write(dir.path(), "pgbouncer.ini", &ini_text);

    let pgb = {
        let (bin, ini) = (bin.clone(), ini.clone());
        tokio::task::spawn_blocking(move || PgBouncer::start(&bin, &ini, pgb_port))
            .await
            .unwrap()
    };
    // The same file; only the port differs, from a flag layered over it.
    let cw = {
        let ini = ini.clone();
        tokio::task::spawn_blocking(move || {
            CausewayBuilder::new()?
                .env("NO_COLOR", "1")
                .arg("-p")
                .arg(cw_port.to_string())
                .start_files(&[ini], cw_port, Some(free_port()?))
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("causeway on the PgBouncer ini: {e}"))
    };
    let log = cw.log_contents();
    for key in ["logfile", "pidfile"] {
        let line = ini_text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        let want = format!(
            "{}:{line}: [pgbouncer] {key}: not implemented",
            ini.display()
        );
        assert!(log.contains(&want), "no warning {want:?} in:\n{log}");
    }

    // Same databases reachable, landing on the same server state, and a
    // name only the * fallback knows.
    for db in ["mig", "forced", "other", "local", "migdb2"] {
        let via_pgb = landing(pgb_port, db).await;
        let via_cw = landing(cw_port, db).await;
        eprintln!("{db}: pgbouncer {via_pgb:?}, causeway {via_cw:?}");
        assert_eq!(via_cw, via_pgb, "database {db}");
    }
    // host=/dir: both reach the server over its Unix socket.
    for port in [pgb_port, cw_port] {
        let c = connect(port, "mig_app", "mig_app_pw", "local")
            .await
            .unwrap();
        let via = row(
            &c,
            "SELECT coalesce(inet_server_addr()::text, 'unix socket')",
        )
        .await
        .unwrap();
        assert_eq!(via, ["unix socket"], "port {port}");
    }
    // A name the server lacks fails in both (PgBouncer reports 08P01
    // "server login failed", Causeway passes on the server's 3D000).
    assert!(landing(pgb_port, "no_such_db").await.is_err());
    let forced = landing(cw_port, "forced").await.unwrap();
    assert_eq!(
        &forced[..2],
        ["migdb", "mig_forced"],
        "dbname= and user= applied"
    );
    assert_eq!(forced[2], "Asia/Tokyo", "timezone= applied");
    assert_eq!(
        landing(cw_port, "migdb2").await.unwrap()[0],
        "migdb2",
        "* fallback"
    );
    assert_eq!(
        landing(cw_port, "no_such_db").await,
        Err("3D000".to_string())
    );

    // pgbench through both.
    pgbench_ok(pgb_port, &["-i", "-s", "1", "-q"], "PgBouncer").await;
    for (port, who) in [(pgb_port, "PgBouncer"), (cw_port, "Causeway")] {
        let out = pgbench_ok(port, &["-c", "4", "-j", "2", "-t", "50"], who).await;
        assert!(
            out.contains("number of transactions actually processed: 200/200"),
            "{who}:\n{out}"
        );
        assert!(
            !out.contains("number of failed transactions: ")
                || out.contains("number of failed transactions: 0 "),
            "{who}:\n{out}"
        );
    }

    // The admin consoles describe the databases alike.
    let pgb_dbs = show_databases(pgb_port).await;
    eprintln!("SHOW DATABASES (PgBouncer): {pgb_dbs:#?}");
    assert_eq!(pgb_dbs.len(), 3, "{pgb_dbs:?}");
    assert_eq!(show_databases(cw_port).await, pgb_dbs);

    // SIGHUP re-reads the ini: a changed setting applies, and the
    // warnings are logged again.
    std::fs::write(
        &ini,
        ini_text.replace("default_pool_size = 4", "default_pool_size = 6"),
    )
    .unwrap();
    cw.signal(libc::SIGHUP).unwrap();
    eventually(STEP, "the reloaded default_pool_size", || async move {
        let a = connect(cw_port, "mig_admin", "mig_admin_pw", "pgbouncer")
            .await
            .unwrap();
        text_rows(&a, "SHOW CONFIG")
            .await
            .iter()
            .any(|r| r["key"] == "default_pool_size" && r["value"] == "6")
    })
    .await;
    let log = cw.log_contents();
    assert_eq!(
        log.matches("[pgbouncer] logfile: not implemented").count(),
        2,
        "{log}"
    );

    tokio::task::spawn_blocking(move || {
        drop(pgb);
        drop(cw);
    })
    .await
    .unwrap();
}

/// SHOW CONFIG, DATABASES and USERS of a running Causeway, minus the live
/// counters.
async fn describe(port: u16) -> Vec<Vec<BTreeMap<String, String>>> {
    let a = eventually(STEP, "admin console", || async move {
        connect(port, "mig_admin", "mig_admin_pw", "pgbouncer")
            .await
            .ok()
    })
    .await;
    let mut out = Vec::new();
    for cmd in ["SHOW CONFIG", "SHOW DATABASES", "SHOW USERS"] {
        let mut rows = text_rows(&a, cmd).await;
        for r in &mut rows {
            r.retain(|k, _| !k.starts_with("current_"));
        }
        assert!(!rows.is_empty(), "{cmd} is empty");
        out.push(rows);
    }
    out
}

/// `causeway import pgbouncer.ini > causeway.toml`, then start from the
/// TOML: the admin console shows the same configuration as when started
/// from the ini.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_start_shows_the_same_config() {
    let (c, dir) = setup().await;
    let port = free_port().unwrap();
    let metrics = free_port().unwrap();
    let mut ini_text = ini(
        dir.path(),
        port,
        c.primary().port(),
        &c.primary().socket_dir(),
    );
    ini_text.push_str(
        "max_prepared_statements = 50\nquery_wait_timeout = 30\nserver_lifetime = 0\n\
         server_check_query = <empty>\nstats_users = mig_app\nverbose = 1\ntcp_keepalive = 0\n",
    );
    let ini = write(dir.path(), "pgbouncer.ini", &ini_text);

    let from_ini = tokio::task::spawn_blocking({
        let ini = ini.clone();
        move || CausewayBuilder::new()?.start_files(&[ini], port, Some(metrics))
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("causeway from the ini: {e}"));
    let ini_view = describe(port).await;
    // A query runs through it (the `*` fallback, a microsecond server_lifetime).
    let app = connect(port, "mig_app", "mig_app_pw", "migdb2")
        .await
        .unwrap();
    assert_eq!(
        simple_one(&app, "SELECT current_database()").await.unwrap(),
        "migdb2"
    );
    drop(app);
    tokio::task::spawn_blocking(move || drop(from_ini))
        .await
        .unwrap();

    let out = Command::new(causeway_bin().unwrap())
        .arg("import")
        .arg(&ini)
        .output()
        .unwrap();
    let toml = text(&out.stdout);
    assert!(
        out.status.success(),
        "import failed:\n{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("[pgbouncer] logfile: not implemented"));
    assert!(toml.contains("[databases.forced]"), "{toml}");

    let from_toml = tokio::task::spawn_blocking(move || {
        CausewayBuilder::new()?
            .arg("--set")
            .arg(format!("metrics_addr=127.0.0.1:{metrics}"))
            .start(&toml)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("causeway from the imported TOML: {e}"));
    assert_eq!(
        from_toml.port(),
        port,
        "the ini's listen_port was carried over"
    );
    let toml_view = describe(port).await;
    for (i, cmd) in ["SHOW CONFIG", "SHOW DATABASES", "SHOW USERS"]
        .iter()
        .enumerate()
    {
        assert_eq!(toml_view[i], ini_view[i], "{cmd} differs");
    }
    let config: BTreeMap<_, _> = ini_view[0]
        .iter()
        .map(|r| (r["key"].as_str(), r["value"].as_str()))
        .collect();
    assert_eq!(config["max_prepared_statements"], "50");
    assert_eq!(config["server_check_query"], ";");
    assert_eq!(config["log_level"], "debug");
    tokio::task::spawn_blocking(move || drop(from_toml))
        .await
        .unwrap();
}

/// `causeway check-config --config pgbouncer.ini`: the merged result on
/// stdout, one warning per ignored setting on stderr naming file, line and
/// key; a setting that would change behaviour unseen stops it (exit 2),
/// named the same way. No PostgreSQL needed.
#[test]
fn check_config_on_an_ini() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(
        dir.path(),
        "ok.ini",
        "[databases]\napp = host=127.0.0.1 pool_size=7\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         logfile = /var/log/pgbouncer.log\npool_mode = transaction\n",
    );
    let run = |file: &Path| {
        Command::new(causeway_bin().unwrap())
            .args(["--no-system-config", "check-config", "--config"])
            .arg(file)
            .env_remove("CAUSEWAY_POOL_MODE")
            .output()
            .unwrap()
    };
    let out = run(&ok);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("pool_mode = \"transaction\""), "{stdout}");
    assert!(stdout.contains("pool_size = 7"), "{stdout}");
    let want = format!("{}:5: [pgbouncer] logfile: not implemented", ok.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let bad = write(
        dir.path(),
        "bad.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nquery_timeout = 10\ntransaction_timeout = 60\n",
    );
    let out = run(&bad);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let want = format!(
        "{}:4: [pgbouncer] transaction_timeout: not enforced",
        bad.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}
