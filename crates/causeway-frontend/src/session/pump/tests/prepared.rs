//! Prepared statements tracked across pooled servers: renamed on the
//! server, answered locally when the server already holds them, evicted
//! (with the server's reply hidden) when it holds too many.

use std::sync::Arc;

use causeway_config::PoolMode;

use super::*;
use crate::session::prepared::Registry;

/// The statement name of a Parse or the statement a Bind uses.
fn statement_of(tag: u8, body: &[u8]) -> String {
    let mut parts = body.split(|b| *b == 0);
    if tag == b'B' {
        parts.next(); // the portal
    }
    String::from_utf8(parts.next().unwrap().to_vec()).unwrap()
}

fn first_unit(name: &str, sql: &str) -> Vec<u8> {
    cat(&[&parse(name, sql), &bind(name), &execute(), &sync()])
}

/// Runs the first attachment: `s1` = SELECT 1 gets prepared on the
/// server. Returns the rig and the statement's server name.
async fn prepared_once(cap: usize) -> (Rig, Arc<Registry>, String) {
    let registry = Arc::new(Registry::default());
    let mut r = Setup::tracked(PoolMode::Transaction, cap, &registry).rig();
    r.client_sends(&first_unit("s1", "SELECT 1")).await;
    let got = frames(&r.server_gets_through(b'S').await);
    let tags: String = got.iter().map(|(t, _)| *t as char).collect();
    assert_eq!(tags, "PBES");
    let server_name = statement_of(b'P', &got[0].1);
    assert_ne!(server_name, "s1", "renamed on the server");
    assert!(server_name.starts_with("causeway_"), "{server_name}");
    assert_eq!(
        statement_of(b'B', &got[1].1),
        server_name,
        "the Bind follows"
    );
    let reply = cat(&[
        &message(b'1', b""),
        &message(b'2', b""),
        &data_row("1"),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
    assert_eq!(r.conn.statements().len(), 1);
    (r, registry, server_name)
}

#[tokio::test(start_paused = true)]
async fn a_named_parse_is_renamed_on_the_server() {
    prepared_once(100).await;
}

#[tokio::test(start_paused = true)]
async fn a_statement_the_server_holds_is_answered_locally() {
    let (mut r, registry, _) = prepared_once(100).await;
    // Another client, same text, same server connection (the first client
    // still connected: the statement lives while a client names it).
    let _first = r.reattach(Setup::tracked(PoolMode::Transaction, 100, &registry));
    r.client_sends(&cat(&[&parse("a", "SELECT 1"), &sync()]))
        .await;
    let got = r.server_gets_through(b'S').await;
    assert!(
        !tags(&got).contains('P'),
        "no Parse reaches the server: {}",
        tags(&got)
    );
    r.server_sends(&cat(&[&message(b'3', b""), &ready(b'I')]))
        .await;
    assert_eq!(
        tags(&r.client_gets_through(b'Z').await),
        "1Z",
        "ParseComplete"
    );
    assert!(matches!(r.end().await, End::Release));
    assert_eq!(r.flow.prep.counts.server_parses, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_server_evicts_its_oldest_statement_out_of_sight() {
    let (mut r, registry, old) = prepared_once(1).await;
    let _first = r.reattach(Setup::tracked(PoolMode::Transaction, 1, &registry));
    r.client_sends(&cat(&[&parse("b", "SELECT 2"), &sync()]))
        .await;
    let got = frames(&r.server_gets_through(b'S').await);
    let tags_sent: String = got.iter().map(|(t, _)| *t as char).collect();
    assert_eq!(tags_sent, "CPS", "Close of the old one, then the Parse");
    assert_eq!(&got[0].1[1..got[0].1.len() - 1], old.as_bytes());
    r.server_sends(&cat(&[
        &message(b'3', b""),
        &message(b'1', b""),
        &ready(b'I'),
    ]))
    .await;
    assert_eq!(
        tags(&r.client_gets_through(b'Z').await),
        "1Z",
        "the CloseComplete is hidden"
    );
    assert!(matches!(r.end().await, End::Release));
    assert_eq!(r.conn.statements().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_unnamed_statement_is_passed_through() {
    let registry = Arc::new(Registry::default());
    let mut r = Setup::tracked(PoolMode::Transaction, 100, &registry).rig();
    let sent = first_unit("", "SELECT 1");
    r.client_sends(&sent).await;
    assert_eq!(r.server_gets(sent.len()).await, sent);
    let reply = cat(&[&message(b'1', b""), &message(b'2', b""), &ready(b'I')]);
    r.server_sends(&reply).await;
    assert_eq!(r.client_gets(reply.len()).await, reply);
    assert!(matches!(r.end().await, End::Release));
}
