//! Prepared-statement tracking, message by message.

use super::*;

use causeway_protocol::message as frame;
use causeway_protocol::{backend, HEADER_LEN};

fn parse(name: &str, sql: &str) -> Vec<u8> {
    frame(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

fn bind(stmt: &str) -> Vec<u8> {
    frame(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes())
}

/// Runs client messages through `p`, returning what went to the server
/// as (tag, body) pairs.
fn send(p: &mut Prep, cache: &mut StatementCache, msgs: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
    let mut wire = Vec::new();
    for m in msgs {
        let tag = m[0];
        let action = match tag {
            b'S' => {
                p.marker(tag);
                ClientAction::Pass
            }
            _ => p.client(tag, m, m.len(), cache),
        };
        match action {
            ClientAction::Pass => wire.extend_from_slice(m),
            ClientAction::Took(n) => {
                wire.extend_from_slice(&p.stage);
                p.stage.clear();
                wire.extend_from_slice(&m[n..]);
            }
            ClientAction::NeedMore | ClientAction::Malformed(_) => panic!("{action:?}"),
        }
    }
    causeway_protocol::frontend::Frames::new(&wire)
        .map(|(t, b)| (t, b.to_vec()))
        .collect()
}

fn reply(p: &mut Prep, cache: &mut StatementCache, tags: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &t in tags {
        let body: &[u8] = if t == b'C' { b"SELECT 1\0" } else { b"" };
        match p.server(t, body, cache) {
            ServerAction::Forward => out.push(t),
            ServerAction::Swallow => {}
            ServerAction::Retag(x) => out.push(x),
            ServerAction::Replace => {
                out.push(p.stage[0]);
                p.stage.clear();
            }
        }
    }
    out
}

fn prep(cap: usize) -> Prep {
    Prep::new(true, cap, Arc::new(Registry::default()))
}

#[test]
fn server_names() {
    assert_eq!(ServerName::new(0).as_bytes(), b"causeway_0");
    assert_eq!(ServerName::new(1234).as_bytes(), b"causeway_1234");
    assert_eq!(
        ServerName::new(u64::MAX).as_bytes(),
        b"causeway_18446744073709551615"
    );
}

#[test]
fn registry_shares_ids_by_identity() {
    let r = Registry::default();
    let a = r.get(b"select 1\0\0\0").unwrap();
    let b = r.get(b"select 1\0\0\0").unwrap();
    let c = r.get(b"select 1\0\0\x01\0\0\0\x17").unwrap();
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
    assert_eq!(c.query(), b"select 1");
    let mut n = 0;
    assert!(a.is_read(|_| {
        n += 1;
        true
    }));
    assert!(b.is_read(|_| unreachable!("classified once")));
    assert_eq!(n, 1);
}

#[test]
fn parse_bind_rewritten_and_prepared_once_per_server() {
    let mut p = prep(10);
    let mut server1 = StatementCache::default();
    let wire = send(
        &mut p,
        &mut server1,
        &[parse("s1", "select 1"), bind("s1"), frame(b'S', b"")],
    );
    let id = p.lookup(b"s1").unwrap().id;
    let name = format!("causeway_{id}");
    assert_eq!(wire[0].0, b'P');
    assert!(wire[0].1.starts_with(name.as_bytes()));
    assert_eq!(
        wire[1],
        (b'B', format!("\0{name}\0\0\0\0\0\0\0").into_bytes())
    );
    assert_eq!(reply(&mut p, &mut server1, b"12Z"), b"12Z");
    assert!(p.queue.is_empty());
    // Another server: the Bind brings its Parse, whose reply is hidden.
    let mut server2 = StatementCache::default();
    let wire = send(
        &mut p,
        &mut server2,
        &[bind("s1"), frame(b'E', b"\0\0\0\0\0"), frame(b'S', b"")],
    );
    assert_eq!(
        wire.iter().map(|x| x.0).collect::<Vec<_>>(),
        b"PBES".to_vec()
    );
    assert_eq!(reply(&mut p, &mut server2, b"12CZ"), b"2CZ");
    assert!(server2.contains(id));
    // A second client parsing the same text on server2: answered by a
    // no-op Close relabelled ParseComplete.
    let mut q = Prep::new(true, 10, p.registry.clone());
    let wire = send(
        &mut q,
        &mut server2,
        &[parse("other", "select 1"), frame(b'S', b"")],
    );
    assert_eq!(wire[0], (b'C', b"Scauseway_0\0".to_vec()));
    assert_eq!(reply(&mut q, &mut server2, b"3Z"), b"1Z");
    assert_eq!(q.counts.server_parses, 0);
    assert_eq!(p.counts.server_parses, 2);
}

#[test]
fn reused_name_is_42p05_and_skips_to_sync() {
    let mut p = prep(10);
    let mut s = StatementCache::default();
    send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
    reply(&mut p, &mut s, b"1Z");
    let wire = send(
        &mut p,
        &mut s,
        &[
            parse("s1", "select 2"),
            parse("s2", "select 3"),
            frame(b'S', b""),
        ],
    );
    assert_eq!(wire[0].1, b"causeway_dup\0causeway_dup\0\0\0".to_vec());
    // The dup Parse fails; the server skips s2's Parse.
    assert_eq!(reply(&mut p, &mut s, b"EZ"), b"EZ");
    assert!(p.lookup(b"s2").is_none(), "skipped Parse left no name");
    assert_eq!(p.lookup(b"s1").unwrap().query(), b"select 1");
    assert_eq!(s.len(), 1, "the skipped Parse is not on the server");
}

#[test]
fn an_earlier_error_is_not_mistaken_for_ours() {
    let mut p = prep(10);
    let mut s = StatementCache::default();
    send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
    reply(&mut p, &mut s, b"1Z");
    // Execute fails before the dup Parse: the client sees that error.
    send(
        &mut p,
        &mut s,
        &[
            bind("s1"),
            frame(b'E', b"\0\0\0\0\0"),
            parse("s1", "x"),
            frame(b'S', b""),
        ],
    );
    let mut out = Vec::new();
    for t in b"2EZ" {
        out.push(p.server(*t, b"", &mut s));
    }
    assert_eq!(
        out,
        vec![
            ServerAction::Forward,
            ServerAction::Forward,
            ServerAction::Forward
        ]
    );
    assert!(p.queue.is_empty());
}

#[test]
fn close_is_local_and_reparse_runs_new_text() {
    let mut p = prep(10);
    let mut s = StatementCache::default();
    send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
    reply(&mut p, &mut s, b"1Z");
    let wire = send(
        &mut p,
        &mut s,
        &[
            frame(b'C', b"Ss1\0"),
            parse("s1", "select 2"),
            bind("s1"),
            frame(b'S', b""),
        ],
    );
    assert_eq!(wire[0], (b'C', b"Scauseway_0\0".to_vec()));
    let new = p.lookup(b"s1").unwrap().clone();
    assert_eq!(new.query(), b"select 2");
    assert!(wire[2]
        .1
        .starts_with(format!("\0causeway_{}\0", new.id).as_bytes()));
    assert_eq!(reply(&mut p, &mut s, b"312Z"), b"312Z");
    // Unknown statement: 26000 naming the client's statement.
    send(&mut p, &mut s, &[bind("nope"), frame(b'S', b"")]);
    assert_eq!(p.server(b'E', b"", &mut s), ServerAction::Replace);
    assert!(String::from_utf8_lossy(&p.stage).contains("\"nope\" does not exist"));
}

#[test]
fn eviction_spares_statements_of_the_pipeline() {
    let mut p = prep(2);
    let mut s = StatementCache::default();
    s.begin_pin();
    let msgs: Vec<Vec<u8>> = (0..3)
        .flat_map(|i| {
            [
                parse(&format!("s{i}"), &format!("select {i}")),
                bind(&format!("s{i}")),
            ]
        })
        .chain([frame(b'S', b"")])
        .collect();
    let wire = send(&mut p, &mut s, &msgs);
    // All three are pinned by this attachment: nothing is closed.
    assert!(wire.iter().all(|(t, _)| *t != b'C'));
    assert_eq!(s.len(), 3);
    reply(&mut p, &mut s, b"121212Z");
    // Next attachment: a new statement evicts the least recently used.
    s.begin_pin();
    let wire = send(&mut p, &mut s, &[parse("s9", "select 9"), frame(b'S', b"")]);
    assert_eq!(
        wire.iter().map(|x| x.0).collect::<Vec<_>>(),
        b"CCPS".to_vec()
    );
    assert_eq!(reply(&mut p, &mut s, b"331Z"), b"1Z");
    assert_eq!(s.len(), 2, "evicted down to the bound");
    // Evicted statement used again: prepared again on demand.
    let s0 = p.lookup(b"s0").unwrap().id;
    assert!(!s.contains(s0));
    let wire = send(&mut p, &mut s, &[bind("s0"), frame(b'S', b"")]);
    assert_eq!(
        wire.iter().map(|x| x.0).collect::<Vec<_>>(),
        b"CPBS".to_vec()
    );
}

fn error(code: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_error(&mut b, false, code, "x");
    b[HEADER_LEN..].to_vec()
}

#[test]
fn result_type_change_retires_the_statement() {
    let mut p = prep(10);
    let mut s1 = StatementCache::default();
    send(
        &mut p,
        &mut s1,
        &[parse("s1", "select * from t"), frame(b'S', b"")],
    );
    reply(&mut p, &mut s1, b"1Z");
    let old = p.lookup(b"s1").unwrap().clone();
    // ALTER TABLE t ... TYPE: the server fails the Bind with 0A000.
    send(&mut p, &mut s1, &[bind("s1"), frame(b'S', b"")]);
    assert_eq!(
        p.server(b'E', &error("0A000"), &mut s1),
        ServerAction::Forward
    );
    p.server(b'Z', b"", &mut s1);
    assert!(!s1.contains(old.id), "no longer used on that server");
    // A new client (or the driver re-preparing under a new name) gets a
    // new statement, really parsed, after the outdated copy is closed.
    let mut q = Prep::new(true, 10, p.registry.clone());
    let wire = send(
        &mut q,
        &mut s1,
        &[parse("n", "select * from t"), frame(b'S', b"")],
    );
    let new = q.lookup(b"n").unwrap().clone();
    assert_ne!(new.id, old.id);
    assert_eq!(
        wire[0],
        (b'C', format!("Scauseway_{}\0", old.id).into_bytes())
    );
    assert_eq!(wire[1].0, b'P');
    assert_eq!(reply(&mut q, &mut s1, b"31Z"), b"1Z", "the Close is hidden");
    // The client still holding the old one, on a server without it:
    // PostgreSQL's 0A000, not a silent re-parse with a new result type.
    let mut s2 = StatementCache::default();
    let wire = send(&mut p, &mut s2, &[bind("s1"), frame(b'S', b"")]);
    assert!(wire[0].1.starts_with(b"\0causeway_0\0"));
    assert_eq!(
        p.server(b'E', &error("26000"), &mut s2),
        ServerAction::Replace
    );
    assert_eq!(field_code(&p.stage), "0A000");
    // 26000 from the server: its copy is gone, prepared again next time.
    p.stage.clear();
    p.server(b'Z', b"", &mut s2);
    let mut s3 = StatementCache::default();
    send(&mut q, &mut s3, &[bind("n"), frame(b'S', b"")]);
    reply(&mut q, &mut s3, b"12Z");
    assert!(s3.contains(new.id));
    send(&mut q, &mut s3, &[bind("n"), frame(b'S', b"")]);
    q.server(b'E', &error("26000"), &mut s3);
    q.server(b'Z', b"", &mut s3);
    assert!(!s3.contains(new.id));
}

fn field_code(frame: &[u8]) -> String {
    backend::parse_error_fields(&frame[HEADER_LEN..])
        .unwrap()
        .code
        .to_string()
}

#[test]
fn deallocate_all_clears_the_map() {
    let mut p = prep(10);
    let mut s = StatementCache::default();
    send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
    reply(&mut p, &mut s, b"1Z");
    p.marker(b'Q');
    assert_eq!(
        p.server(b'C', b"DEALLOCATE ALL\0", &mut s),
        ServerAction::Forward
    );
    p.server(b'Z', b"", &mut s);
    assert!(p.map.is_empty() && s.is_empty());
    p.marker(b'Q');
    p.server(b'C', b"PREPARE\0", &mut s);
    assert_eq!(p.sql_completed, 1);
    // DDL: a new Parse of a known text is a new statement.
    let before = p.registry.get(b"select 1\0\0\0").unwrap();
    p.server(b'C', b"ALTER TABLE\0", &mut s);
    assert_ne!(p.registry.get(b"select 1\0\0\0").unwrap().id, before.id);
}

#[test]
fn rollback_takes_a_held_unit_back() {
    let mut p = prep(1);
    let mut s = StatementCache::default();
    send(
        &mut p,
        &mut s,
        &[parse("old", "select 0"), frame(b'S', b"")],
    );
    reply(&mut p, &mut s, b"1Z");
    s.begin_pin();
    send(
        &mut p,
        &mut s,
        &[
            frame(b'C', b"Sold\0"),
            parse("s1", "select 1"),
            bind("s1"),
            frame(b'S', b""),
        ],
    );
    assert!(p.lookup(b"s1").is_some() && p.lookup(b"old").is_none());
    p.rollback(&mut s);
    // As before the unit: the replay sees the same state.
    assert!(p.lookup(b"s1").is_none());
    assert_eq!(p.lookup(b"old").unwrap().query(), b"select 0");
    assert!(p.queue.is_empty() && p.out.is_empty());
    assert_eq!(
        s.len(),
        1,
        "the evicted statement is back, the new one gone"
    );
}

#[test]
fn parses_of_verified_statements_are_answered_without_a_server() {
    let mut p = prep(10);
    let mut s = StatementCache::default();
    let unit = [parse("a", "select 1"), frame(b'S', b"")].concat();
    let mut out = BytesMut::new();
    // Never accepted by a server yet: routed.
    assert_eq!(p.answer_parses(&unit, &mut out), None);
    send(&mut p, &mut s, &[parse("a", "select 1"), frame(b'S', b"")]);
    reply(&mut p, &mut s, b"1Z");
    let mut q = Prep::new(true, 10, p.registry.clone());
    assert_eq!(q.answer_parses(&unit, &mut out), Some(unit.len()));
    assert_eq!(&out[..], b"1\0\0\0\x04Z\0\0\0\x05I");
    assert!(q.lookup(b"a").is_some());
    // Reused name, or an unknown statement in the unit: routed.
    assert_eq!(q.answer_parses(&unit, &mut out), None);
    let two = [
        parse("b", "select 1"),
        parse("c", "select 2"),
        frame(b'S', b""),
    ]
    .concat();
    assert_eq!(q.answer_parses(&two, &mut out), None);
    assert!(q.lookup(b"b").is_none());
    // Incomplete unit: routed.
    assert_eq!(q.answer_parses(&unit[..unit.len() - 5], &mut out), None);
}

#[test]
fn registry_keeps_statement_texts_within_its_byte_budget() {
    let r = Registry::with_budget(40);
    let a = r.get(&[b'a'; 30]).unwrap();
    assert_eq!(r.bytes(), 30);
    // Shared texts are counted once.
    let a2 = r.get(&[b'a'; 30]).unwrap();
    assert_eq!((a2.id, r.bytes()), (a.id, 30));
    assert!(r.get(&[b'b'; 20]).is_none(), "over the budget: not kept");
    assert!(r.get(&[b'c'; 10]).is_some_and(|c| c.kept));
    // Given back when the last holder lets go (also after a DDL
    // cleared the map: the clients' statements still count).
    r.schema_changed();
    drop(a);
    assert_eq!(r.bytes(), 30);
    drop(a2);
    assert_eq!(r.bytes(), 0);
    assert!(r.get(&[b'b'; 20]).is_some());
}

#[test]
fn a_parse_over_the_budget_runs_but_is_not_kept() {
    let mut p = Prep::new(true, 10, Arc::new(Registry::with_budget(16)));
    let mut s1 = StatementCache::default();
    let wire = send(
        &mut p,
        &mut s1,
        &[
            parse("s1", "select 'a long text'"),
            bind("s1"),
            frame(b'S', b""),
        ],
    );
    let stmt = p.lookup(b"s1").unwrap().clone();
    assert!(!stmt.kept);
    assert_eq!(p.registry.bytes(), 0);
    // Sent whole, under a name of its own, and usable there.
    let name = format!("causeway_{}", stmt.id);
    assert_eq!(
        wire[0],
        (
            b'P',
            format!("{name}\0select 'a long text'\0\0\0").into_bytes()
        )
    );
    assert!(wire[1].1.starts_with(format!("\0{name}\0").as_bytes()));
    assert_eq!(reply(&mut p, &mut s1, b"12Z"), b"12Z");
}

#[test]
fn a_large_parse_is_renamed_by_its_front_and_not_kept() {
    let mut p = prep(10);
    let mut s1 = StatementCache::default();
    let text = "select 1 -- ".to_string() + &"x".repeat(MAX_HELD);
    let big = parse("big", &text);
    // Only its header and name are needed.
    let head = &big[..HEADER_LEN + 4];
    let action = p.client(b'P', head, big.len(), &mut s1);
    assert_eq!(action, ClientAction::Took(HEADER_LEN + 4));
    let stmt = p.lookup(b"big").unwrap().clone();
    let name = format!("causeway_{}\0", stmt.id);
    assert_eq!(p.stage[0], b'P');
    let len = i32::from_be_bytes([p.stage[1], p.stage[2], p.stage[3], p.stage[4]]) as usize;
    assert_eq!(&p.stage[HEADER_LEN..], name.as_bytes());
    assert_eq!(len + 1, p.stage.len() + big.len() - (HEADER_LEN + 4));
    p.stage.clear();
    assert!(s1.contains(stmt.id) && p.registry.bytes() == 0);
    p.marker(b'S');
    assert_eq!(reply(&mut p, &mut s1, b"1Z"), b"1Z");
    // Bound on the same server: its own name.
    let wire = send(&mut p, &mut s1, &[bind("big"), frame(b'S', b"")]);
    assert!(wire[0].1.starts_with(format!("\0{name}").as_bytes()));
    reply(&mut p, &mut s1, b"2Z");
    // On another server: 26000 saying why, never a Parse of a lost text.
    let mut s2 = StatementCache::default();
    let wire = send(&mut p, &mut s2, &[bind("big"), frame(b'S', b"")]);
    assert_eq!(wire.iter().map(|x| x.0).collect::<Vec<_>>(), b"BS".to_vec());
    assert_eq!(
        p.server(b'E', &error("26000"), &mut s2),
        ServerAction::Replace
    );
    assert_eq!(field_code(&p.stage), "26000");
    assert!(String::from_utf8_lossy(&p.stage).contains("1 MiB"));
    p.stage.clear();
    p.server(b'Z', b"", &mut s2);
    // The name reused by another large Parse: made to fail, then 42P05.
    let action = p.client(b'P', head, big.len(), &mut s1);
    assert_eq!(action, ClientAction::Took(HEADER_LEN + 4));
    assert!(p.stage.ends_with(b"causeway_dup\0causeway_dup "));
    p.stage.clear();
    p.marker(b'S');
    assert_eq!(
        p.server(b'E', &error("42601"), &mut s1),
        ServerAction::Replace
    );
    assert_eq!(field_code(&p.stage), "42P05");
    // A name that does not end within MAX_HELD bytes is refused.
    let mut q = prep(10);
    let noname = frame(b'P', &vec![b'n'; MAX_HELD + 10]);
    assert!(matches!(
        q.client(b'P', &noname[..MAX_HELD], noname.len(), &mut s1),
        ClientAction::Malformed(_)
    ));
    assert_eq!(
        q.client(b'P', &noname[..100], noname.len(), &mut s1),
        ClientAction::NeedMore
    );
}

#[test]
fn sql_prepare_texts_are_kept_within_a_byte_budget() {
    use super::super::sql_prepared::MAX_SQL_TEXT_BYTES;
    let mut p = prep(10);
    let mut cache = StatementCache::default();
    let body = "x".repeat(60 * 1024);
    let mut kept = 0;
    for i in 0..40 {
        let q = frame(
            b'Q',
            format!("PREPARE s{i} AS SELECT '{body}'\0").as_bytes(),
        );
        p.query(&q, q.len(), None, &mut cache);
        kept = p.sql_text.len();
    }
    // 40 x 60 KiB offered: only what fits in the budget is kept.
    assert!(kept > 0 && kept < 40, "{kept}");
    assert!(p.sql_text_bytes <= MAX_SQL_TEXT_BYTES);
    assert_eq!(p.sql_recognized as usize, kept, "the rest run untracked");
    // DEALLOCATE gives the bytes back: the next PREPARE is kept.
    let d = frame(b'Q', b"DEALLOCATE s0\0");
    p.query(&d, d.len(), None, &mut cache);
    assert_eq!(p.sql_text.len(), kept - 1);
    let q = frame(
        b'Q',
        format!("PREPARE again AS SELECT '{body}'\0").as_bytes(),
    );
    p.query(&q, q.len(), None, &mut cache);
    assert!(p.sql_text.contains_key("again"));
}
