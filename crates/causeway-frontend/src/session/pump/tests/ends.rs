//! How a flow ends: Terminate, either side closing, bad input, timeouts,
//! large messages.

use causeway_config::PoolMode;
use causeway_protocol::ProtocolError;

use super::*;

#[tokio::test(start_paused = true)]
async fn terminate_is_not_forwarded_and_the_server_stays_usable() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&terminate()).await;
    assert!(matches!(r.end().await, End::ClientGone));
    assert!(r.server_got().is_empty());
    assert!(r.flow.server_idle(), "back to the pool");
}

#[tokio::test(start_paused = true)]
async fn terminate_after_a_query_leaves_the_server_busy() {
    let mut r = Rig::new(PoolMode::Transaction);
    let q = query("SELECT pg_sleep(10)");
    r.client_sends(&cat(&[&q, &terminate()])).await;
    assert!(matches!(r.end().await, End::ClientGone));
    assert_eq!(
        r.server_got(),
        q,
        "the query went out, the Terminate did not"
    );
    assert!(!r.flow.server_idle(), "owes a reply: not pooled");
}

#[tokio::test(start_paused = true)]
async fn the_client_closing_mid_query_ends_the_flow() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    r.app.shutdown().await.unwrap();
    assert!(matches!(r.end().await, End::ClientGone));
    assert!(!r.flow.server_idle());
}

#[tokio::test(start_paused = true)]
async fn the_server_closing_inside_a_message_is_not_clean() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    let row = data_row("a long value");
    r.server_sends(&row[..8]).await;
    r.pg.shutdown().await.unwrap();
    assert!(matches!(r.end().await, End::ServerGone { clean: false }));
}

#[tokio::test(start_paused = true)]
async fn the_server_closing_between_messages_is_clean() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&row_description(&["x"]), &data_row("1")]))
        .await;
    r.pg.shutdown().await.unwrap();
    assert!(matches!(r.end().await, End::ServerGone { clean: true }));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_marks_the_server_broken() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    let f = fatal("57P01");
    r.server_sends(&f).await;
    assert_eq!(r.client_gets(f.len()).await, f, "the client hears why");
    r.pg.shutdown().await.unwrap();
    assert!(matches!(r.end().await, End::ServerGone { clean: true }));
    assert!(r.flow.fatal_seen);
    assert!(r.conn.is_broken());
}

#[tokio::test(start_paused = true)]
async fn an_oversized_message_is_refused_before_any_of_it_goes_out() {
    let mut r = Setup {
        max_packet: 1000,
        ..Setup::new(PoolMode::Transaction)
    }
    .rig();
    r.client_sends(&query(&"x".repeat(5000))).await;
    match r.end().await {
        End::ClientProtocol(ProtocolError::TooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(r.server_got().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unknown_message_type_is_refused_with_the_server_clean() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&message(b'z', b"??")).await;
    match r.end().await {
        End::ClientProtocol(ProtocolError::UnknownMessageType('z')) => {}
        other => panic!("{other:?}"),
    }
    assert!(r.server_got().is_empty());
    assert!(r.flow.server_idle());
}

#[tokio::test(start_paused = true)]
async fn a_large_reply_is_streamed_not_held_whole() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT big")).await;
    r.server_gets_through(b'Q').await;
    let row = data_row(&"v".repeat(4 << 20));
    let first = 100 * 1024;
    r.server_sends(&row[..first]).await;
    // The client has the start of the row while the server still owes
    // the rest of it.
    assert_eq!(r.client_gets(first).await, &row[..first]);
    let rest = cat(&[&row[first..], &complete("SELECT 1"), &ready(b'I')]);
    assert_eq!(r.server_streams(&rest).await, rest);
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn a_large_query_is_streamed_to_the_server() {
    let mut r = Rig::new(PoolMode::Transaction);
    let q = query(&"x".repeat(3 << 20));
    assert_eq!(r.client_streams(&q).await, q);
    assert_eq!(r.flow.owed.len(), 1);
}

fn with_timeouts(mode: PoolMode, timeouts: Timeouts) -> Rig {
    Setup {
        timeouts,
        ..Setup::new(mode)
    }
    .rig()
}

#[tokio::test(start_paused = true)]
async fn query_timeout_fires_while_a_reply_is_owed() {
    let t = Duration::from_secs(30);
    let mut r = with_timeouts(
        PoolMode::Transaction,
        Timeouts {
            query: Some(t),
            ..Timeouts::default()
        },
    );
    r.client_sends(&query("SELECT pg_sleep(3600)")).await;
    r.server_gets_through(b'Q').await;
    let start = Instant::now();
    assert!(matches!(
        r.end().await,
        End::Timeout("57014", "query_timeout")
    ));
    assert_eq!(start.elapsed(), t, "(virtual) time of the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_query_answered_in_time_does_not_time_out() {
    let mut r = with_timeouts(
        PoolMode::Session,
        Timeouts {
            query: Some(Duration::from_secs(30)),
            ..Timeouts::default()
        },
    );
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("SELECT 0"), &ready(b'I')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(
        r.settle().await.is_none(),
        "idle in session mode, no deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_transaction_timeout_fires_inside_an_open_transaction() {
    let mut r = with_timeouts(
        PoolMode::Transaction,
        Timeouts {
            query: Some(Duration::from_secs(5)),
            idle_transaction: Some(Duration::from_secs(60)),
            ..Timeouts::default()
        },
    );
    r.client_sends(&query("BEGIN")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("BEGIN"), &ready(b'T')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(matches!(
        r.end().await,
        End::Timeout("25P03", "idle_transaction_timeout")
    ));
}

#[tokio::test(start_paused = true)]
async fn client_idle_timeout_fires_for_an_idle_session_client() {
    let mut r = with_timeouts(
        PoolMode::Session,
        Timeouts {
            client_idle: Some(Duration::from_secs(60)),
            ..Timeouts::default()
        },
    );
    r.client_sends(&query("SELECT 1")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&cat(&[&complete("SELECT 0"), &ready(b'I')]))
        .await;
    r.client_gets_through(b'Z').await;
    assert!(matches!(
        r.end().await,
        End::Timeout("57P05", "client_idle_timeout")
    ));
    assert!(r.flow.server_idle(), "the server can go back to the pool");
}
