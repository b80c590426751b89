//! Helpers shared by the end-to-end test binaries (each binary includes this
//! file with `mod common;` and uses only part of it).
#![allow(dead_code)]

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use causeway_integration::{shared_cluster, userlist, CausewayBuilder, CausewayProcess, Cluster};
// The one way tests wait: poll a condition (integration/src/wait.rs).
#[allow(unused_imports)]
pub use causeway_integration::wait::{eventually, eventually_blocking, poll, poll_blocking};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Upper bound for any single step that should be quick.
pub const STEP: Duration = Duration::from_secs(20);

/// The binary's shared cluster, started off the async runtime.
pub async fn cluster() -> &'static Cluster {
    tokio::task::spawn_blocking(shared_cluster)
        .await
        .expect("shared_cluster panicked")
}

/// `[databases.NAME]` pointing at the primary, plus `extra` lines.
pub fn db_entry(c: &Cluster, name: &str, extra: &str) -> String {
    format!(
        "\n[databases.{name}]\ndbname = \"app\"\nhost = \"{}\"\nport = {}\n{extra}\n",
        c.primary().host(),
        c.primary().port()
    )
}

/// A running Causeway that prints its log when a test panics, and whose
/// (blocking) stop can be done off the runtime with [`Cw::stop`].
pub struct Cw(Option<CausewayProcess>);

impl Cw {
    pub async fn stop(mut self) {
        if let Some(p) = self.0.take() {
            tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
        }
    }

    pub fn process(&mut self) -> &mut CausewayProcess {
        self.0.as_mut().unwrap()
    }

    /// keyword connection string for tokio-postgres/libpq.
    pub fn conn_str(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user={user} dbname={db} connect_timeout=10",
            self.port()
        );
        if let Some(pw) = password {
            s.push_str(&format!(" password={pw}"));
        }
        s
    }

    pub async fn connect(
        &self,
        user: &str,
        password: Option<&str>,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        connect_str(&self.conn_str(user, password, db)).await
    }

    /// `app`/`app_pw` on database `app`; panics on failure.
    pub async fn app(&self) -> Client {
        self.connect("app", Some("app_pw"), "app")
            .await
            .unwrap_or_else(|e| panic!("connect through causeway: {e}\n{}", self.log_contents()))
    }
}

impl Deref for Cw {
    type Target = CausewayProcess;
    fn deref(&self) -> &CausewayProcess {
        self.0.as_ref().unwrap()
    }
}

impl DerefMut for Cw {
    fn deref_mut(&mut self) -> &mut CausewayProcess {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Cw {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            if std::thread::panicking() {
                eprintln!(
                    "----- causeway log ({}) -----\n{}\n----- end of causeway log -----",
                    p.log_path().display(),
                    p.log_contents()
                );
            }
        }
    }
}

/// Starts Causeway with `toml` (listen/metrics ports picked by the builder).
/// `{userlist}` in the TOML is replaced with the path of a userlist file
/// holding `users`.
pub async fn start_cw(users: &[(&str, &str)], toml: &str) -> Cw {
    let users: Vec<(String, String)> = users
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect();
    let toml = toml.to_string();
    tokio::task::spawn_blocking(move || {
        // Plain log text, readable when a failing test prints it.
        let b = CausewayBuilder::new()?.env("NO_COLOR", "1");
        let refs: Vec<(&str, &str)> = users
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        let path = b.write_file("userlist.txt", &userlist(&refs))?;
        let toml = toml.replace("{userlist}", &path.display().to_string());
        b.start(&toml)
    })
    .await
    .unwrap()
    .map(|p| Cw(Some(p)))
    .unwrap_or_else(|e| panic!("causeway failed to start: {e}"))
}

/// The usual top-level settings: scram auth against a userlist with the
/// three app users, log at info.
pub fn base_toml(pool_mode: &str, extra_top: &str) -> String {
    format!(
        "pool_mode = \"{pool_mode}\"\nauth_type = \"scram-sha-256\"\nauth_file = \"{{userlist}}\"\n{extra_top}\n"
    )
}

pub const APP_USERS: &[(&str, &str)] = &[
    ("app", "app_pw"),
    ("app_md5", "md5_pw"),
    ("app_plain", "plain_pw"),
];

pub async fn connect_str(s: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio::time::timeout(STEP, tokio_postgres::connect(s, NoTls))
        .await
        .unwrap_or_else(|_| panic!("connect {s:?} timed out"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Superuser connection straight to the primary (database `app`).
pub async fn direct(c: &Cluster) -> Client {
    connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .expect("direct superuser connection to primary")
}

/// SQLSTATE of an error (None for I/O and other non-server errors).
pub fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// The server (or Causeway) error message, else the error's text.
pub fn msg(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Awaits `f` with a deadline; panics naming `what` on timeout.
pub async fn within<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {d:?}"),
    }
}

/// Runs a command to completion off the runtime, killing it after `limit`.
pub async fn run_cmd(mut cmd: Command, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn command");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => out.expect("wait for command"),
            Err(_) => {
                // SAFETY: plain syscall on our own child, not yet reaped
                // (its waiting thread has not returned).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                panic!("command {cmd:?} still running after {limit:?}; killed");
            }
        }
    })
    .await
    .unwrap()
}

/// A libpq command (psql, pgbench) with a clean libpq environment.
pub fn libpq_cmd(prog: &str) -> Command {
    let mut cmd = Command::new(prog);
    causeway_integration::cluster::clear_libpq_env(&mut cmd);
    cmd.env("LC_ALL", "C").env("PGCONNECT_TIMEOUT", "10");
    cmd
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs superuser SQL on the primary via psql (blocking, off the runtime).
pub async fn psql_primary(sql: &str) -> String {
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || {
        let c = shared_cluster();
        c.psql(c.primary(), "app", &sql)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("psql on primary: {e}"))
}

/// Number of backends on the primary for `where_sql` (a pg_stat_activity
/// condition), counted by a direct superuser connection.
pub async fn count_backends(direct: &Client, where_sql: &str) -> i64 {
    direct
        .query_one(
            &format!("SELECT count(*) FROM pg_stat_activity WHERE {where_sql}"),
            &[],
        )
        .await
        .expect("count backends")
        .get(0)
}

/// The first column of the first row of a simple query, as text.
pub async fn simple_one(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let msgs = client.simple_query(sql).await?;
    for m in msgs {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or("").to_string());
        }
    }
    Ok(String::new())
}

/// Creates a login role (scram) and, optionally, a database it owns.
pub async fn create_role(name: &str, password: &str, own_db: Option<&str>) {
    let mut sql = format!(
        "CREATE ROLE {name} LOGIN PASSWORD '{password}';\nGRANT ALL ON SCHEMA public TO {name};\n"
    );
    if let Some(db) = own_db {
        sql.push_str(&format!("CREATE DATABASE {db} OWNER {name};\n"));
    }
    psql_primary(&sql).await;
}

/// Transaction mode, database `app` on every node of `c` (roles
/// discovered by the monitor), with `top` and `db` extra lines.
pub fn split_toml(c: &Cluster, top: &str, db: &str) -> String {
    let mut t = base_toml("transaction", top);
    t.push_str(&format!("\n[databases.app]\ndbname = \"app\"\n{db}\n"));
    for n in c.nodes() {
        t.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\n",
            n.host(),
            n.port()
        ));
    }
    t
}

/// `[[databases.app.servers]]` entries for every node of `c`, each with
/// its role as a hint (`primary` or `replica`).
pub fn servers_with_roles(c: &Cluster) -> String {
    let mut t = String::new();
    for n in c.nodes() {
        let role = if n.name() == "primary" {
            "primary"
        } else {
            "replica"
        };
        t.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\nrole = \"{role}\"\n",
            n.host(),
            n.port()
        ));
    }
    t
}

/// Waits until reads through `client` run on a replica (the monitor has
/// probed the servers and found the replicas).
pub async fn until_replica_reads(client: &Client) {
    eventually(
        STEP,
        "a read through causeway served by a replica",
        || async {
            match row(client, "SELECT pg_is_in_recovery()").await {
                Ok(r) if r == ["t"] => Ok(()),
                Ok(r) => Err(format!("pg_is_in_recovery = {r:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}

/// Waits until `sql_like` (a LIKE pattern) runs as an active query on one
/// of `nodes`, seen by direct superuser connections: the moment a cancel or
/// a kill can hit it.
pub async fn until_running(nodes: &[&causeway_integration::Node], sql_like: &str) {
    let mut direct = Vec::new();
    for n in nodes {
        let d = connect_str(&n.conn_str("postgres", None, "postgres"))
            .await
            .expect("direct superuser connection");
        direct.push(d);
    }
    let cond = format!(
        "state = 'active' AND query LIKE '{}' AND query NOT LIKE '%pg_stat_activity%'",
        sql_like.replace('\'', "''")
    );
    let (direct, cond) = (&direct, &cond);
    eventually(STEP, &format!("{sql_like:?} running"), || async move {
        let mut n = 0;
        for d in direct {
            n += count_backends(d, cond).await;
        }
        n > 0
    })
    .await;
}

/// Text values of the first row of the last result of `sql`.
pub async fn row(client: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let msgs = client.simple_query(sql).await?;
    let mut out = Vec::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            out = (0..r.len())
                .map(|i| r.get(i).unwrap_or("").to_string())
                .collect();
            break;
        }
    }
    Ok(out)
}
