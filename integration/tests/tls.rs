//! TLS on both sides, hba and cert auth, unix sockets: real PostgreSQL with
//! `ssl = on` and an hba that only lets TCP logins in over TLS (`hostssl`),
//! test certificates made here (rcgen), and real clients: psql/pgbench
//! (libpq), psycopg and asyncpg, node-postgres, tokio-postgres.
//!
//! One cluster for the whole file; each test starts the few Causeway
//! processes it needs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use causeway_integration::cluster_tls::HOSTSSL_ONLY_HBA;
use causeway_integration::{eventually, shared_cluster, CertFiles, Cluster, Pki};
use common::*;

/// Certificates shared by every test.
struct Env {
    dir: PathBuf,
    ca: PathBuf,
    /// A CA nobody trusts.
    rogue_ca: PathBuf,
    /// Causeway's certificate for clients (localhost, 127.0.0.1, ::1).
    cw: CertFiles,
    /// The one it rotates to.
    cw_next: CertFiles,
    /// Client certificates: CN=app and CN=app_md5 (test CA), CN=app (rogue CA).
    app: CertFiles,
    app_md5: CertFiles,
    rogue_app: CertFiles,
}

/// The shared cluster with TLS on and `hostssl`-only hba, and the
/// certificates. Blocking; call from `spawn_blocking`.
fn env_blocking() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let c = shared_cluster();
        let dir = tempfile::Builder::new()
            .prefix("causeway-tls-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let pki = Pki::new(&dir, "test").expect("CA");
        let rogue = Pki::new(&dir, "rogue").expect("rogue CA");
        let names = ["localhost", "127.0.0.1", "::1"];
        let pg = pki.server("postgres", &names).expect("server cert");
        c.enable_tls(&pg, &pki.ca_file(), HOSTSSL_ONLY_HBA)
            .expect("enable TLS on the cluster");
        Env {
            ca: pki.ca_file(),
            rogue_ca: rogue.ca_file(),
            cw: pki.server("causeway", &names).expect("cert"),
            cw_next: pki.server("causeway-next", &names).expect("cert"),
            app: pki.client("client-app", "app").expect("cert"),
            app_md5: pki.client("client-app_md5", "app_md5").expect("cert"),
            rogue_app: rogue.client("rogue-app", "app").expect("cert"),
            dir,
        }
    })
}

async fn env() -> (&'static Cluster, &'static Env) {
    let e = tokio::task::spawn_blocking(env_blocking).await.unwrap();
    (cluster().await, e)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Top-level TLS settings: clients as `client_mode` (with Causeway's
/// certificate and the CA for client certificates), servers verify-full.
fn tls_top(e: &Env, client_mode: &str) -> String {
    format!(
        "client_tls_sslmode = \"{client_mode}\"\n\
         client_tls_cert_file = \"{}\"\n\
         client_tls_key_file = \"{}\"\n\
         client_tls_ca_file = \"{}\"\n\
         server_tls_sslmode = \"verify-full\"\n\
         server_tls_ca_file = \"{}\"\n\
         admin_users = [\"admin\"]\n",
        path(&e.cw.cert),
        path(&e.cw.key),
        path(&e.ca),
        path(&e.ca)
    )
}

const USERS: &[(&str, &str)] = &[
    ("app", "app_pw"),
    ("app_md5", "md5_pw"),
    ("app_plain", "plain_pw"),
    ("admin", "admin_pw"),
];

/// psql `-c sql` with a keyword connection string; Ok(stdout) or Err(stderr).
async fn psql(conninfo: &str, sql: &str) -> Result<String, String> {
    let mut cmd = libpq_cmd("psql");
    cmd.args(["-X", "-At", "-c", sql, conninfo]);
    let out = run_cmd(cmd, STEP).await;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn conninfo(port: u16, user: &str, password: &str, db: &str, extra: &str) -> String {
    let password = if password.is_empty() {
        String::new()
    } else {
        format!("password={password} ")
    };
    format!("host=127.0.0.1 port={port} user={user} {password}dbname={db} {extra}")
}

/// `\conninfo` says "SSL connection" for TLS.
async fn tls_in_use(conninfo: &str) -> Result<bool, String> {
    psql(conninfo, "\\conninfo")
        .await
        .map(|o| o.contains("SSL connection"))
}

/// The value of one series in a /metrics text (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers")
}

/// Runs a driver script (`make drivers` installs the interpreters' packages).
async fn driver(prog: PathBuf, dir: &str, script: &str, args: &[String]) {
    assert!(
        prog.exists() || prog.as_os_str() == "node",
        "{} missing: run `make drivers`",
        prog.display()
    );
    let mut cmd = Command::new(&prog);
    causeway_integration::cluster::clear_libpq_env(&mut cmd);
    cmd.current_dir(drivers_dir().join(dir))
        .arg(script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    let out = run_cmd(cmd, Duration::from_secs(120)).await;
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    eprintln!("----- {script} -----\n{o}{e}");
    assert!(
        out.status.success() && o.contains("all checks passed"),
        "{script} failed:\n{o}\n{e}"
    );
}

/// Every libpq sslmode against every client_tls_sslmode (one Causeway per
/// mode), verify-full with a wrong host name, client certificates, the
/// `tls` column, and the Python and Node drivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sslmode_matrix() {
    let (c, e) = env().await;
    let db = db_entry(c, "app", "");
    let mut cws = Vec::new();
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let cw = start_cw(USERS, &(base_toml("session", &tls_top(e, mode)) + &db)).await;
        cws.push((mode, cw));
    }
    let ca = path(&e.ca);
    let rogue = path(&e.rogue_ca);
    let cert = |f: &CertFiles| format!("sslcert={} sslkey={}", path(&f.cert), path(&f.key));
    let app_cert = cert(&e.app);
    let rogue_cert = cert(&e.rogue_app);
    // (Causeway mode, client options, Some(TLS expected) or None = refused, refusal text)
    let cases: Vec<(&str, String, Option<bool>, &str)> = vec![
        ("disable", "sslmode=disable".into(), Some(false), ""),
        ("disable", "sslmode=prefer".into(), Some(false), ""),
        (
            "disable",
            format!("sslmode=require sslrootcert={ca}"),
            None,
            "does not support SSL",
        ),
        ("prefer", "sslmode=disable".into(), Some(false), ""),
        ("prefer", "sslmode=allow".into(), Some(false), ""),
        ("prefer", "sslmode=prefer".into(), Some(true), ""),
        (
            "prefer",
            format!("sslmode=require sslrootcert={ca}"),
            Some(true),
            "",
        ),
        (
            "prefer",
            format!("sslmode=verify-ca sslrootcert={ca}"),
            Some(true),
            "",
        ),
        (
            "prefer",
            format!("sslmode=verify-full sslrootcert={ca}"),
            Some(true),
            "",
        ),
        (
            "prefer",
            format!("sslmode=verify-ca sslrootcert={rogue}"),
            None,
            "certificate verify failed",
        ),
        ("require", "sslmode=disable".into(), None, "SSL required"),
        ("require", "sslmode=allow".into(), Some(true), ""),
        ("require", "sslmode=prefer".into(), Some(true), ""),
        (
            "require",
            format!("sslmode=verify-full sslrootcert={ca}"),
            Some(true),
            "",
        ),
        // verify-ca: a client certificate signed by client_tls_ca_file.
        (
            "verify-ca",
            format!("sslmode=require sslrootcert={ca}"),
            None,
            "",
        ),
        (
            "verify-ca",
            format!("sslmode=require sslrootcert={ca} {rogue_cert}"),
            None,
            "",
        ),
        (
            "verify-ca",
            format!("sslmode=verify-full sslrootcert={ca} {app_cert}"),
            Some(true),
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (mode, opts, want, needle) in &cases {
        let cw = &cws.iter().find(|(m, _)| m == mode).unwrap().1;
        let ci = conninfo(cw.port(), "app", "app_pw", "app", opts);
        let got = tls_in_use(&ci).await;
        let ok = match (want, &got) {
            (Some(tls), Ok(used)) => tls == used,
            (None, Err(err)) => err.contains(needle),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "client_tls_sslmode={mode} client {opts}: want {want:?} ({needle}), got {got:?}"
            ));
        }
    }
    // verify-full checks the host name: the certificate is not for wrong.example.
    let require = &cws[2].1;
    let wrong = format!(
        "host=wrong.example hostaddr=127.0.0.1 port={} user=app password=app_pw dbname=app sslmode=verify-full sslrootcert={ca}",
        require.port()
    );
    match psql(&wrong, "select 1").await {
        Err(err) if err.contains("does not match host name") => {}
        other => failures.push(format!("verify-full with a wrong host name: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Raw requests: GSSENCRequest gets 'N', then SSLRequest 'S'; bytes
    // pipelined after an SSLRequest (plaintext injected ahead of the
    // handshake) are refused.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const GSSENC: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
    const SSL: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", require.port()))
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    raw.write_all(&GSSENC).await.unwrap();
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], b'N', "GSSENCRequest");
    raw.write_all(&SSL).await.unwrap();
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], b'S', "SSLRequest after GSSENCRequest");
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", require.port()))
        .await
        .unwrap();
    raw.write_all(&[&SSL[..], b"injected"].concat())
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = within(STEP, "error reply", raw.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with('E') && reply.contains("unencrypted data after SSL request"),
        "{reply:?}"
    );

    // SHOW CLIENTS: the tls column of a TLS client.
    let tls = format!("sslmode=verify-full sslrootcert={ca}");
    let ci = conninfo(require.port(), "app", "app_pw", "app", &tls);
    let busy = tokio::spawn(async move { psql(&ci, "select pg_sleep(3)").await });
    let admin = conninfo(require.port(), "admin", "admin_pw", "pgbouncer", &tls);
    eventually(STEP, "a TLS client in SHOW CLIENTS", || async {
        psql(&admin, "SHOW CLIENTS")
            .await
            .is_ok_and(|c| c.contains("|TLSv1.3/TLS13_"))
    })
    .await;
    busy.await.unwrap().expect("the TLS client's query");

    // Real drivers against client_tls_sslmode = require.
    let args: Vec<String> = [
        "127.0.0.1",
        &require.port().to_string(),
        &ca,
        "app",
        "app_pw",
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let py = drivers_dir().join("python/.venv/bin/python");
    driver(py, "python", "tls_check.py", &args).await;
    driver(PathBuf::from("node"), "node", "tls_check.js", &args).await;

    // Handshakes are counted by result.
    let metrics = causeway_integration::http_get(require.metrics_port().unwrap(), "/metrics").1;
    let series =
        |r: &str| format!("causeway_tls_handshakes_total{{side=\"client\",result=\"{r}\"}}");
    assert!(metric(&metrics, &series("ok")) >= 5.0, "{metrics}");
    assert!(
        metric(&metrics, &series("plaintext_refused")) >= 1.0,
        "{metrics}"
    );
    for (_, cw) in cws {
        cw.stop().await;
    }
}

/// server_tls_sslmode towards a `hostssl`-only server: verify-full against
/// the test CA works (the server sees TLS; SCRAM-SHA-256-PLUS is used as
/// PostgreSQL offers it), a database overriding the CA with one that did
/// not sign the server's certificate fails, one with TLS disabled is
/// refused by the server's hba; a server at a unix socket directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_modes_and_unix_server() {
    let (c, e) = env().await;
    let p = c.primary();
    // Debug lines of the pool name the SASL mechanism used towards servers.
    let top = tls_top(e, "disable") + "log_level = \"info,causeway_pool=debug\"\n";
    let toml = base_toml("session", &top)
        + &db_entry(c, "app", "")
        + &db_entry(
            c,
            "rogue",
            &format!("server_tls_ca_file = \"{}\"", path(&e.rogue_ca)),
        )
        + &db_entry(c, "plain", "server_tls_sslmode = \"disable\"")
        + &format!(
            "\n[databases.sock]\ndbname = \"app\"\nhost = \"{}\"\nport = {}\nserver_tls_sslmode = \"disable\"\n",
            path(&p.socket_dir()),
            p.port()
        );
    let cw = start_cw(USERS, &toml).await;

    let app = cw.app().await;
    let row = row(
        &app,
        "SELECT ssl::text, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
    .expect("query over server TLS");
    assert_eq!(row[0], "true", "server connection not encrypted: {row:?}");
    // PostgreSQL offers SCRAM-SHA-256-PLUS over TLS: Causeway binds to the
    // server's certificate (a wrong binding would have failed the login).
    cw.wait_for_log("mechanism=\"SCRAM-SHA-256-PLUS\"", STEP)
        .unwrap();

    let err = cw
        .connect("app", Some("app_pw"), "rogue")
        .await
        .expect_err("a server certificate from another CA must be refused");
    assert!(msg(&err).contains("certificate"), "{}", msg(&err));

    let err = cw
        .connect("app", Some("app_pw"), "plain")
        .await
        .expect_err("the server's hba demands TLS");
    assert!(msg(&err).contains("no pg_hba.conf entry"), "{}", msg(&err));

    // Over the server's unix socket (never TLS; local trust there).
    let sock = cw
        .connect("app", Some("app_pw"), "sock")
        .await
        .unwrap_or_else(|e| panic!("unix-socket server: {}", msg(&e)));
    assert_eq!(
        simple_one(&sock, "SELECT 'via socket'").await.unwrap(),
        "via socket"
    );

    let admin = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    let servers = admin.simple_query("SHOW SERVERS").await.unwrap();
    let rows: Vec<_> = servers
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    let col =
        |r: &tokio_postgres::SimpleQueryRow, name: &str| r.get(name).unwrap_or("").to_string();
    let tcp = rows
        .iter()
        .find(|r| col(r, "database") == "app")
        .expect("app server");
    assert!(
        col(tcp, "tls").starts_with("TLSv1.3/"),
        "tls column: {:?}",
        col(tcp, "tls")
    );
    let unix = rows
        .iter()
        .find(|r| col(r, "database") == "sock")
        .expect("sock server");
    assert_eq!(
        (col(unix, "addr"), col(unix, "tls")),
        ("unix".to_string(), String::new())
    );

    let metrics = causeway_integration::http_get(cw.metrics_port().unwrap(), "/metrics").1;
    let refused = metric(
        &metrics,
        "causeway_tls_handshakes_total{side=\"server\",result=\"bad_certificate\"}",
    );
    assert!(refused >= 1.0, "{metrics}");
    drop((app, sock, admin));
    cw.stop().await;
}

/// The lag monitor probes every server over TLS (the servers accept TCP
/// logins only over TLS): replicas are found and take reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_probes_over_tls() {
    let (c, e) = env().await;
    let top = tls_top(e, "disable") + "monitor_user = \"postgres\"\n";
    let cw = start_cw(USERS, &split_toml(c, &top, "")).await;
    let client = cw.app().await;
    eventually(
        Duration::from_secs(30),
        "a read routed to a replica",
        || async {
            simple_one(&client, "SELECT pg_is_in_recovery()")
                .await
                .is_ok_and(|v| v == "t")
        },
    )
    .await;
    drop(client);
    cw.stop().await;
}

/// The certificate Causeway presents to a new TLS connection on `port`
/// (as its tls-server-end-point hash).
async fn presented(port: u16) -> Vec<u8> {
    let tls = causeway_net::ServerTls::new(causeway_net::ServerTlsSettings {
        sslmode: causeway_net::SslMode::Require,
        protocols: "secure".into(),
        ciphers: "fast".into(),
        ..Default::default()
    })
    .expect("client TLS config");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let s = tls
        .negotiate(tcp, "localhost")
        .await
        .expect("TLS handshake");
    s.end_point().expect("certificate hash").0.clone()
}

fn end_point(c: &CertFiles) -> Vec<u8> {
    causeway_net::EndPoint::of_certificate(&c.der).unwrap().0
}

/// pgbench (-C: a new TLS connection per transaction, and long sessions)
/// runs while the certificate files are replaced with a broken one (the
/// reload is refused, naming the file; the old certificate stays) and then
/// with a new pair (new handshakes get it): no transaction fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load() {
    let (c, e) = env().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cw.crt"), dir.path().join("cw.key"));
    std::fs::copy(&e.cw.cert, &cert).unwrap();
    std::fs::copy(&e.cw.key, &key).unwrap();
    let top = format!(
        "client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"{}\"\nclient_tls_key_file = \"{}\"\n\
         server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"{}\"\nadmin_users = [\"admin\"]\n\
         max_client_conn = 200\ndefault_pool_size = 10\n",
        path(&cert),
        path(&key),
        path(&e.ca)
    );
    let cw = start_cw(
        USERS,
        &(base_toml("transaction", &top) + &db_entry(c, "app", "")),
    )
    .await;
    assert_eq!(presented(cw.port()).await, end_point(&e.cw));

    let script = dir.path().join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let pgbench = |extra: &[&str]| {
        let mut cmd = libpq_cmd("pgbench");
        cmd.env("PGPASSWORD", "app_pw")
            .env("PGSSLMODE", "require")
            .args([
                "-n",
                "-h",
                "127.0.0.1",
                "-p",
                &cw.port().to_string(),
                "-U",
                "app",
                "-T",
                "8",
                "-f",
                &path(&script),
            ]);
        cmd.args(extra).arg("app");
        run_cmd(cmd, Duration::from_secs(60))
    };
    let load = tokio::spawn(futures_join(
        pgbench(&["-c", "4", "-C"]),
        pgbench(&["-c", "4"]),
    ));

    // Let the load get going: handshakes are being counted.
    let mport = cw.metrics_port().unwrap();
    let ok_series = "causeway_tls_handshakes_total{side=\"client\",result=\"ok\"}";
    eventually(STEP, "pgbench connected", || async move {
        metric(
            &causeway_integration::http_get(mport, "/metrics").1,
            ok_series,
        ) > 20.0
    })
    .await;

    // A broken certificate file: the reload is refused, the old one stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    cw.signal(libc::SIGHUP).unwrap();
    cw.wait_for_log(&format!("client_tls_cert_file {}", path(&cert)), STEP)
        .unwrap();
    assert_eq!(presented(cw.port()).await, end_point(&e.cw));
    // The admin console's RELOAD says the same.
    let admin = format!(
        "host=127.0.0.1 port={} user=admin password=admin_pw dbname=pgbouncer sslmode=require",
        cw.port()
    );
    let err = psql(&admin, "RELOAD").await.expect_err("RELOAD must fail");
    assert!(err.contains(&path(&cert)), "{err}");

    // The new pair: new handshakes get it.
    std::fs::copy(&e.cw_next.cert, &cert).unwrap();
    std::fs::copy(&e.cw_next.key, &key).unwrap();
    cw.signal(libc::SIGHUP).unwrap();
    let want = end_point(&e.cw_next);
    let port = cw.port();
    eventually(STEP, "new connections see the new certificate", || {
        let want = want.clone();
        async move { presented(port).await == want }
    })
    .await;

    let (a, b) = load.await.unwrap();
    for (what, out) in [("-C", a), ("sessions", b)] {
        let (o, err) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "pgbench {what}: {o}\n{err}\n{}",
            cw.log_contents()
        );
        assert!(
            o.contains("number of failed transactions: 0 (0.000%)"),
            "pgbench {what}:\n{o}\n{err}"
        );
        let n: u64 = o
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split('/').next()?.trim().parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "pgbench {what} ran nothing:\n{o}");
    }
    cw.stop().await;
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// tokio-postgres from a chosen source address (for per-address hba rules).
async fn connect_from(
    source: &str,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(format!("{source}:0").parse().unwrap())
        .map_err(|e| e.to_string())?;
    let stream = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(user).password(password).dbname(db);
    let (client, conn) = cfg
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(|e| msg(&e))?;
    tokio::spawn(conn);
    Ok(client)
}

/// auth_type = hba: each rule with a client it lets in and one it keeps
/// out (TLS or not, per address, per database, cert, peer over the unix
/// socket, reject); a bad hba file is refused at reload naming its line;
/// auth_type = cert; listen_addr as a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_rules_cert_auth_and_unix_socket() {
    let (c, e) = env().await;
    // Reachable by the postgres OS user (the peer check below).
    let sockdir = e.dir.join("sock");
    std::fs::create_dir_all(&sockdir).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for d in [&e.dir, &sockdir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let hba_path = e.dir.join("hba.conf");
    let hba = "# Causeway's own hba (file:line in errors)\n\
        local   all       postgres                 peer\n\
        local   all       all                      trust\n\
        hostssl app       app        127.0.0.1/32  scram-sha-256\n\
        hostssl app       app_md5    127.0.0.1/32  cert\n\
        host    app       app_plain  127.0.0.2/32  password\n\
        host    pgbouncer admin      all           md5\n\
        host    all       all        all           reject\n";
    std::fs::write(&hba_path, hba).unwrap();
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let top = tls_top(e, "prefer")
        + &format!(
            "auth_type = \"hba\"\nauth_hba_file = \"{}\"\nunix_socket_dir = \"{}\"\nlisten_addr = \"127.0.0.1{}\"\n",
            path(&hba_path),
            path(&sockdir),
            if v6 { ",::1" } else { "" }
        );
    let toml = base_toml("session", &top).replace("auth_type = \"scram-sha-256\"\n", "")
        + &db_entry(c, "app", "")
        + &db_entry(c, "other", "");
    let cw = start_cw(USERS, &toml).await;
    let port = cw.port();
    let ca = path(&e.ca);
    let tls = format!("sslmode=verify-full sslrootcert={ca}");
    let cert = |f: &CertFiles| format!("{tls} sslcert={} sslkey={}", path(&f.cert), path(&f.key));

    // hostssl + scram: in over TLS, out in clear (the last line rejects).
    psql(&conninfo(port, "app", "app_pw", "app", &tls), "select 1")
        .await
        .expect("app over TLS");
    let err = psql(
        &conninfo(port, "app", "app_pw", "app", "sslmode=disable"),
        "select 1",
    )
    .await
    .expect_err("app in clear");
    assert!(err.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"app\", database \"app\", no encryption"), "{err}");
    // Per database: app may not reach "other".
    let err = psql(&conninfo(port, "app", "app_pw", "other", &tls), "select 1")
        .await
        .expect_err("app on another database");
    assert!(err.contains("rejects connection"), "{err}");
    // cert: the certificate's CN is the user; another user's certificate is refused.
    psql(
        &conninfo(port, "app_md5", "", "app", &cert(&e.app_md5)),
        "select 1",
    )
    .await
    .expect("app_md5 with its certificate");
    let err = psql(
        &conninfo(port, "app_md5", "", "app", &cert(&e.app)),
        "select 1",
    )
    .await
    .expect_err("app_md5 with app's certificate");
    assert!(
        err.contains("certificate authentication failed for user \"app_md5\""),
        "{err}"
    );
    let err = psql(&conninfo(port, "app_md5", "", "app", &tls), "select 1")
        .await
        .expect_err("app_md5 without a certificate");
    assert!(err.contains("requires a valid client certificate"), "{err}");
    // Per address: app_plain only from 127.0.0.2.
    let c2 = connect_from("127.0.0.2", port, "app_plain", "plain_pw", "app")
        .await
        .expect("app_plain from 127.0.0.2");
    assert_eq!(simple_one(&c2, "SELECT 'in'").await.unwrap(), "in");
    let err = connect_from("127.0.0.1", port, "app_plain", "plain_pw", "app")
        .await
        .expect_err("app_plain from 127.0.0.1");
    assert!(
        err.contains("rejects connection for host \"127.0.0.1\""),
        "{err}"
    );
    // The unix socket: trust for app; peer for postgres (root is not postgres).
    let sock = format!("host={} port={port} dbname=app", path(&sockdir));
    psql(&format!("{sock} user=app"), "select 1")
        .await
        .expect("app over the unix socket");
    let err = psql(&format!("{sock} user=postgres"), "select 1")
        .await
        .expect_err("root as postgres over the socket");
    assert!(
        err.contains("peer authentication failed for user \"postgres\""),
        "{err}"
    );
    if unsafe { libc::geteuid() } == 0 {
        let mut cmd = Command::new("runuser");
        causeway_integration::cluster::clear_libpq_env(&mut cmd);
        cmd.args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-At",
            "-c",
            "select current_user",
            &format!("{sock} user=postgres"),
        ]);
        let out = run_cmd(cmd, STEP).await;
        assert!(
            out.status.success(),
            "peer as postgres: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), "postgres");
    }
    if v6 {
        let client = connect_str(&format!(
            "host=::1 port={port} user=admin password=admin_pw dbname=pgbouncer"
        ))
        .await
        .expect("listen_addr ::1");
        drop(client);
    }

    // A bad line: RELOAD is refused naming file and line; the rules stay.
    std::fs::write(
        &hba_path,
        hba.replace("127.0.0.2/32  password", "127.0.0.2/33  password"),
    )
    .unwrap();
    let admin = connect_str(&cw.conn_str("admin", Some("admin_pw"), "pgbouncer"))
        .await
        .expect("admin");
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("RELOAD with a bad hba line");
    assert!(
        msg(&err).contains(&format!("{}:6:", path(&hba_path))),
        "{}",
        msg(&err)
    );
    psql(&conninfo(port, "app", "app_pw", "app", &tls), "select 1")
        .await
        .expect("old rules stay");
    drop((admin, c2));
    cw.stop().await;

    // auth_type = cert: the certificate's CommonName is the user.
    let top = tls_top(e, "verify-full") + "auth_type = \"cert\"\n";
    let toml = base_toml("session", &top).replace("auth_type = \"scram-sha-256\"\n", "")
        + &db_entry(c, "app", "");
    let cw = start_cw(USERS, &toml).await;
    let out = psql(
        &conninfo(cw.port(), "app", "", "app", &cert(&e.app)),
        "select current_user",
    )
    .await
    .expect("cert auth as app");
    assert_eq!(out.trim(), "app");
    let err = psql(
        &conninfo(cw.port(), "app_plain", "", "app", &cert(&e.app)),
        "select 1",
    )
    .await
    .expect_err("app's certificate as app_plain");
    assert!(err.contains("certificate authentication failed"), "{err}");
    cw.stop().await;
}

/// SCRAM-SHA-256-PLUS towards clients: libpq's channel_binding=require
/// gets it over TLS (bound to the certificate in use, also after a
/// rotation), and refuses to log in without TLS, where it is not offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_to_clients() {
    let (c, e) = env().await;
    let cw = start_cw(
        USERS,
        &(base_toml("transaction", &tls_top(e, "prefer")) + &db_entry(c, "app", "")),
    )
    .await;
    let ca = path(&e.ca);
    let bound = conninfo(
        cw.port(),
        "app",
        "app_pw",
        "app",
        &format!("sslmode=verify-full sslrootcert={ca} channel_binding=require"),
    );
    assert_eq!(
        psql(&bound, "select 'bound'")
            .await
            .expect("channel binding")
            .trim(),
        "bound"
    );
    let err = psql(
        &conninfo(
            cw.port(),
            "app",
            "app_pw",
            "app",
            "sslmode=disable channel_binding=require",
        ),
        "select 1",
    )
    .await
    .expect_err("no channel binding without TLS");
    assert!(err.contains("channel binding"), "{err}");
    // A wrong password still fails over PLUS.
    let bad = bound.replace("password=app_pw", "password=nope");
    let err = psql(&bad, "select 1").await.expect_err("wrong password");
    assert!(err.contains("password authentication failed"), "{err}");
    cw.stop().await;
}
