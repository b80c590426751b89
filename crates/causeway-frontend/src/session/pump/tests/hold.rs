//! The retry hold: a read on a replica that fails before its reply is
//! committed ends the flow for a re-run elsewhere, with nothing of it sent
//! to the client and the unit still at the front of the client buffer.

use causeway_config::PoolMode;

use super::super::RetryCause;
use super::*;

/// A rig whose first unit is the held read `q`, already at the server.
async fn held(q: &[u8]) -> Rig {
    let mut r = Rig::new(PoolMode::Transaction);
    r.flow.limit_to_unit(q.len(), true);
    r.client_sends(q).await;
    assert_eq!(r.server_gets(q.len()).await, q);
    r
}

async fn retried_on(code: &str, fatal_error: bool) -> (End, Rig, Vec<u8>) {
    let q = query("SELECT * FROM t");
    let mut r = held(&q).await;
    let err = if fatal_error {
        fatal(code)
    } else {
        error(code)
    };
    r.server_sends(&cat(&[&row_description(&["x"]), &err]))
        .await;
    if fatal_error {
        r.pg.shutdown().await.unwrap();
    } else {
        r.server_sends(&ready(b'I')).await;
    }
    let end = r.end().await;
    (end, r, q)
}

#[tokio::test(start_paused = true)]
async fn a_replica_shutting_down_before_replying_means_a_retry() {
    let (end, mut r, q) = retried_on("57P01", true).await;
    assert!(matches!(
        end,
        End::Retry {
            cause: RetryCause::Failure,
            reusable: false
        }
    ));
    assert!(r.client_got().is_empty(), "nothing reached the client");
    assert_eq!(&r.client.buf[..], &q[..], "the unit waits for its re-run");
}

#[tokio::test(start_paused = true)]
async fn a_recovery_conflict_means_a_retry_and_the_server_is_reusable() {
    let (end, mut r, q) = retried_on("40001", false).await;
    assert!(matches!(
        end,
        End::Retry {
            cause: RetryCause::Conflict,
            reusable: true
        }
    ));
    assert!(r.client_got().is_empty());
    assert_eq!(&r.client.buf[..], &q[..]);
}

#[tokio::test(start_paused = true)]
async fn a_read_only_refusal_means_a_retry_on_the_primary() {
    let (end, mut r, q) = retried_on("25006", false).await;
    assert!(matches!(
        end,
        End::Retry {
            cause: RetryCause::ReadOnly,
            reusable: true
        }
    ));
    assert!(r.client_got().is_empty());
    assert_eq!(&r.client.buf[..], &q[..]);
}

#[tokio::test(start_paused = true)]
async fn rows_still_held_are_dropped_for_the_retry() {
    let q = query("SELECT * FROM t");
    let mut r = held(&q).await;
    r.server_sends(&cat(&[
        &row_description(&["x"]),
        &data_row("1"),
        &error("40001"),
        &ready(b'I'),
    ]))
    .await;
    assert!(matches!(r.end().await, End::Retry { .. }));
    assert!(r.client_got().is_empty(), "no row reached the client");
}

#[tokio::test(start_paused = true)]
async fn a_complete_reply_is_committed_and_forwarded() {
    let q = query("SELECT * FROM t");
    let mut r = held(&q).await;
    let reply = cat(&[
        &row_description(&["x"]),
        &data_row("1"),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
    assert!(r.client.buf.is_empty(), "the kept request is dropped");
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_is_committed_and_forwarded() {
    let q = query("SELECT * FROM nope");
    let mut r = held(&q).await;
    let reply = cat(&[&error("42P01"), &ready(b'I')]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn after_rows_were_forwarded_an_error_is_not_retried() {
    let q = query("SELECT * FROM big");
    let mut r = held(&q).await;
    // Past the hold limit the reply is committed: rows flow to the client.
    let rows: Vec<u8> = (0..100).flat_map(|_| data_row(&"r".repeat(1000))).collect();
    let sent = cat(&[&row_description(&["x"]), &rows]);
    assert_eq!(r.server_streams(&sent).await, sent);
    let tail = cat(&[&error("40001"), &ready(b'I')]);
    r.server_sends(&tail).await;
    assert_eq!(r.client_gets(tail.len()).await, tail, "the client hears it");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn a_held_read_whose_server_vanishes_is_retried() {
    let q = query("SELECT * FROM t");
    let mut r = held(&q).await;
    r.pg.shutdown().await.unwrap();
    assert!(matches!(
        r.end().await,
        End::Retry {
            cause: RetryCause::Failure,
            reusable: false
        }
    ));
    assert_eq!(&r.client.buf[..], &q[..]);
}
