//! `servers_from = "patroni"` against real Patroni (Debian's `patroni`) and
//! etcd (`etcd-server`), all on loopback, PostgreSQL run by Patroni as the
//! non-root `postgres` user: a 3-member cluster behind Causeway under
//! reads and writes, a `patronictl switchover`, a killed leader, and a
//! fourth member added while running. Skipped, loudly, when Patroni or etcd
//! is not installed (.ci/run installs both).
//!
//! Prints the failover figures (failed reads and writes, time from
//! Patroni's new leader to the first write through Causeway):
//! `cargo test -p causeway-integration --test patroni -- --nocapture`.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_integration::causeway::first_free_port;
use causeway_integration::cluster::processes_in_dir;
use causeway_integration::eventually;
use common::*;

const LONG: Duration = Duration::from_secs(60);

fn installed(bin: &str) -> bool {
    Path::new(bin).is_file()
}

/// uid/gid of `postgres` when we are root (PostgreSQL refuses to run as root).
fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no `postgres` user (useradd --system postgres)"
    );
    // SAFETY: non-null result of getpwnam.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// GET `path` on 127.0.0.1:`port`: the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// (name, role, state) of each member, from Patroni's /cluster.
fn members(api: u16) -> Vec<(String, String, String)> {
    let Some(body) = http_get(api, "/cluster") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let f = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                    (f("name"), f("role"), f("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Member {
    name: String,
    api: u16,
    pg: u16,
    child: Option<Child>,
}

/// etcd and the Patroni members, killed (with their PostgreSQL) on drop.
struct Ha {
    root: PathBuf,
    owner: Option<(u32, u32)>,
    etcd_port: u16,
    etcd: Option<Child>,
    members: Vec<Member>,
}

impl Ha {
    fn command(&self, prog: &str, log: &str) -> Command {
        let mut c = Command::new(prog);
        causeway_integration::cluster::clear_libpq_env(&mut c);
        let log = std::fs::File::create(self.root.join(log)).unwrap();
        c.current_dir(&self.root)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid).env("HOME", &self.root);
        }
        c
    }

    fn start(ports: &mut Vec<u16>) -> Ha {
        let root = tempfile::Builder::new()
            .prefix("causeway-patroni-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let owner = postgres_ids();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
        }
        let (client, peer) = (ports.pop().unwrap(), ports.pop().unwrap());
        let mut ha = Ha {
            root,
            owner,
            etcd_port: client,
            etcd: None,
            members: Vec::new(),
        };
        let mut etcd = ha.command("/usr/bin/etcd", "etcd.log");
        etcd.args(["--name", "e1", "--data-dir"])
            .arg(ha.root.join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e1=http://127.0.0.1:{peer}"),
            ]);
        ha.etcd = Some(etcd.spawn().expect("start etcd"));
        ha
    }

    /// Writes member `name`'s Patroni configuration and starts it.
    fn add(&mut self, name: &str, api: u16, pg: u16) {
        let dir = self.root.join(name);
        let yml = format!(
            r#"scope: causeway-test
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    postgresql:
      use_pg_rewind: false
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 64MB
  initdb:
    - encoding: UTF8
    - locale: C
    - auth: trust
  pg_hba:
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: {dir}/pgpass
  authentication:
    replication:
      username: postgres
    superuser:
      username: postgres
  parameters:
    unix_socket_directories: {dir}
    fsync: "off"
    max_connections: 100
    shared_buffers: 32MB
"#,
            etcd = self.etcd_port,
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("patroni.yml");
        std::fs::write(&cfg, yml).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&cfg, Some(uid), Some(gid)).unwrap();
        }
        let mut c = self.command("/usr/bin/patroni", &format!("{name}.log"));
        c.arg(&cfg);
        let child = c.spawn().expect("start patroni");
        self.members.push(Member {
            name: name.into(),
            api,
            pg,
            child: Some(child),
        });
    }

    fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap()
    }

    /// Patroni's view, from the first member that answers.
    fn view(&self) -> Vec<(String, String, String)> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| members(m.api))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }

    fn leader(&self) -> Option<String> {
        self.view()
            .into_iter()
            .find(|(_, role, state)| role == "leader" && state == "running")
            .map(|(n, _, _)| n)
    }

    /// Whether `n` members run, one leader and the rest streaming replicas.
    fn healthy(&self, n: usize) -> bool {
        let v = self.view();
        v.len() == n
            && v.iter()
                .filter(|m| m.1 == "leader" && m.2 == "running")
                .count()
                == 1
            && v.iter().all(|m| m.2 == "running" || m.2 == "streaming")
    }

    /// SIGKILL of member `name`'s Patroni and its PostgreSQL (a host lost).
    fn kill(&mut self, name: &str) {
        let root = self.root.join(name).join("data");
        let m = self.members.iter_mut().find(|m| m.name == name).unwrap();
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in processes_in_dir(&root) {
            // SAFETY: plain syscall on a PostgreSQL process of our own test.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.root.join(file)).unwrap_or_default()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.members {
                let log = self.log(&format!("{}.log", m.name));
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("----- patroni {} (last lines, newest first) -----", m.name);
                tail.iter().for_each(|l| eprintln!("{l}"));
            }
        }
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        for n in names {
            self.kill(&n);
        }
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Outcomes of a load loop: successes, failures, and when each write
/// succeeded (to find the first one after an event).
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    ok_at: Mutex<Vec<Instant>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn first_ok_after(&self, t: Instant) -> Option<Duration> {
        self.ok_at
            .lock()
            .unwrap()
            .iter()
            .find(|&&at| at >= t)
            .map(|&at| at - t)
    }
}

/// An autocommit statement in a loop through Causeway until `stop`,
/// reconnecting after a lost connection; every outcome counted.
fn load(
    cw_conn: String,
    sql: &'static str,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = None;
        while !stop.load(Ordering::Relaxed) {
            if client
                .as_ref()
                .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
            {
                client = match connect_str(&cw_conn).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        t.failed.fetch_add(1, Ordering::Relaxed);
                        t.errors.lock().unwrap().push(format!("connect: {e}"));
                        // sleep-ok: retry pacing of a load loop, not a wait
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
            }
            let c = client.as_ref().unwrap();
            match tokio::time::timeout(STEP, c.simple_query(sql)).await {
                Ok(Ok(_)) => {
                    t.ok.fetch_add(1, Ordering::Relaxed);
                    t.ok_at.lock().unwrap().push(Instant::now());
                }
                other => {
                    t.failed.fetch_add(1, Ordering::Relaxed);
                    t.errors.lock().unwrap().push(format!("{other:?}"));
                    client = None;
                    // sleep-ok: pace the retries of a failing load loop (not a wait).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // sleep-ok: pace the load; a few hundred statements a second is plenty.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The port of the server a read through Causeway ran on.
async fn read_port(cw: &Cw) -> Option<u16> {
    let c = cw.connect("app", Some("app_pw"), "app").await.ok()?;
    row(&c, "SELECT inet_server_port()::text")
        .await
        .ok()?
        .first()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_patroni_switchover_failover_and_new_member() {
    if !installed("/usr/bin/patroni") || !installed("/usr/bin/etcd") {
        eprintln!(
            "\n\n!!!!! SKIPPED follows_patroni_switchover_failover_and_new_member: \
             patroni or etcd is not installed (apt-get install patroni etcd-server; \
             .ci/run does) !!!!!\n"
        );
        return;
    }
    let mut ports = stable_ports(10);
    let mut ha = Ha::start(&mut ports);
    let net: Vec<(u16, u16)> = (0..4)
        .map(|_| (ports.pop().unwrap(), ports.pop().unwrap()))
        .collect();
    ha.add("pg1", net[0].0, net[0].1);
    let h = &ha;
    eventually(LONG, "pg1 leads", || async move {
        h.leader().as_deref() == Some("pg1")
    })
    .await;
    ha.add("pg2", net[1].0, net[1].1);
    ha.add("pg3", net[2].0, net[2].1);
    let h = &ha;
    eventually(LONG, "3 members streaming", || async move { h.healthy(3) }).await;

    let urls: Vec<String> = ha
        .members
        .iter()
        .map(|m| format!("\"http://127.0.0.1:{}\"", m.api))
        .collect();
    let cw = start_cw(
        APP_USERS,
        &(base_toml(
            "transaction",
            "default_pool_size = 8\nmax_client_conn = 100",
        ) + &format!(
            "\n[databases.app]\ndbname = \"postgres\"\nuser = \"postgres\"\n\
                 servers_from = \"patroni\"\npatroni_url = [{}]\n",
            urls.join(", ")
        )),
    )
    .await;
    let replicas = [ha.member("pg2").pg, ha.member("pg3").pg];
    let cwr = &cw;
    eventually(
        LONG,
        "reads through Causeway on a Patroni replica",
        || async move { read_port(cwr).await.is_some_and(|p| replicas.contains(&p)) },
    )
    .await;
    let admin = cw.app().await;
    row(&admin, "CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
        .await
        .expect("create table through Causeway");

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, writes) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let conn = cw.conn_str("app", Some("app_pw"), "app");
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(load(
            conn.clone(),
            "SELECT count(*) FROM ticks",
            stop.clone(),
            reads.clone(),
        ));
    }
    tasks.push(load(
        conn.clone(),
        "INSERT INTO ticks VALUES (now())",
        stop.clone(),
        writes.clone(),
    ));
    // pgbench's select-only script alongside, on its own tables.
    let bench_init = run_cmd(
        {
            let mut c = libpq_cmd("pgbench");
            c.args(["-i", "-s", "1", "-q", &conn]);
            c
        },
        LONG,
    )
    .await;
    assert!(
        bench_init.status.success(),
        "pgbench -i: {}",
        text(&bench_init.stderr)
    );
    let bench = tokio::spawn(run_cmd(
        {
            let mut c = libpq_cmd("pgbench");
            c.args([
                "-n", "-S", "-c", "4", "-j", "2", "-T", "60", "-M", "simple", &conn,
            ]);
            c
        },
        Duration::from_secs(150),
    ));
    let w = &writes;
    let base = w.ok.load(Ordering::Relaxed);
    eventually(LONG, "writes flowing", || async move {
        w.ok.load(Ordering::Relaxed) > base + 20
    })
    .await;
    // Reads flowing too, and every member streaming again after pgbench -i
    // (a switchover asked for while a replica is still catching up may be
    // declined by Patroni, or promote a replica without the test's table).
    let r = &reads;
    let base = r.ok.load(Ordering::Relaxed);
    eventually(LONG, "reads flowing", || async move {
        r.ok.load(Ordering::Relaxed) > base + 20
    })
    .await;
    let h = &ha;
    eventually(
        LONG,
        "3 members streaming before the switchover",
        || async move { h.healthy(3) },
    )
    .await;

    // 1. Planned switchover pg1 -> pg2.
    let reads_failed_0 = reads.failed.load(Ordering::Relaxed);
    let writes_failed_0 = writes.failed.load(Ordering::Relaxed);
    // Patroni may decline a switchover asked for soon after the cluster
    // formed while patronictl still exits 0 (seen: no switchover at all,
    // pg1 keeps the lock): asked again, a few times, until pg2 leads.
    let mut said = Vec::new();
    for _ in 0..4 {
        let sw = run_cmd(switchover_cmd(&ha.root), LONG).await;
        said.push(format!(
            "{}: {}{}",
            sw.status,
            text(&sw.stdout),
            text(&sw.stderr)
        ));
        let h = &ha;
        let led = causeway_integration::poll(
            Duration::from_secs(15),
            "Patroni: pg2 leads",
            || async move { h.leader().as_deref() == Some("pg2") },
        )
        .await;
        if led.is_ok() {
            break;
        }
    }
    assert_eq!(
        ha.leader().as_deref(),
        Some("pg2"),
        "Patroni: pg2 does not lead after {} switchovers; patronictl said: {said:?}",
        said.len()
    );
    let switched = Instant::now();
    let w = &writes;
    eventually(
        LONG,
        "a write through Causeway after the switchover",
        || async move { w.first_ok_after(switched).is_some() },
    )
    .await;
    let sw_first_write = writes.first_ok_after(switched).unwrap();
    let sw_reads_failed = reads.failed.load(Ordering::Relaxed) - reads_failed_0;
    let sw_writes_failed = writes.failed.load(Ordering::Relaxed) - writes_failed_0;
    let h = &ha;
    eventually(
        LONG,
        "pg1 back as a replica",
        || async move { h.healthy(3) },
    )
    .await;

    // 2. The leader's host lost: Patroni promotes another after its ttl.
    let reads_failed_1 = reads.failed.load(Ordering::Relaxed);
    let writes_failed_1 = writes.failed.load(Ordering::Relaxed);
    ha.kill("pg2");
    let h = &ha;
    eventually(
        LONG,
        "Patroni: a new leader after pg2 died",
        || async move { h.leader().is_some_and(|l| l != "pg2") },
    )
    .await;
    let promoted = Instant::now();
    let w = &writes;
    eventually(
        LONG,
        "a write through Causeway after the failover",
        || async move { w.first_ok_after(promoted).is_some() },
    )
    .await;
    let fo_first_write = writes.first_ok_after(promoted).unwrap();
    let fo_reads_failed = reads.failed.load(Ordering::Relaxed) - reads_failed_1;
    let fo_writes_failed = writes.failed.load(Ordering::Relaxed) - writes_failed_1;

    // 3. A fourth member joins while the load runs: it takes reads, no reload.
    ha.add("pg4", net[3].0, net[3].1);
    let pg4 = ha.member("pg4").pg;
    let cwr = &cw;
    eventually(
        Duration::from_secs(90),
        "reads through Causeway on the new member pg4",
        || async move { read_port(cwr).await == Some(pg4) },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    // pgbench runs its fixed -T; end it now that the scenario is over.
    let bench = {
        for pid in pgbench_pids() {
            // SAFETY: plain syscall on a pgbench started by this test.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        bench.await.unwrap()
    };
    let bench_out = text(&bench.stdout) + &text(&bench.stderr);
    let log = cw.log_contents();
    eprintln!(
        "\nPATRONI FIGURES\n\
         switchover (patronictl, pg1 -> pg2): first write {sw_first_write:?} after Patroni showed the new leader; \
         failed autocommit reads {sw_reads_failed}, failed writes {sw_writes_failed}\n\
         leader killed (pg2, SIGKILL): first write {fo_first_write:?} after Patroni showed the new leader; \
         failed autocommit reads {fo_reads_failed}, failed writes {fo_writes_failed}\n\
         totals: reads ok {} failed {}, writes ok {} failed {}\n\
         read errors: {:?}\nwrite errors (first 5): {:?}\n\
         pgbench -S: {}",
        reads.ok.load(Ordering::Relaxed),
        reads.failed.load(Ordering::Relaxed),
        writes.ok.load(Ordering::Relaxed),
        writes.failed.load(Ordering::Relaxed),
        reads.errors.lock().unwrap(),
        writes.errors.lock().unwrap().iter().take(5).collect::<Vec<_>>(),
        bench_out
            .lines()
            .filter(|l| l.contains("failed") || l.contains("aborted") || l.contains("tps") || l.contains("error"))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    assert!(
        log.contains("Patroni membership changed"),
        "membership change not logged:\n{log}"
    );
    // No autocommit read is lost, planned or not: a read whose server dies
    // (or cannot be reached) before a row reached the client runs again on
    // another replica or the new primary.
    assert_eq!(
        (sw_reads_failed, fo_reads_failed),
        (0, 0),
        "autocommit reads failed (switchover, leader killed): {:?}",
        reads.errors.lock().unwrap()
    );
    cw.stop().await;
}

/// `n` free loopback ports below the kernel's ephemeral range (32768 and
/// up), so that the outgoing connections of etcd, Patroni and PostgreSQL
/// cannot take one between this pick and the bind; the start is spread by
/// pid so concurrent runs rarely look at the same ports.
fn stable_ports(n: usize) -> Vec<u16> {
    let mut from = 20000 + (std::process::id() % 500) as u16 * 20;
    (0..n)
        .map(|_| {
            let p = first_free_port(from, 32000).expect("a free port below 32000");
            from = p + 1;
            p
        })
        .collect()
}

/// pgbench processes started by this test process (children of it).
fn pgbench_pids() -> Vec<libc::pid_t> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ..."
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            comm.ends_with("(pgbench") && rest.split_whitespace().nth(1) == Some(me.as_str())
        })
        .collect()
}

/// `patronictl switchover` from pg1 to pg2, without asking.
fn switchover_cmd(root: &Path) -> Command {
    let mut c = Command::new("/usr/bin/patronictl");
    c.arg("-c").arg(root.join("pg1").join("patroni.yml")).args([
        "switchover",
        "--leader",
        "pg1",
        "--candidate",
        "pg2",
        "--force",
    ]);
    c
}
