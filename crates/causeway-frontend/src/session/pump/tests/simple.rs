//! Simple queries: release by pool mode, transactions, parameters,
//! notices, LISTEN, statement mode, RESET.

use causeway_config::PoolMode;

use super::*;

fn select_reply() -> Vec<u8> {
    cat(&[
        &row_description(&["x"]),
        &data_row("1"),
        &complete("SELECT 1"),
        &ready(b'I'),
    ])
}

#[tokio::test(start_paused = true)]
async fn transaction_mode_releases_the_server_after_an_idle_ready() {
    let mut r = Rig::new(PoolMode::Transaction);
    let q = query("SELECT 1");
    r.client_sends(&q).await;
    assert_eq!(r.server_gets(q.len()).await, q);
    let reply = select_reply();
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply, "forwarded as sent");
    assert!(matches!(r.end().await, End::Release));
    assert!(r.flow.server_idle());
}

#[tokio::test(start_paused = true)]
async fn session_mode_keeps_the_server_after_an_idle_ready() {
    let mut r = Rig::new(PoolMode::Session);
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    let reply = select_reply();
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(r.settle().await.is_none(), "session mode: no release");
    // The next query goes to the same server.
    let q = query("SELECT 2");
    r.client_sends(&q).await;
    assert_eq!(r.server_gets(q.len()).await, q);
}

#[tokio::test(start_paused = true)]
async fn an_open_transaction_keeps_the_server_until_it_ends() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("BEGIN")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("BEGIN"), &ready(b'T')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(r.settle().await.is_none(), "inside a transaction");
    assert!(!r.flow.server_idle());
    r.client_sends(&query("COMMIT")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("COMMIT"), &ready(b'I')]))
        .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "CZ");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn a_failed_transaction_is_not_released() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("BEGIN; SELECT x")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("BEGIN"), &error("42703"), &ready(b'E')]))
        .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "CEZ");
    assert!(r.settle().await.is_none());
    assert!(!r.flow.server_idle());
}

#[tokio::test(start_paused = true)]
async fn statement_mode_refuses_a_transaction_block() {
    let mut r = Rig::new(PoolMode::Statement);
    r.client_sends(&query("BEGIN")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("BEGIN"), &ready(b'T')]))
        .await;
    assert!(matches!(r.end().await, End::StatementModeTxn));
}

#[tokio::test(start_paused = true)]
async fn parameter_status_updates_the_client_view_and_the_server() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.params.set("application_name", "before", true);
    r.client_sends(&query("SET application_name = 'after'"))
        .await;
    r.server_gets_through(b'Q').await;
    let reply = cat(&[
        &parameter_status("application_name", "after"),
        &complete("SET"),
        &ready(b'I'),
    ]);
    r.server_sends(&reply).await;
    assert_eq!(
        r.client_gets(reply.len()).await,
        reply,
        "the client hears it too"
    );
    assert!(matches!(r.end().await, End::Release));
    assert_eq!(r.params.get("application_name"), Some("after"));
    assert_eq!(r.conn.params().get("application_name"), Some("after"));
    assert_eq!(r.conn.synced_fp(), r.params.fingerprint(), "server in step");
}

#[tokio::test(start_paused = true)]
async fn notices_reach_an_idle_session_client_at_once() {
    let mut r = Rig::new(PoolMode::Session);
    let mut notice = BytesMut::new();
    backend::write_notice(&mut notice, "01000", "from the server");
    r.server_sends(&notice).await;
    assert_eq!(r.client_gets(notice.len()).await, notice.to_vec());
}

#[tokio::test(start_paused = true)]
async fn listen_in_transaction_mode_marks_the_server_not_reusable() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("LISTEN chan")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("LISTEN"), &ready(b'I')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(matches!(r.end().await, End::Release));
    assert!(
        r.flow.listened,
        "the session closes it instead of pooling it"
    );
}

#[tokio::test(start_paused = true)]
async fn listen_in_session_mode_keeps_the_server() {
    let mut r = Rig::new(PoolMode::Session);
    r.client_sends(&query("LISTEN chan")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("LISTEN"), &ready(b'I')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(r.settle().await.is_none());
    assert!(!r.flow.listened);
}

#[tokio::test(start_paused = true)]
async fn reset_holds_the_ready_for_the_restore() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.flow.restores = true;
    r.client_sends(&query("RESET ALL")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("RESET"), &ready(b'I')]))
        .await;
    assert!(matches!(r.end().await, End::Restore));
    assert_eq!(tags(&r.client_got()), "C", "the ReadyForQuery waits");
    assert_eq!(tags(r.conn.buf()), "Z");
    // Restored: the ReadyForQuery goes on.
    r.flow.restored();
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "Z");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn draining_says_goodbye_right_behind_the_last_ready() {
    let mut r = Rig::new(PoolMode::Session);
    r.flow.stop_when_idle = true;
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&select_reply()).await;
    assert!(matches!(r.end().await, End::Release));
    assert!(r.flow.goodbye);
    let got = frames(&r.client_got());
    let (tag, body) = got.last().unwrap();
    assert_eq!(*tag, b'E');
    assert_eq!(sqlstate(body), "57P01");
    assert_eq!(got[got.len() - 2].0, b'Z');
}

#[tokio::test(start_paused = true)]
async fn a_function_call_owes_a_ready() {
    let mut r = Rig::new(PoolMode::Transaction);
    let call = message(b'F', &[0, 0, 0, 42, 0, 0, 0, 0, 0, 0]);
    r.client_sends(&call).await;
    assert_eq!(r.server_gets(call.len()).await, call);
    assert_eq!(r.flow.owed.len(), 1);
    r.server_sends(&cat(&[&message(b'V', &[0, 0, 0, 0]), &ready(b'I')]))
        .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "VZ");
    assert!(matches!(r.end().await, End::Release));
}
