//! Causeway's log: with `log_format = "json"` every line is a JSON object;
//! and no password, md5 hash or SCRAM secret reaches stdout/stderr at
//! `log_level = "debug"` for any password method, right or wrong password.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// Starts Causeway, runs `work`, stops it with SIGTERM and returns its whole
/// stdout+stderr once it has exited (0).
async fn log_of(mut cw: Cw) -> String {
    cw.signal(libc::SIGTERM).unwrap();
    let st = tokio::task::block_in_place(|| cw.wait_exit(STEP))
        .unwrap_or_else(|e| panic!("{e}\n{}", cw.log_contents()));
    assert!(st.success(), "exit {st}\n{}", cw.log_contents());
    let log = cw.log_contents();
    cw.stop().await;
    log
}

/// Log lines saying a client session closed (`log_disconnections`).
fn closed_lines(cw: &Cw) -> usize {
    cw.log_contents()
        .lines()
        .filter(|l| l.contains("client closed"))
        .count()
}

/// `message` of a JSON log line (tracing-subscriber's layout).
fn message(v: &serde_json::Value) -> &str {
    v.pointer("/fields/message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
}

/// A run that logs as much as it can: logins right and wrong, an unknown
/// database, queries, the console's commands, an invalid and a valid
/// SIGHUP, SIGUSR1/SIGUSR2, periodic stats, disconnections and shutdown.
/// Every line of the log must parse as a JSON object with a timestamp, a
/// level and a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_only_json_lines() {
    let c = cluster().await;
    let cw = start_cw(
        &[("app", "app_pw"), ("admin", "admin_pw")],
        &(base_toml(
            "transaction",
            "log_format = \"json\"\nlog_level = \"debug\"\nstats_period = 1\n\
             admin_users = [\"admin\"]\ndefault_pool_size = 2\n",
        ) + &db_entry(c, "app", "")),
    )
    .await;
    let app = cw.app().await;
    for i in 0..5 {
        simple_one(&app, &format!("SELECT {i}")).await.unwrap();
    }
    let other = cw.app().await;
    cw.connect("app", Some("wrong_pw"), "app")
        .await
        .expect_err("wrong password accepted");
    cw.connect("app", Some("app_pw"), "no_such_db")
        .await
        .expect_err("unknown database accepted");
    let adm = cw
        .connect("admin", Some("admin_pw"), "pgbouncer")
        .await
        .unwrap();
    for sql in [
        "SHOW POOLS",
        "SHOW CLIENTS",
        "SET default_pool_size = 3",
        "RELOAD",
        "PAUSE app",
        "RESUME app",
    ] {
        adm.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    adm.simple_query("NOT A COMMAND").await.unwrap_err();
    // A refused reload (error line), then a good one.
    let original = std::fs::read_to_string(cw.config_path()).unwrap();
    cw.rewrite_config(&format!("{original}\n[[[ not toml\n"))
        .unwrap();
    cw.signal(libc::SIGHUP).unwrap();
    tokio::task::block_in_place(|| cw.wait_for_log("reload refused", STEP)).unwrap();
    cw.rewrite_config(&original).unwrap();
    cw.signal(libc::SIGHUP).unwrap();
    tokio::task::block_in_place(|| cw.wait_for_log("configuration reloaded (SIGHUP)", STEP))
        .unwrap();
    cw.signal(libc::SIGUSR1).unwrap();
    tokio::task::block_in_place(|| cw.wait_for_log("all databases paused", STEP)).unwrap();
    cw.signal(libc::SIGUSR2).unwrap();
    tokio::task::block_in_place(|| cw.wait_for_log("all databases resumed", STEP)).unwrap();
    // At least one periodic stats line (stats_period = 1).
    tokio::task::block_in_place(|| cw.wait_for_log("\"stats\"", Duration::from_secs(10))).unwrap();
    simple_one(&app, "SELECT 'after'").await.unwrap();
    let closed_before = closed_lines(&cw);
    drop((app, other, adm));
    let cwr = &cw;
    eventually(
        STEP,
        "both app clients' \"client closed\" logged",
        || async move { closed_lines(cwr) >= closed_before + 2 },
    )
    .await;
    let log = log_of(cw).await;

    let mut messages = Vec::new();
    let mut levels = std::collections::BTreeSet::new();
    for (i, line) in log.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line:?}", i + 1));
        assert!(v.is_object(), "line {} is not an object: {line}", i + 1);
        for key in ["timestamp", "level", "target"] {
            assert!(
                v.get(key).and_then(|x| x.as_str()).is_some(),
                "line {} has no {key}: {line}",
                i + 1
            );
        }
        levels.insert(v["level"].as_str().unwrap_or("").to_string());
        messages.push(message(&v).to_string());
    }
    eprintln!(
        "{} JSON lines, levels {levels:?}, {} distinct messages",
        messages.len(),
        messages
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    // The run did log what it was meant to (the check above is not vacuous).
    for want in [
        "listening",
        "login",
        "client authentication failed",
        "unknown database",
        "client closed",
        "configuration reloaded (admin console)",
        "configuration reloaded (SIGHUP)",
        "pausing all databases (SIGUSR1)",
        "all databases resumed (SIGUSR2)",
        "stats",
        "shut down",
    ] {
        assert!(
            messages.iter().any(|m| m == want),
            "no {want:?} line in the JSON log:\n{log}"
        );
    }
    assert!(
        messages.iter().any(|m| m.starts_with("reload refused")),
        "no refused-reload line:\n{log}"
    );
    assert!(
        levels.contains("DEBUG"),
        "log_level = debug logged no DEBUG line"
    );
    assert!(levels.contains("ERROR") || levels.contains("WARN"));
    // The stats line carries its numbers as fields.
    let stats = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| message(v) == "stats")
        .unwrap();
    assert_eq!(
        stats.pointer("/fields/database").and_then(|d| d.as_str()),
        Some("app")
    );
    assert!(stats.pointer("/fields/xacts_per_s").is_some(), "{stats}");
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

/// Every form in which a secret of `pw` could leak: the password, its
/// PgBouncer/PostgreSQL md5 hash, and for a SCRAM verifier of the same
/// password the verifier, its keys and the keys a SCRAM client derives
/// (SaltedPassword, ClientKey), in base64, hex and as a Rust byte slice.
fn secret_forms(user: &str, pw: &str, scram_verifier: Option<&str>) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let md5 = md5_hex(&format!("{pw}{user}"));
    let mut out = vec![pw.to_string(), format!("md5{md5}"), md5];
    if let Some(v) = scram_verifier {
        // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
        let (_, rest) = v.split_once('$').unwrap();
        let (iter_salt, keys) = rest.split_once('$').unwrap();
        let (iters, salt) = iter_salt.split_once(':').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let salt = b64.decode(salt).unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(pw.as_bytes(), &salt, iters.parse().unwrap(), &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let server_key = hmac(&salted, b"Server Key");
        let stored_key = sha2::Sha256::digest(&client_key).to_vec();
        // The verifier really is this password's.
        assert_eq!(
            b64.encode(&stored_key),
            stored,
            "verifier of another password"
        );
        assert_eq!(b64.encode(&server_key), server);
        out.push(v.to_string());
        for key in [&salted[..], &client_key, &server_key, &stored_key] {
            out.push(b64.encode(key));
            out.push(hex(key));
            out.push(format!("{key:?}"));
        }
    }
    out
}

/// One Causeway per password method (scram with a plaintext or a
/// verifier-only auth_file, md5 with a plaintext or hashed auth_file,
/// plain), human and JSON logs, log_level = debug, log_connections and
/// log_disconnections on. Each logs in right and wrong, runs queries (so
/// Causeway also logs in to the server, with SCRAM, md5 and cleartext
/// there), reloads, and is stopped; then no form of any password appears
/// anywhere in its stdout/stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_secret_in_any_log_line() {
    let c = cluster().await;
    let app_verifier =
        psql_primary("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").await;
    let md5_hash =
        psql_primary("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_md5'").await;
    assert!(app_verifier.starts_with("SCRAM-SHA-256$"), "{app_verifier}");
    assert_eq!(md5_hash, format!("md5{}", md5_hex("md5_pwapp_md5")));
    let wrong = [
        "Wr0ng_scram_pw",
        "Wr0ng_md5_pw",
        "Wr0ng_plain_pw",
        "Wr0ng_admin_pw",
    ];

    let mut forbidden: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, forms: Vec<String>| {
        for f in forms {
            forbidden.push((what.to_string(), f));
        }
    };
    add(
        "app's password",
        secret_forms("app", "app_pw", Some(&app_verifier)),
    );
    add(
        "app_md5's password",
        secret_forms("app_md5", "md5_pw", None),
    );
    add(
        "app_plain's password",
        secret_forms("app_plain", "plain_pw", None),
    );
    add("admin's password", secret_forms("admin", "admin_pw", None));
    for w in wrong {
        for u in ["app", "app_md5", "app_plain", "admin"] {
            add("a wrong password", secret_forms(u, w, None));
        }
    }
    forbidden.retain(|(_, f)| !f.is_empty());

    let logging = "log_level = \"debug\"\nlog_connections = true\nlog_disconnections = true\n\
                   log_pooler_errors = true\nadmin_users = [\"admin\"]\n";
    struct Run {
        name: &'static str,
        toml: String,
        users: Vec<(&'static str, String)>,
        /// (user, right password, wrong password)
        logins: Vec<(&'static str, &'static str, &'static str)>,
    }
    let runs = [
        Run {
            name: "scram, plaintext auth_file, human log",
            toml: format!(
                "auth_type = \"scram-sha-256\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\n{logging}{}",
                db_entry(c, "app", "")
            ),
            users: vec![("app", "app_pw".into()), ("admin", "admin_pw".into())],
            logins: vec![("app", "app_pw", wrong[0])],
        },
        Run {
            name: "scram, verifier-only auth_file, JSON log",
            toml: format!(
                "auth_type = \"scram-sha-256\"\nauth_file = \"{{userlist}}\"\npool_mode = \"session\"\nlog_format = \"json\"\n{logging}{}",
                db_entry(c, "app", "")
            ),
            users: vec![("app", app_verifier.clone()), ("admin", "admin_pw".into())],
            logins: vec![("app", "app_pw", wrong[0])],
        },
        Run {
            name: "md5, plaintext auth_file, human log",
            toml: format!(
                "auth_type = \"md5\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\n{logging}{}",
                db_entry(c, "app", "")
            ),
            users: vec![("app_md5", "md5_pw".into()), ("admin", "admin_pw".into())],
            logins: vec![("app_md5", "md5_pw", wrong[1])],
        },
        Run {
            name: "md5, md5-hash auth_file, JSON log",
            toml: format!(
                "auth_type = \"md5\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\nlog_format = \"json\"\n{logging}{}",
                db_entry(c, "app", "")
            ),
            users: vec![("app_md5", md5_hash.clone()), ("admin", "admin_pw".into())],
            logins: vec![("app_md5", "md5_pw", wrong[1])],
        },
        Run {
            name: "plain, plaintext auth_file, human log",
            toml: format!(
                "auth_type = \"plain\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\n{logging}{}",
                db_entry(c, "app", "")
            ),
            users: vec![
                ("app_plain", "plain_pw".into()),
                ("app", "app_pw".into()),
                ("admin", "admin_pw".into()),
            ],
            logins: vec![("app_plain", "plain_pw", wrong[2]), ("app", "app_pw", wrong[0])],
        },
    ];
    for run in runs {
        let users: Vec<(&str, &str)> = run.users.iter().map(|(u, p)| (*u, p.as_str())).collect();
        // Verifier-only: Causeway needs the password for the server login.
        let toml = if run.name.contains("verifier") {
            run.toml.replace(
                "dbname = \"app\"\n",
                "dbname = \"app\"\npassword = \"app_pw\"\n",
            )
        } else {
            run.toml.clone()
        };
        let cw = start_cw(&users, &toml).await;
        for (user, pw, bad) in &run.logins {
            let cl = cw
                .connect(user, Some(pw), "app")
                .await
                .unwrap_or_else(|e| panic!("{}: {user} login: {e}", run.name));
            for i in 0..3 {
                simple_one(&cl, &format!("SELECT {i}")).await.unwrap();
            }
            let e = cw
                .connect(user, Some(bad), "app")
                .await
                .expect_err("wrong password accepted");
            assert_eq!(code(&e).as_deref(), Some("28P01"), "{}: {e}", run.name);
            drop(cl);
        }
        let adm = cw
            .connect("admin", Some("admin_pw"), "pgbouncer")
            .await
            .unwrap_or_else(|e| panic!("{}: admin login: {e}", run.name));
        adm.simple_query("SHOW CONFIG").await.unwrap();
        adm.simple_query("RELOAD").await.unwrap();
        drop(adm);
        cw.connect("admin", Some(wrong[3]), "pgbouncer")
            .await
            .expect_err("wrong admin password accepted");
        cw.connect("nobody", Some(wrong[0]), "app")
            .await
            .expect_err("unknown user accepted");
        cw.signal(libc::SIGHUP).unwrap();
        tokio::task::block_in_place(|| cw.wait_for_log("configuration reloaded (SIGHUP)", STEP))
            .unwrap();
        let (cwr, n) = (&cw, run.logins.len());
        eventually(
            STEP,
            "every login's \"client closed\" logged",
            || async move { closed_lines(cwr) >= n },
        )
        .await;
        let log = log_of(cw).await;

        // Not vacuous: debug is on and logins, failures, disconnects logged.
        for want in [
            "DEBUG",
            "login",
            "client authentication failed",
            "client closed",
        ] {
            assert!(
                log.contains(want),
                "{}: no {want:?} in the log:\n{log}",
                run.name
            );
        }
        let mut leaks = Vec::new();
        for (what, form) in &forbidden {
            if let Some(at) = log.find(form.as_str()) {
                let line = log[..at].lines().count() + usize::from(log[..at].ends_with('\n'));
                leaks.push(format!("{what} as {form:?} on line {line}"));
            }
        }
        assert!(
            leaks.is_empty(),
            "{}: secrets in the log:\n{}\n--- log ---\n{log}",
            run.name,
            leaks.join("\n")
        );
        eprintln!(
            "{}: {} log lines, {} secret forms checked, none found",
            run.name,
            log.lines().count(),
            forbidden.len()
        );
    }
}

/// A fatal error after start-up (the metrics port is taken) is a JSON line
/// too, and the process exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_fatal_error_is_a_json_line() {
    let c = cluster().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "metrics_addr = \"127.0.0.1:{port}\"\nlog_format = \"json\"\nauth_type = \"trust\"\n{}",
        db_entry(c, "app", "")
    );
    let path = dir.path().to_path_buf();
    let status = tokio::task::spawn_blocking(move || {
        let b = causeway_integration::CausewayBuilder::in_dir(&path).unwrap();
        match b.start(&toml) {
            // Listening already: it exits as soon as the metrics bind fails.
            Ok(mut p) => Some(p.wait_exit(STEP).expect("causeway did not exit")),
            Err(_) => None,
        }
    })
    .await
    .unwrap();
    if let Some(st) = status {
        assert!(!st.success(), "exit {st}");
    }
    let log = std::fs::read_to_string(dir.path().join("causeway.log")).unwrap();
    let mut fatal = false;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n--- log ---\n{log}"));
        fatal |= v["level"] == "ERROR" && message(&v).contains("cannot listen for metrics");
    }
    assert!(fatal, "no JSON error line for the taken port:\n{log}");
    drop(taken);
}
