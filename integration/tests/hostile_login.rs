//! Hostile and unlucky logins: bare sockets that never log in, a full
//! max_client_conn, refusals a libpq client can read, empty passwords,
//! trust for unknown users, what a client can learn before it
//! authenticates, unknown message types after login, and SHOW POOLS'
//! client counts. One shared cluster; each case its own Causeway.

mod common;

use std::collections::HashMap;

use causeway_integration::frames::{message, query, startup};
use causeway_integration::http_get;
use causeway_integration::raw::{field, Raw, V3_0};
use causeway_integration::wait::eventually;
use common::*;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_USERS: &[(&str, &str)] = &[
    ("app", "app_pw"),
    ("app_md5", "md5_pw"),
    ("app_plain", "plain_pw"),
    ("admin", "admin_pw"),
];

/// A TCP connection to Causeway from source address `src` (127.0.0.x).
async fn connect_from(src: &str, port: u16) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    within(STEP, "connect", sock.connect(([127, 0, 0, 1], port).into()))
        .await
        .unwrap()
}

/// Reads one message; None on EOF (or nothing within STEP).
async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    match tokio::time::timeout(STEP, s.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        _ => return None,
    }
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let mut body = vec![0u8; (len as usize).saturating_sub(4)];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// A password message ('p') with `body`.
fn password_msg(body: &[u8]) -> Vec<u8> {
    message(b'p', body)
}

/// What a client sees while it tries to log in as `user` to `db` with a
/// wrong password: each authentication request (with what it tells:
/// mechanisms, iteration count), then the final error's SQLSTATE. Random
/// parts (salts, nonces) are left out; everything else must not depend
/// on whether the user or database exists.
async fn auth_trace(port: u16, user: &str, db: &str) -> Vec<String> {
    let mut s = connect_from("127.0.0.1", port).await;
    s.write_all(&startup(V3_0, &[("user", user), ("database", db)]))
        .await
        .unwrap();
    let mut trace = Vec::new();
    loop {
        let Some((tag, body)) = read_msg(&mut s).await else {
            trace.push("EOF".to_string());
            return trace;
        };
        match tag {
            b'R' => {
                let code = i32::from_be_bytes(body[..4].try_into().unwrap());
                let rest = &body[4..];
                match code {
                    3 => {
                        trace.push("R3 cleartext".into());
                        s.write_all(&password_msg(b"wrong\0")).await.unwrap();
                    }
                    5 => {
                        trace.push("R5 md5".into());
                        let mut b = b"md5".to_vec();
                        b.extend_from_slice(&[b'0'; 32]);
                        b.push(0);
                        s.write_all(&password_msg(&b)).await.unwrap();
                    }
                    10 => {
                        trace.push(format!("R10 sasl {}", text(rest)));
                        let first = b"n,,n=,r=hostilehostilehostile";
                        let mut b = b"SCRAM-SHA-256\0".to_vec();
                        b.extend_from_slice(&(first.len() as i32).to_be_bytes());
                        b.extend_from_slice(first);
                        s.write_all(&password_msg(&b)).await.unwrap();
                    }
                    11 => {
                        let server_first = text(rest);
                        let attr = |k: &str| {
                            server_first
                                .split(',')
                                .find_map(|a| a.strip_prefix(k))
                                .unwrap_or("")
                                .to_string()
                        };
                        trace.push(format!("R11 sasl-continue i={}", attr("i=")));
                        // A proof of zeros: never right.
                        let fin = format!(
                            "c=biws,r={},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                            attr("r=")
                        );
                        s.write_all(&password_msg(fin.as_bytes())).await.unwrap();
                    }
                    other => trace.push(format!("R{other}")),
                }
            }
            b'E' => {
                trace.push(format!("E {}", field(&body, b'C')));
                return trace;
            }
            b'Z' => {
                trace.push("Z".into());
                return trace;
            }
            other => trace.push(format!("{}", other as char)),
        }
    }
}

/// True once the peer has closed `s` (after whatever it sent).
fn closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// SHOW ... on the admin console as rows of column -> value.
async fn show(admin: &tokio_postgres::Client, what: &str) -> Vec<HashMap<String, String>> {
    admin
        .simple_query(&format!("SHOW {what}"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("").to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// psql with sslmode=prefer as app; its stderr.
async fn psql_prefer_stderr(port: u16) -> String {
    let mut cmd = libpq_cmd("psql");
    cmd.env("PGPASSWORD", "app_pw").args([
        "-X",
        "-w",
        "-At",
        "-c",
        "SELECT 1",
        "-d",
        &format!("host=127.0.0.1 port={port} user=app dbname=app sslmode=prefer"),
    ]);
    let out = run_cmd(cmd, STEP).await;
    assert!(!out.status.success(), "psql logged in: {out:?}");
    text(&out.stderr)
}

/// Defect 2: bare sockets from one address take login slots, not
/// max_client_conn places: clients from elsewhere still log in, the admin
/// console answers at max_client_conn, and one more client gets 53300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_sockets_do_not_lock_out_clients_or_admin() {
    let c = cluster().await;
    let cw = start_cw(
        ADMIN_USERS,
        &(base_toml(
            "transaction",
            "max_client_conn = 3\nclient_login_slots = 8\nclient_login_slots_per_addr = 4\n\
             admin_users = [\"admin\"]",
        ) + &db_entry(c, "app", "")),
    )
    .await;
    // 4 take the address's login slots, 8 are being refused, 8 are
    // closed at once (past the refusal bound).
    let mut bare = Vec::new();
    for _ in 0..20 {
        bare.push(connect_from("127.0.0.2", cw.port()).await);
    }
    eventually(STEP, "connections past the bounds closed", || {
        let n = bare.iter().filter(|s| closed(s)).count();
        async move { n >= 8 }
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(cw.app().await);
    }
    let admin = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap_or_else(|e| panic!("admin console at max_client_conn: {e}"));
    let pools = show(&admin, "POOLS").await;
    assert!(
        pools.iter().any(|r| r["database"] == "app"),
        "SHOW POOLS: {pools:?}"
    );
    let err = cw
        .connect("app", Some("app_pw"), "app")
        .await
        .expect_err("a 4th client admitted with max_client_conn = 3");
    assert_eq!(code(&err).as_deref(), Some("53300"), "{err}");
    for cl in &clients {
        assert_eq!(simple_one(cl, "SELECT 1").await.unwrap(), "1");
    }
    drop(bare);
    drop(clients);
    cw.stop().await;
}

/// Defect 3: a refusal (max_client_conn, login slots) comes after the
/// SSLRequest is answered, so psql (sslmode=prefer) prints the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_after_the_ssl_answer() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml(
            "transaction",
            "max_client_conn = 1\nclient_login_slots = 4\nclient_login_slots_per_addr = 2",
        ) + &db_entry(c, "app", "")),
    )
    .await;
    let held = cw.app().await;
    let err = psql_prefer_stderr(cw.port()).await;
    assert!(
        err.contains("no more connections allowed (max_client_conn)"),
        "{err}"
    );
    assert!(!err.contains("SSL exchange"), "{err}");
    drop(held);
    // Two bare sockets hold this address's login slots.
    let _bare = [
        connect_from("127.0.0.1", cw.port()).await,
        connect_from("127.0.0.1", cw.port()).await,
    ];
    let port = cw.port();
    eventually(
        STEP,
        "psql refused for want of a login slot",
        || async move {
            let err = psql_prefer_stderr(port).await;
            assert!(!err.contains("SSL exchange"), "{err}");
            err.contains("too many logins in progress (client_login_slots_per_addr)")
        },
    )
    .await;
    cw.stop().await;
}

/// Defect 4: an empty password is never accepted (cleartext, md5, SCRAM),
/// even when the auth_file holds `"empty" ""`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_passwords_are_refused() {
    let c = cluster().await;
    for auth in ["plain", "md5", "scram-sha-256"] {
        // The server login uses the database's own credentials, so only
        // Causeway's check stands between the client and a session.
        let cw = start_cw(
            &[("empty", ""), ("app", "app_pw")],
            &(format!(
                "pool_mode = \"transaction\"\nauth_type = \"{auth}\"\nauth_file = \"{{userlist}}\"\n"
            ) + &db_entry(c, "app", "user = \"app\"\npassword = \"app_pw\"")),
        )
        .await;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(cw.port())
            .user("empty")
            .password("")
            .dbname("app");
        let r = within(STEP, "connect", cfg.connect(tokio_postgres::NoTls)).await;
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{auth}: empty password accepted"));
        assert_eq!(code(&err).as_deref(), Some("28P01"), "{auth}: {err}");
        // The user with a password logs in.
        let ok = cw.app().await;
        assert_eq!(simple_one(&ok, "SELECT current_user").await.unwrap(), "app");
        drop(ok);
        cw.stop().await;
    }
}

/// Defect 5: auth_type = trust still needs the user in the auth_file (or
/// auth_query), as PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_needs_a_known_user() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &("pool_mode = \"transaction\"\nauth_type = \"trust\"\nauth_file = \"{userlist}\"\n"
            .to_string()
            + &db_entry(c, "app", "user = \"app\"\npassword = \"app_pw\"")),
    )
    .await;
    let err = cw
        .connect("ghost", None, "app")
        .await
        .expect_err("trust let in a user absent from the auth_file");
    assert_eq!(code(&err).as_deref(), Some("28000"), "{err}");
    assert_eq!(msg(&err), "\"trust\" authentication failed");
    let ok = cw.connect("app", None, "app").await.unwrap();
    assert_eq!(simple_one(&ok, "SELECT 1").await.unwrap(), "1");
    drop(ok);
    cw.stop().await;
}

/// Defect 6: before authentication nothing tells which databases, users
/// or admin users exist: each pair gets the same exchange and the same
/// error; the real reason comes only after a right password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_disclosed_before_authentication() {
    let c = cluster().await;
    let md5_secret = format!(
        "md5{:x}",
        Md5::new_with_prefix(b"md5_pwapp_md5h").finalize()
    );
    let users = [
        ("app", "app_pw"),
        ("admin", "admin_pw"),
        ("app_md5h", md5_secret.as_str()),
    ];
    let cw = start_cw(
        &users,
        &(base_toml("transaction", "admin_users = [\"admin\"]") + &db_entry(c, "app", "")),
    )
    .await;
    let p = cw.port();
    let known = auth_trace(p, "app", "app").await;
    assert_eq!(
        known.last().map(String::as_str),
        Some("E 28P01"),
        "{known:?}"
    );
    assert!(known.len() > 1, "no exchange before the error: {known:?}");
    for (what, other) in [
        ("unknown database", auth_trace(p, "app", "nosuch").await),
        ("unknown user", auth_trace(p, "nobody", "app").await),
        (
            "md5 secret under scram",
            auth_trace(p, "app_md5h", "app").await,
        ),
    ] {
        assert_eq!(other, known, "{what}");
    }
    let admin = auth_trace(p, "admin", "pgbouncer").await;
    assert_eq!(
        auth_trace(p, "app", "pgbouncer").await,
        admin,
        "non-admin user"
    );
    assert_eq!(admin, known, "admin console");
    // With the right password the real reason is told.
    let err = cw
        .connect("app", Some("app_pw"), "nosuch")
        .await
        .expect_err("unknown database accepted");
    assert_eq!(code(&err).as_deref(), Some("3D000"), "{err}");
    let err = cw
        .connect("app", Some("app_pw"), "pgbouncer")
        .await
        .expect_err("non-admin user on the admin console");
    assert_eq!(code(&err).as_deref(), Some("28000"), "{err}");
    cw.stop().await;
}

/// Defect 7: an unknown message type after login gets 08P01 from
/// Causeway, is never forwarded, and the server connection stays in the
/// pool for the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type_is_refused_and_server_kept() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &("pool_mode = \"transaction\"\nauth_type = \"trust\"\nauth_file = \"{userlist}\"\n\
           default_pool_size = 1\n"
            .to_string()
            + &db_entry(c, "app", "")),
    )
    .await;
    let mut first = Raw::login(&cw).await;
    let (pid, _) = first.simple("SELECT pg_backend_pid()").await;
    first.send(&message(b'Y', b"hostile")).await;
    let (tag, body) = first.recv().await.expect("no answer to an unknown message");
    assert_eq!(tag, b'E', "{}", text(&body));
    assert_eq!(field(&body, b'C'), "08P01", "{}", text(&body));
    assert!(first.recv().await.is_none(), "client not closed");
    // The same backend serves the next client.
    let mut next = Raw::login(&cw).await;
    assert_eq!(next.simple("SELECT pg_backend_pid()").await.0, pid);
    next.send(&query("SELECT 1")).await;
    let msgs = next.until_ready().await;
    assert!(msgs.iter().all(|(t, _)| *t != b'E'));
    let log = c.primary().log_contents();
    assert!(
        !log.contains("invalid frontend message type"),
        "the message reached PostgreSQL"
    );
    cw.stop().await;
}

/// Defect 8: SHOW POOLS counts logged-in idle clients in transaction mode
/// as cl_active (as PgBouncer); the metric's active + idle agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_counts_idle_clients_as_active() {
    let c = cluster().await;
    let cw = start_cw(
        ADMIN_USERS,
        &(base_toml("transaction", "admin_users = [\"admin\"]") + &db_entry(c, "app", "")),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let cl = cw.app().await;
        simple_one(&cl, "SELECT 1").await.unwrap();
        clients.push(cl);
    }
    let admin = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    let pools = show(&admin, "POOLS").await;
    let row = pools
        .iter()
        .find(|r| r["database"] == "app" && r["user"] == "app")
        .unwrap_or_else(|| panic!("no app/app row: {pools:?}"));
    assert_eq!(row["cl_active"], "3", "{row:?}");
    assert_eq!(row["cl_waiting"], "0", "{row:?}");
    let port = cw.metrics_port().expect("metrics port");
    let (_, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    let sum: u64 = body
        .lines()
        .filter(|l| {
            l.starts_with("causeway_client_connections{database=\"app\",user=\"app\"")
                && !l.contains("state=\"waiting\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(sum, 3, "{body}");
    drop(clients);
    cw.stop().await;
}
