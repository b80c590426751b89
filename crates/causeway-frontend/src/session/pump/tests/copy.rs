//! COPY in both directions, including a client that ends COPY FROM STDIN
//! before the server said it started (asyncpg).

use causeway_config::PoolMode;

use super::*;

#[tokio::test(start_paused = true)]
async fn copy_from_stdin() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("COPY t FROM STDIN")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&copy_response(b'G')).await;
    r.client_gets_through(b'G').await;
    assert!(r.flow.copy.active());
    let data = cat(&[&copy_data("1\n"), &copy_data("2\n"), &copy_done()]);
    r.client_sends(&data).await;
    assert_eq!(r.server_gets(data.len()).await, data);
    r.server_sends(&cat(&[&complete("COPY 2"), &ready(b'I')]))
        .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "CZ");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn copy_done_sent_before_copy_in_response() {
    // asyncpg: COPY, its data and CopyDone in one go.
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[&query("COPY t FROM STDIN"), &copy_data("1\n"), &copy_done()]);
    r.client_sends(&sent).await;
    assert_eq!(r.server_gets(sent.len()).await, sent);
    r.server_sends(&cat(&[
        &copy_response(b'G'),
        &complete("COPY 1"),
        &ready(b'I'),
    ]))
    .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "GCZ");
    assert!(matches!(r.end().await, End::Release), "not stuck in COPY");
    assert!(r.flow.server_idle());
}

#[tokio::test(start_paused = true)]
async fn extended_copy_done_sent_before_copy_in_response() {
    let mut r = Rig::new(PoolMode::Transaction);
    let sent = cat(&[
        &parse("", "COPY t FROM STDIN"),
        &bind(""),
        &execute(),
        &copy_data("1\n"),
        &copy_done(),
        &sync(),
    ]);
    r.client_sends(&sent).await;
    assert_eq!(r.server_gets(sent.len()).await, sent);
    r.server_sends(&cat(&[
        &message(b'1', b""),
        &message(b'2', b""),
        &copy_response(b'G'),
        &complete("COPY 1"),
        &ready(b'I'),
    ]))
    .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "12GCZ");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn syncs_during_copy_from_stdin_are_owed_nothing() {
    let mut r = Rig::new(PoolMode::Transaction);
    let start = cat(&[
        &parse("", "COPY t FROM STDIN"),
        &bind(""),
        &execute(),
        &sync(),
    ]);
    r.client_sends(&start).await;
    r.server_gets(start.len()).await;
    r.server_sends(&cat(&[
        &message(b'1', b""),
        &message(b'2', b""),
        &copy_response(b'G'),
    ]))
    .await;
    r.client_gets_through(b'G').await;
    assert_eq!(r.flow.owed.len(), 0, "the server ignores that Sync");
    let data = cat(&[&copy_data("1\n"), &copy_done(), &sync()]);
    r.client_sends(&data).await;
    r.server_gets(data.len()).await;
    assert_eq!(r.flow.owed.len(), 1);
    r.server_sends(&cat(&[&complete("COPY 1"), &ready(b'I')]))
        .await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "CZ");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn copy_fail_ends_the_copy_with_the_servers_error() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("COPY t FROM STDIN")).await;
    r.server_gets_through(b'Q').await;
    r.server_sends(&copy_response(b'G')).await;
    r.client_gets_through(b'G').await;
    let fail = cat(&[&copy_data("1\n"), &copy_fail("client gave up")]);
    r.client_sends(&fail).await;
    assert_eq!(r.server_gets(fail.len()).await, fail);
    assert!(!r.flow.copy.active());
    r.server_sends(&cat(&[&error("57014"), &ready(b'I')])).await;
    assert_eq!(tags(&r.client_gets_through(b'Z').await), "EZ");
    assert!(matches!(r.end().await, End::Release));
}

#[tokio::test(start_paused = true)]
async fn an_error_during_copy_from_stdin_reaches_the_client_at_once() {
    let mut r = Setup::new(PoolMode::Transaction).rig();
    let start = cat(&[&parse("", "COPY t FROM STDIN"), &bind(""), &execute()]);
    r.client_sends(&start).await;
    r.server_gets(start.len()).await;
    r.server_sends(&cat(&[
        &message(b'1', b""),
        &message(b'2', b""),
        &copy_response(b'G'),
    ]))
    .await;
    r.client_gets_through(b'G').await;
    r.client_sends(&copy_data("bad row\n")).await;
    r.server_gets_through(b'd').await;
    r.server_sends(&error("22P02")).await;
    assert_eq!(tags(&r.client_gets_through(b'E').await), "E", "not held");
}

#[tokio::test(start_paused = true)]
async fn copy_to_stdout() {
    let mut r = Rig::new(PoolMode::Transaction);
    r.client_sends(&query("COPY t TO STDOUT")).await;
    r.server_gets_through(b'Q').await;
    let reply = cat(&[
        &copy_response(b'H'),
        &copy_data("1\n"),
        &copy_data("2\n"),
        &copy_done(),
        &complete("COPY 2"),
        &ready(b'I'),
    ]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
}
