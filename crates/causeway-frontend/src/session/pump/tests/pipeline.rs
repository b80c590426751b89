//! Extended-protocol pipelines: what is owed, errors held until Sync.

use causeway_config::PoolMode;

use super::*;

fn unit(sql: &str) -> Vec<u8> {
    cat(&[&parse("", sql), &bind(""), &execute(), &sync()])
}

fn unit_reply(status: u8) -> Vec<u8> {
    cat(&[
        &message(b'1', b""),
        &message(b'2', b""),
        &data_row("1"),
        &complete("SELECT 1"),
        &ready(status),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_owes_one_ready_per_sync_and_releases_after_the_last() {
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[&unit("SELECT 1"), &unit("SELECT 2"), &unit("SELECT 3")]);
    r.client_sends(&sent).await;
    assert_eq!(r.server_gets(sent.len()).await, sent);
    assert_eq!(r.flow.owed.len(), 3);
    r.server_sends(&cat(&[&unit_reply(b'I'), &unit_reply(b'I')]))
        .await;
    assert!(r.settle().await.is_none(), "one reply still owed");
    assert_eq!(r.flow.owed.len(), 1);
    assert_eq!(tags(&r.client_got()), "12DCZ12DCZ");
    r.server_sends(&unit_reply(b'I')).await;
    assert!(matches!(r.end().await, End::Release));
    assert_eq!(tags(&r.client_got()), "12DCZ");
}

#[tokio::test(start_paused = true)]
async fn an_error_before_sync_is_held_until_the_client_syncs() {
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[&parse("", "SELECT x"), &bind(""), &execute()]);
    r.client_sends(&sent).await;
    r.server_gets(sent.len()).await;
    r.server_sends(&cat(&[&message(b'1', b""), &error("42703")]))
        .await;
    assert!(r.settle().await.is_none());
    assert_eq!(tags(&r.client_got()), "1", "the error waits for the Sync");
    r.client_sends(&sync()).await;
    r.server_gets_through(b'S').await;
    r.server_sends(&ready(b'I')).await;
    let got = r.client_gets_through(b'Z').await;
    assert_eq!(tags(&got), "EZ");
    assert_eq!(sqlstate(&frames(&got)[0].1), "42703");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn an_error_after_a_flush_goes_out_at_once() {
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[&parse("", "SELECT x"), &flush()]);
    r.client_sends(&sent).await;
    r.server_gets(sent.len()).await;
    r.server_sends(&error("42703")).await;
    assert_eq!(tags(&r.client_gets_through(b'E').await), "E");
}

#[tokio::test(start_paused = true)]
async fn an_error_of_a_simple_query_goes_out_at_once() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("SELECT x")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&error("42703")).await;
    assert_eq!(tags(&r.client_gets_through(b'E').await), "E");
    assert!(
        r.settle().await.is_none(),
        "its ReadyForQuery is still owed"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_mid_pipeline_is_forwarded_with_the_rest() {
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[&unit("SELECT 1"), &unit("SELECT x"), &unit("SELECT 3")]);
    r.client_sends(&sent).await;
    r.server_gets(sent.len()).await;
    let reply = cat(&[
        &unit_reply(b'I'),
        &message(b'1', b""),
        &error("42703"),
        &ready(b'I'),
        &unit_reply(b'I'),
    ]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn a_replica_unit_forwards_only_its_own_bytes() {
    let mut r = Rig::new(PoolMode::Transaction);
    let first = query("SELECT 1");
    let second = query("SELECT 2");
    r.flow.limit_to_unit(first.len(), false);
    r.client_sends(&cat(&[&first, &second])).await;
    assert_eq!(r.server_gets(first.len()).await, first);
    r.server_sends(&cat(&[&complete("SELECT 0"), &ready(b'I')]))
        .await;
    assert!(matches!(r.end().await, End::Release));
    assert!(r.server_got().is_empty(), "the next unit is routed afresh");
    assert_eq!(&r.client.buf[..], &second[..]);
}
