//! A real PostgreSQL primary with N physical streaming replicas, for tests.
//!
//! Everything here is synchronous (`std::process`), so it works from plain
//! `#[test]`s and from tokio tests alike (call it from `spawn_blocking` if a
//! test must not block its runtime). PostgreSQL refuses to run as root, so
//! when the tests run as root every PostgreSQL command goes through
//! `runuser -u postgres --`.
//!
//! Layout of a cluster's temp dir (`/tmp/causeway-cluster-XXXXXX`):
//!
//! ```text
//! primary/data          data directory
//! primary/sock          unix_socket_directories
//! primary/postgres.log  server log (pg_ctl -l)
//! replica0/...          same for each replica
//! ```

use std::ffi::CString;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::wait::poll_blocking;

/// Superuser created by initdb (`-U postgres`).
pub const SUPERUSER: &str = "postgres";

/// Login roles created on every cluster: (user, password, server-side auth
/// method that pg_hba.conf applies to it over TCP).
pub const APP_USERS: [(&str, &str, &str); 3] = [
    ("app", "app_pw", "scram-sha-256"),
    ("app_md5", "md5_pw", "md5"),
    ("app_plain", "plain_pw", "password"),
];

/// How a [`Cluster`] is built.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of streaming replicas (default 2).
    pub replicas: usize,
    /// Extra lines appended to every node's postgresql.conf.
    pub extra_conf: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 2,
            extra_conf: Vec::new(),
        }
    }
}

impl ClusterOptions {
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.extra_conf.push(line.into());
        self
    }
}

/// One PostgreSQL server of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    port: u16,
    node_dir: PathBuf,
}

impl Node {
    /// "primary", "replica0", "replica1", ... (the role at creation time).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP port on [`Node::host`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always "127.0.0.1".
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn data_dir(&self) -> PathBuf {
        self.node_dir.join("data")
    }

    /// Directory holding the node's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> PathBuf {
        self.node_dir.join("sock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.node_dir.join("postgres.log")
    }

    /// Contents of the server log (empty if unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// A libpq/tokio-postgres keyword connection string over TCP.
    pub fn conn_str(&self, user: &str, password: Option<&str>, dbname: &str) -> String {
        let mut s = format!(
            "host={} port={} user={} dbname={}",
            self.host(),
            self.port,
            user,
            dbname
        );
        if let Some(pw) = password {
            let _ = write!(s, " password={pw}");
        }
        s
    }
}

/// A running primary + replicas. Dropping it stops every node
/// (`pg_ctl stop -m immediate`) and removes the temp dir.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    pg: PgBin,
    nodes: Vec<Node>,
    /// Background shell that cleans up if this process dies without running
    /// Drop/atexit (SIGKILL, abort, Ctrl-C of `cargo test`).
    watchdog: std::sync::Mutex<Option<Child>>,
    shut_down: AtomicBool,
}

impl Cluster {
    /// initdb + start a primary, create the test roles and database, then
    /// base-backup and start `opts.replicas` streaming replicas and wait until
    /// they all stream.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, String> {
        let pg = PgBin::find()?;
        let root = tempfile::Builder::new()
            .prefix("causeway-cluster-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("create temp dir: {e}"))?
            .keep();
        // From here on the Cluster value owns `root`: its Drop cleans up even
        // if a later step fails.
        let mut cluster = Cluster {
            root,
            pg,
            nodes: Vec::new(),
            watchdog: std::sync::Mutex::new(None),
            shut_down: AtomicBool::new(false),
        };
        cluster.pg.chown_to_postgres(&cluster.root)?;
        cluster.spawn_watchdog();

        // Pick all ports up front while holding the listeners, so the nodes
        // cannot be handed the same port.
        let ports = free_ports(opts.replicas + 1)?;

        let primary = cluster.make_node("primary".to_string(), ports[0])?;
        cluster.nodes.push(primary.clone());
        cluster.pg.run(
            "initdb",
            &[
                "-D",
                path_str(&primary.data_dir())?,
                "--wal-segsize=1",
                "-A",
                "trust",
                "--auth-local=trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let mut conf = node_conf(&primary);
        conf.push_str(
            "listen_addresses = '127.0.0.1'\n\
             fsync = off\n\
             full_page_writes = on\n\
             wal_level = replica\n\
             max_wal_senders = 10\n\
             max_replication_slots = 10\n\
             hot_standby = on\n\
             hot_standby_feedback = on\n\
             wal_keep_size = '16MB'\n\
             wal_receiver_status_interval = '1s'\n\
             shared_buffers = '32MB'\n\
             max_connections = 200\n\
             log_min_messages = warning\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
        );
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append_file(&primary.data_dir().join("postgresql.conf"), &conf)?;
        // Rewritten wholesale: first match wins, so the special users come
        // before the scram catch-all.
        std::fs::write(
            primary.data_dir().join("pg_hba.conf"),
            "local all all trust\n\
             host replication all 127.0.0.1/32 trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all app_md5 127.0.0.1/32 md5\n\
             host all app_plain 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| format!("write pg_hba.conf: {e}"))?;
        cluster.start_node(&primary)?;
        cluster.psql(
            &primary,
            "postgres",
            "CREATE ROLE app LOGIN CREATEDB PASSWORD 'app_pw';\n\
             SET password_encryption = 'md5';\n\
             CREATE ROLE app_md5 LOGIN PASSWORD 'md5_pw';\n\
             RESET password_encryption;\n\
             CREATE ROLE app_plain LOGIN PASSWORD 'plain_pw';\n\
             GRANT ALL ON SCHEMA public TO app, app_md5, app_plain;\n\
             CREATE DATABASE app OWNER app;\n\
             \\connect app\n\
             GRANT ALL ON SCHEMA public TO app_md5, app_plain;\n",
        )?;

        // Replicas: base backups one after another (each takes a fast
        // checkpoint on the primary), then start them all.
        for i in 0..opts.replicas {
            let node = cluster.make_node(format!("replica{i}"), ports[i + 1])?;
            let port = primary.port().to_string();
            let slot = format!("slot_{i}");
            cluster.pg.run(
                "pg_basebackup",
                &[
                    "-D",
                    path_str(&node.data_dir())?,
                    "-R",
                    "-X",
                    "stream",
                    "-C",
                    "-S",
                    &slot,
                    "--checkpoint=fast",
                    "--no-sync",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    SUPERUSER,
                ],
            )?;
            // Later settings win: override port/socket copied from the primary.
            let mut conf = node_conf(&node);
            let _ = writeln!(conf, "cluster_name = '{}'", node.name());
            append_file(&node.data_dir().join("postgresql.conf"), &conf)?;
            cluster.nodes.push(node);
        }
        for i in 0..opts.replicas {
            let node = cluster.nodes[i + 1].clone();
            cluster.start_node(&node)?;
        }
        cluster.wait_streaming(opts.replicas, Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The temp dir holding every node.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// Node 0 (the primary at creation time).
    pub fn primary(&self) -> &Node {
        &self.nodes[0]
    }

    /// Replica `i` (0-based). Panics if out of range: a test bug.
    pub fn replica(&self, i: usize) -> &Node {
        &self.nodes[i + 1]
    }

    pub fn replicas(&self) -> &[Node] {
        &self.nodes[1..]
    }

    /// Primary first, then replicas in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Runs `sql` (may hold several statements and psql meta-commands such
    /// as `\connect`) with `psql -X -At` as the superuser over the node's
    /// unix socket; stops at the first error. Returns trimmed stdout.
    pub fn psql(&self, node: &Node, db: &str, sql: &str) -> Result<String, String> {
        let port = node.port().to_string();
        let out = self.pg.run_with_stdin(
            "psql",
            &[
                "-X",
                "-At",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                path_str(&node.socket_dir())?,
                "-p",
                &port,
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-f",
                "-",
            ],
            sql,
        )?;
        Ok(out.trim().to_string())
    }

    /// `pg_wal_replay_pause()` on replica `i`; returns once the pause took
    /// effect (or was at least requested, which already stops further
    /// records from being applied).
    pub fn pause_replay(&self, i: usize) -> Result<(), String> {
        let node = self.replica(i);
        self.psql(node, "postgres", "SELECT pg_wal_replay_pause()")?;
        // Not reaching "paused" within 2 s is fine: requested already stops
        // replay at the next record.
        let _ = poll_blocking(Duration::from_secs(2), "replay paused", || {
            self.psql(node, "postgres", "SELECT pg_get_wal_replay_pause_state()")
                .map(|s| s == "paused")
                .unwrap_or(false)
        });
        Ok(())
    }

    /// `pg_wal_replay_resume()` on replica `i`.
    pub fn resume_replay(&self, i: usize) -> Result<(), String> {
        self.psql(self.replica(i), "postgres", "SELECT pg_wal_replay_resume()")
            .map(|_| ())
    }

    /// Sets `recovery_min_apply_delay` on replica `i` (zero disables it).
    pub fn set_apply_delay(&self, i: usize, delay: Duration) -> Result<(), String> {
        let sql = format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms';\nSELECT pg_reload_conf();",
            delay.as_millis()
        );
        self.psql(self.replica(i), "postgres", &sql).map(|_| ())
    }

    /// `pg_ctl start -w` (named `start_node` because `Cluster::start` builds
    /// the cluster).
    pub fn start_node(&self, node: &Node) -> Result<(), String> {
        let data = node.data_dir();
        let log = node.log_file();
        self.pg
            .run(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    path_str(&data)?,
                    "-l",
                    path_str(&log)?,
                ],
            )
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{e}\n--- {} log ---\n{}",
                    node.name(),
                    tail(&node.log_contents())
                )
            })
    }

    /// `pg_ctl stop -m fast -w`.
    pub fn stop(&self, node: &Node) -> Result<(), String> {
        let data = node.data_dir();
        self.pg
            .run(
                "pg_ctl",
                &["stop", "-w", "-m", "fast", "-D", path_str(&data)?],
            )
            .map(|_| ())
    }

    /// Hard crash: SIGKILL the postmaster and every process of its data dir,
    /// wait until they are all gone, and remove the stale postmaster.pid so
    /// that [`Cluster::start_node`] works (it then runs crash recovery).
    pub fn kill(&self, node: &Node) -> Result<(), String> {
        let data = node.data_dir();
        let pid = postmaster_pid(&data)?;
        // SAFETY: plain syscall; the pid comes from postmaster.pid of a node
        // this cluster started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        // Children notice postmaster death by themselves, but killing them
        // is faster and leaves no shared memory attachments behind (a new
        // postmaster refuses to start while old ones are attached).
        let what = format!("{}: every process gone after SIGKILL", node.name());
        poll_blocking(Duration::from_secs(20), &what, || {
            let left = processes_in_dir(&data);
            for &p in &left {
                // SAFETY: as above; these processes run in this node's data dir.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            if left.is_empty() && !is_live(pid) {
                Ok(())
            } else {
                Err(left)
            }
        })?;
        // The lock files name a dead but maybe still unreaped (zombie) pid,
        // which answers kill(pid, 0), so the next start would refuse to run.
        let sock = node.socket_dir();
        let stale = [
            data.join("postmaster.pid"),
            sock.join(format!(".s.PGSQL.{}.lock", node.port())),
            sock.join(format!(".s.PGSQL.{}", node.port())),
        ];
        for f in stale {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", f.display())),
            }
        }
        Ok(())
    }

    /// `pg_ctl promote -w` on replica `i`. Node names are not changed: the
    /// test knows which index it promoted.
    pub fn promote(&self, i: usize) -> Result<(), String> {
        let data = self.replica(i).data_dir();
        self.pg
            .run(
                "pg_ctl",
                &["promote", "-w", "-t", "60", "-D", path_str(&data)?],
            )
            .map(|_| ())
    }

    /// Waits until replica `i` has replayed everything the primary (node 0)
    /// has written so far.
    pub fn wait_replay_caught_up(&self, i: usize, timeout: Duration) -> Result<(), String> {
        let target = self.psql(self.primary(), "postgres", "SELECT pg_current_wal_lsn()")?;
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false), \
             pg_last_wal_replay_lsn()"
        );
        let node = self.replica(i);
        let what = format!("{}: replay reaches the primary's {target}", node.name());
        poll_blocking(timeout, &what, || match self.psql(node, "postgres", &sql) {
            Ok(out) if out.starts_with("t|") => Ok(()),
            Ok(out) => Err(format!("replay at {}", out.split('|').nth(1).unwrap_or(""))),
            Err(e) => Err(e),
        })
    }

    /// Polls `sql` on `node` until its output equals `expected`. Errors are
    /// retried too (e.g. the table has not been replayed yet).
    pub fn wait_for_value(
        &self,
        node: &Node,
        db: &str,
        sql: &str,
        expected: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let what = format!("{}: {sql:?} gives {expected:?}", node.name());
        poll_blocking(timeout, &what, || match self.psql(node, db, sql) {
            Ok(got) if got == expected => Ok(()),
            other => Err(other),
        })
    }

    /// Waits until the primary (node 0) reports `n` walsenders in state
    /// `streaming`.
    pub fn wait_streaming(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
        let what = format!("{n} replicas streaming");
        poll_blocking(timeout, &what, || {
            let got = self.psql(self.primary(), "postgres", sql)?;
            match got.parse::<usize>() {
                Ok(c) if c >= n => Ok(()),
                _ => Err(format!("{got} streaming")),
            }
        })
    }

    /// Stops every node (`-m immediate`) and removes the temp dir. Idempotent;
    /// called by Drop and by the atexit hook of [`shared_cluster`].
    pub fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        for node in &self.nodes {
            if node.data_dir().join("postmaster.pid").exists() {
                if let Ok(data) = path_str(&node.data_dir()) {
                    let _ = self
                        .pg
                        .run("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", data]);
                }
            }
            // Safety net for a node pg_ctl could not stop.
            for p in processes_in_dir(&node.data_dir()) {
                // SAFETY: processes running in this cluster's data dir.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if let Ok(mut guard) = self.watchdog.lock() {
            if let Some(mut child) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn make_node(&self, name: String, port: u16) -> Result<Node, String> {
        let node = Node {
            node_dir: self.root.join(&name),
            name,
            port,
        };
        for dir in [node.node_dir.clone(), node.socket_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            self.pg.chown_to_postgres(&dir)?;
        }
        Ok(node)
    }

    /// A detached shell that waits for this process to die and then stops
    /// the nodes and removes the dir. It runs in its own process group so a
    /// Ctrl-C aimed at `cargo test` does not take it down too. Best effort:
    /// without it everything still works, only crash cleanup is lost.
    fn spawn_watchdog(&self) {
        let Ok(root) = path_str(&self.root) else {
            return;
        };
        let pg_ctl = self.pg.bin.join("pg_ctl");
        let stop = if self.pg.as_root {
            format!("runuser -u postgres -- {}", pg_ctl.display())
        } else {
            pg_ctl.display().to_string()
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             for d in '{root}'/*/data; do {stop} stop -m immediate -D \"$d\" >/dev/null 2>&1; done; \
             rm -rf '{root}'",
            pid = std::process::id(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let (Ok(child), Ok(mut guard)) = (child, self.watchdog.lock()) {
            *guard = Some(child);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One cluster (primary + 2 replicas) per test binary, for tests that do
/// not change its topology. Started on first use; stopped at process exit.
/// Panics if the cluster cannot start (tests want to fail loudly then).
pub fn shared_cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::start(ClusterOptions::default())
            .unwrap_or_else(|e| panic!("shared cluster failed to start: {e}"));
        extern "C" fn teardown() {
            if let Some(c) = SHARED.get() {
                c.shutdown();
            }
        }
        // SAFETY: registering a plain extern "C" fn; it only touches the
        // already-initialised OnceLock.
        unsafe {
            libc::atexit(teardown);
        }
        cluster
    })
}

/// Binds 127.0.0.1:0 `n` times (holding all listeners) and returns the
/// ports, so they are distinct. Another process may still grab one before
/// it is used; good enough for tests.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        ports.push(
            l.local_addr()
                .map_err(|e| format!("local_addr: {e}"))?
                .port(),
        );
        listeners.push(l);
    }
    Ok(ports)
}

/// Where the PostgreSQL binaries are and how to run them.
#[derive(Debug, Clone)]
struct PgBin {
    bin: PathBuf,
    /// We are root: run everything as `postgres` via runuser.
    as_root: bool,
    /// uid/gid of `postgres` (only looked up as root).
    owner: Option<(libc::uid_t, libc::gid_t)>,
}

impl PgBin {
    fn find() -> Result<PgBin, String> {
        let bin = find_bindir()?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let owner = if as_root { Some(postgres_ids()?) } else { None };
        Ok(PgBin {
            bin,
            as_root,
            owner,
        })
    }

    fn command(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The caller's libpq environment must not redirect our commands.
        clear_libpq_env(&mut cmd);
        cmd.env("LC_ALL", "C");
        // `postgres` may not be allowed into the caller's cwd (e.g. /root).
        cmd.current_dir("/tmp");
        cmd
    }

    fn run(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        self.run_inner(prog, args, None)
    }

    fn run_with_stdin(&self, prog: &str, args: &[&str], input: &str) -> Result<String, String> {
        self.run_inner(prog, args, Some(input))
    }

    fn run_inner(&self, prog: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
        use std::io::Write as _;
        let mut cmd = self.command(prog);
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {prog}: {e}"))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // Dropping stdin at the end of this block closes it (EOF for psql).
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| format!("write stdin of {prog}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wait {prog}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{prog} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", stdout.trim())
                }
            ))
        }
    }

    fn chown_to_postgres(&self, path: &Path) -> Result<(), String> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let c = CString::new(path_str(path)?).map_err(|e| format!("path: {e}"))?;
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
            return Err(format!(
                "chown {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

/// `$CAUSEWAY_PG_BINDIR`, else the highest /usr/lib/postgresql/N/bin, else
/// `pg_config --bindir`; must contain initdb.
fn find_bindir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CAUSEWAY_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let Some(ver) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let bin = e.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| ver > *v) {
                best = Some((ver, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("no /usr/lib/postgresql/*/bin and pg_config failed: {e}"))?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if bin.join("initdb").is_file() {
        Ok(bin)
    } else {
        Err(format!("initdb not found in {}", bin.display()))
    }
}

fn postgres_ids() -> Result<(libc::uid_t, libc::gid_t), String> {
    let name = CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage that we
    // read immediately (tests set up clusters rarely; no concurrent getpw*
    // calls that matter).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root but OS user `postgres` does not exist".into());
    }
    // SAFETY: non-null pointer from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

/// postgresql.conf lines that differ per node.
fn node_conf(node: &Node) -> String {
    format!(
        "\n# causeway-integration\nport = {}\nunix_socket_directories = '{}'\n",
        node.port(),
        node.socket_dir().display()
    )
}

fn append_file(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

fn postmaster_pid(data: &Path) -> Result<libc::pid_t, String> {
    let text = std::fs::read_to_string(data.join("postmaster.pid"))
        .map_err(|e| format!("read {}/postmaster.pid (not running?): {e}", data.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("bad postmaster.pid in {}", data.display()))
}

/// Alive and not a zombie.
fn is_live(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised comm) is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Live processes whose cwd is `data`. Every PostgreSQL process chdirs into
/// its data directory, so this finds a node's processes even after they
/// were reparented (tests use it to check that nothing is left behind).
/// Removes every libpq variable (PGHOST, PGPORT, PGPASSWORD, ...) from a
/// command's environment so a developer's settings cannot redirect it.
pub fn clear_libpq_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGDATA",
        "PGSSLMODE",
        "PGTARGETSESSIONATTRS",
        "PGAPPNAME",
        "PGCONNECT_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
}

pub fn processes_in_dir(data: &Path) -> Vec<libc::pid_t> {
    let Ok(want) = data.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == want)
                && is_live(*pid)
        })
        .collect()
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}
