//! Logging in through Causeway: every auth_type, the auth_file formats a
//! PgBouncer user has (plaintext, md5 hash, SCRAM verifier), the errors a
//! refused client gets, max_client_conn, and psql's sslmode handling.

mod common;

use std::time::Duration;

use common::*;

/// auth_type scram-sha-256 with a plaintext userlist: the client does SCRAM
/// with Causeway, Causeway does SCRAM with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_login_and_wrong_password() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "") + &db_entry(c, "app", "")),
    )
    .await;
    let client = cw.app().await;
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(row.get::<_, String>(1), "app");

    let err = cw
        .connect("app", Some("not_the_password"), "app")
        .await
        .expect_err("wrong password accepted");
    assert_eq!(code(&err).as_deref(), Some("28P01"), "{err}");
    // An unknown user gets the same answer (no user enumeration).
    let err = cw
        .connect("nobody", Some("x"), "app")
        .await
        .expect_err("unknown user accepted");
    assert_eq!(code(&err).as_deref(), Some("28P01"), "{err}");
    // The logged-in client was not disturbed.
    assert_eq!(simple_one(&client, "SELECT 41 + 1").await.unwrap(), "42");
    drop(client);
    cw.stop().await;
}

/// auth_type md5 for a user whose server-side method is md5, with the
/// userlist holding the plaintext password, then the `md5...` hash
/// (as PgBouncer users copy it from pg_authid). Transaction mode, so that
/// this test is about md5 only (session mode has its own tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_login_with_plain_and_hashed_userlist() {
    let c = cluster().await;
    let hash = psql_primary("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_md5'").await;
    assert!(hash.starts_with("md5"), "{hash}");
    for secret in ["md5_pw", hash.as_str()] {
        let cw = start_cw(
            &[("app_md5", secret)],
            &("auth_type = \"md5\"\nauth_file = \"{userlist}\"\npool_mode = \"transaction\"\n"
                .to_string()
                + &db_entry(c, "app", "")),
        )
        .await;
        let client = cw
            .connect("app_md5", Some("md5_pw"), "app")
            .await
            .unwrap_or_else(|e| panic!("md5 login (userlist secret {secret}): {e}"));
        assert_eq!(
            simple_one(&client, "SELECT current_user").await.unwrap(),
            "app_md5"
        );
        let err = cw
            .connect("app_md5", Some("wrong"), "app")
            .await
            .expect_err("wrong md5 password accepted");
        assert_eq!(code(&err).as_deref(), Some("28P01"), "{err}");
        drop(client);
        cw.stop().await;
    }
}

/// The auth_file holds only the server's SCRAM verifier for `app` (no
/// plaintext anywhere), so Causeway can check the client's SCRAM proof but
/// needs the database entry's `password` to log in to the server. Works with
/// auth_type scram-sha-256, and with md5 (which switches to SCRAM for a
/// SCRAM secret, as PgBouncer does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_verifier_only_auth_file() {
    let c = cluster().await;
    let verifier = psql_primary("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").await;
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    for auth_type in ["scram-sha-256", "md5"] {
        let toml = format!(
            "auth_type = \"{auth_type}\"\nauth_file = \"{{userlist}}\"\npool_mode = \"transaction\"\n{}",
            db_entry(c, "app", "password = \"app_pw\"")
        );
        let cw = start_cw(&[("app", &verifier)], &toml).await;
        let client = cw
            .connect("app", Some("app_pw"), "app")
            .await
            .unwrap_or_else(|e| panic!("{auth_type} with SCRAM verifier: {e}"));
        assert_eq!(
            simple_one(&client, "SELECT current_user").await.unwrap(),
            "app"
        );
        let err = cw
            .connect("app", Some("app_pw_wrong"), "app")
            .await
            .expect_err("wrong password accepted against a SCRAM verifier");
        assert_eq!(code(&err).as_deref(), Some("28P01"), "{auth_type}: {err}");
        drop(client);
        cw.stop().await;
    }
}

/// auth_type plain: the client sends its password in clear; it is checked
/// against the userlist and reused for the server login (which is
/// "password" for app_plain and SCRAM for app).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_login() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &("auth_type = \"plain\"\nauth_file = \"{userlist}\"\npool_mode = \"transaction\"\n"
            .to_string()
            + &db_entry(c, "app", "")),
    )
    .await;
    for (user, pw) in [("app_plain", "plain_pw"), ("app", "app_pw")] {
        let client = cw
            .connect(user, Some(pw), "app")
            .await
            .unwrap_or_else(|e| panic!("plain login as {user}: {e}"));
        assert_eq!(
            simple_one(&client, "SELECT current_user").await.unwrap(),
            user
        );
        let err = cw
            .connect(user, Some("wrong"), "app")
            .await
            .expect_err("wrong cleartext password accepted");
        assert_eq!(code(&err).as_deref(), Some("28P01"), "{user}: {err}");
    }
    cw.stop().await;
}

/// auth_type trust: no password asked from the client; the server login
/// uses the userlist's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_login() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &("auth_type = \"trust\"\nauth_file = \"{userlist}\"\npool_mode = \"transaction\"\n"
            .to_string()
            + &db_entry(c, "app", "")),
    )
    .await;
    for user in ["app", "app_md5", "app_plain"] {
        let client = cw
            .connect(user, None, "app")
            .await
            .unwrap_or_else(|e| panic!("trust login as {user}: {e}"));
        assert_eq!(
            simple_one(&client, "SELECT current_user").await.unwrap(),
            user
        );
    }
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_3d000() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "") + &db_entry(c, "app", "")),
    )
    .await;
    let err = cw
        .connect("app", Some("app_pw"), "no_such_db")
        .await
        .expect_err("unknown database accepted");
    assert_eq!(code(&err).as_deref(), Some("3D000"), "{err}");
    assert!(msg(&err).contains("no_such_db"), "{err:?}");
    // The known database still works.
    let client = cw.app().await;
    assert_eq!(simple_one(&client, "SELECT 1").await.unwrap(), "1");
    drop(client);
    cw.stop().await;
}

/// max_client_conn = 3: the 4th client is refused with 53300, the three
/// logged-in clients keep working, and a slot freed is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_with_53300() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "max_client_conn = 3") + &db_entry(c, "app", "")),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(cw.app().await);
    }
    let err = cw
        .connect("app", Some("app_pw"), "app")
        .await
        .expect_err("4th client admitted with max_client_conn = 3");
    assert_eq!(code(&err).as_deref(), Some("53300"), "{err}");
    for (i, cl) in clients.iter().enumerate() {
        assert_eq!(
            simple_one(cl, &format!("SELECT {i}")).await.unwrap(),
            i.to_string(),
            "existing client {i} broken after the refusal"
        );
    }
    // Free one place; the session ends asynchronously, so retry briefly.
    drop(clients.pop());
    let again = eventually(
        Duration::from_secs(5),
        "a place freed after a client left",
        || async {
            let r = cw.connect("app", Some("app_pw"), "app").await;
            if let Err(e) = &r {
                assert_eq!(code(e).as_deref(), Some("53300"), "{e}");
            }
            r
        },
    )
    .await;
    assert_eq!(simple_one(&again, "SELECT 'back'").await.unwrap(), "back");
    drop(again);
    drop(clients);
    cw.stop().await;
}

/// psql logs in with sslmode=prefer (Causeway answers the SSLRequest with
/// 'N' and psql continues in clear); sslmode=require fails cleanly with
/// libpq's "server does not support SSL" and leaves Causeway serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_login_sslmode_prefer_and_require() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &(base_toml("transaction", "") + &db_entry(c, "app", "")),
    )
    .await;
    let psql = |sslmode: &str| {
        let mut cmd = libpq_cmd("psql");
        cmd.env("PGPASSWORD", "app_pw").args([
            "-X",
            "-w",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=app dbname=app sslmode={sslmode}",
                cw.port()
            ),
            "-c",
            "SELECT 'logged in as ' || current_user",
        ]);
        cmd
    };
    let out = run_cmd(psql("prefer"), Duration::from_secs(20)).await;
    assert!(
        out.status.success(),
        "psql sslmode=prefer failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "logged in as app");

    let out = run_cmd(psql("require"), Duration::from_secs(20)).await;
    assert!(
        !out.status.success(),
        "sslmode=require succeeded without TLS"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("server does not support SSL"),
        "unexpected psql error: {err}"
    );
    // Still serving.
    let out = run_cmd(psql("disable"), Duration::from_secs(20)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    cw.stop().await;
}
