//! The wire protocol through Causeway with a real driver (tokio-postgres):
//! simple and extended queries, COPY both ways, large rows, notices,
//! errors inside transactions, cancel; and malformed input from a raw TCP
//! client.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// Causeway in `mode` with pool size `pool`.
async fn causeway(mode: &str, pool: u32) -> Cw {
    let c = cluster().await;
    start_cw(
        APP_USERS,
        &(base_toml(mode, &format!("default_pool_size = {pool}")) + &db_entry(c, "app", "")),
    )
    .await
}

/// Connects and delivers the connection's notices on a channel (driving
/// the connection with `poll_message`).
async fn connect_with_notices(cw: &Cw) -> (Client, tokio::sync::mpsc::UnboundedReceiver<DbError>) {
    let (client, mut conn) = within(
        STEP,
        "connect",
        tokio_postgres::connect(&cw.conn_str("app", Some("app_pw"), "app"), NoTls),
    )
    .await
    .expect("connect through causeway");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => {
                    let _ = tx.send(n);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    (client, rx)
}

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- session mode

/// Several simple and extended queries on one session-mode connection:
/// every one of them answers (the session keeps its server between them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_simple_and_extended_queries() {
    let cw = causeway("session", 4).await;
    let client = cw.app().await;
    let msgs = within(
        T,
        "first simple query",
        client.simple_query("SELECT 1 AS a, 'x' AS b; SELECT 2"),
    )
    .await
    .unwrap();
    assert_eq!(rows(&msgs), vec![vec!["1", "x"], vec!["2"]]);
    let msgs = within(
        T,
        "second simple query on the same session",
        client.simple_query("SELECT 'second'"),
    )
    .await
    .unwrap();
    assert_eq!(rows(&msgs), vec![vec!["second"]]);

    let stmt = within(
        T,
        "prepare",
        client.prepare("SELECT $1::int4 + $2::int4, upper($3::text)"),
    )
    .await
    .unwrap();
    for i in 0..20i32 {
        let row = within(
            T,
            "execute prepared",
            client.query_one(&stmt, &[&i, &1000i32, &"abc"]),
        )
        .await
        .unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1000);
        assert_eq!(row.get::<_, String>(1), "ABC");
    }
    // Session state survives: a session-level SET is still there.
    within(
        T,
        "SET",
        client.batch_execute("SET search_path = pg_catalog, public"),
    )
    .await
    .unwrap();
    let row = within(T, "SHOW", client.query_one("SHOW search_path", &[]))
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pg_catalog, public");
    drop(client);
    cw.stop().await;
}

/// While a session-mode client holds its server, other clients can still
/// log in and run queries (the process is not stuck on the first one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_other_clients_are_served() {
    let cw = causeway("session", 4).await;
    let first = cw.app().await;
    within(T, "first client's query", first.simple_query("SELECT 1"))
        .await
        .unwrap();
    for i in 0..3 {
        let other = within(T, "login of another client", cw.app()).await;
        let v = within(T, "other client's query", simple_one(&other, "SELECT 7"))
            .await
            .unwrap();
        assert_eq!(v, "7", "client {i}");
    }
    drop(first);
    cw.stop().await;
}

async fn copy_round_trip(client: &Client, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text)"
        ))
        .await
        .unwrap();
    let sink = within(
        T,
        "COPY FROM STDIN start",
        client.copy_in(&format!("COPY {table} (id, v) FROM STDIN")),
    )
    .await
    .unwrap();
    futures_util::pin_mut!(sink);
    let mut expected = BytesMut::new();
    for chunk in 0..10 {
        let mut buf = BytesMut::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            buf.put(format!("{i}\tvalue number {i}\n").as_bytes());
        }
        expected.extend_from_slice(&buf);
        within(T, "COPY data", sink.send(buf.freeze()))
            .await
            .unwrap();
    }
    let n = within(T, "COPY finish", sink.as_mut().finish())
        .await
        .unwrap();
    assert_eq!(n, 10_000);

    let stream = within(
        T,
        "COPY TO STDOUT start",
        client.copy_out(&format!(
            "COPY (SELECT id, v FROM {table} ORDER BY id) TO STDOUT"
        )),
    )
    .await
    .unwrap();
    futures_util::pin_mut!(stream);
    let mut got = BytesMut::new();
    while let Some(chunk) = within(T, "COPY out data", stream.next()).await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "COPY OUT did not return what COPY IN sent");
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_copy_in_and_out() {
    let cw = causeway("session", 4).await;
    let client = cw.app().await;
    copy_round_trip(&client, "copy_session").await;
    drop(client);
    cw.stop().await;
}

async fn big_rows(client: &Client, table: &str) {
    let row = within(
        T,
        "3 MB result row",
        client.query_one("SELECT repeat('x', 3000000)", &[]),
    )
    .await
    .unwrap();
    let s: String = row.get(0);
    assert_eq!(s.len(), 3_000_000);
    assert!(s.bytes().all(|b| b == b'x'));

    client
        .batch_execute(&format!("CREATE TABLE {table} (id int, t text)"))
        .await
        .unwrap();
    let big: String = (0..2_000_000u32)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let n = within(
        T,
        "2 MB parameter",
        client.execute(
            &format!("INSERT INTO {table} VALUES ($1, $2)"),
            &[&1i32, &big],
        ),
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let row = within(
        T,
        "read back 2 MB",
        client.query_one(
            &format!("SELECT t, length(t) FROM {table} WHERE id = 1"),
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(1), 2_000_000);
    assert!(
        row.get::<_, String>(0) == big,
        "2 MB value came back altered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rows_larger_than_a_megabyte() {
    let cw = causeway("session", 4).await;
    let client = cw.app().await;
    big_rows(&client, "big_session").await;
    drop(client);
    cw.stop().await;
}

async fn notice_delivered(cw: &Cw) {
    let (client, mut notices) = connect_with_notices(cw).await;
    within(
        T,
        "DO with RAISE NOTICE",
        client.batch_execute("DO $$ BEGIN RAISE NOTICE 'hi'; END $$"),
    )
    .await
    .unwrap();
    let n = within(Duration::from_secs(5), "notice", notices.recv())
        .await
        .expect("connection ended without delivering the notice");
    assert_eq!(n.message(), "hi");
    assert_eq!(n.severity(), "NOTICE");
    // And the connection goes on.
    assert_eq!(
        within(T, "query after notice", simple_one(&client, "SELECT 'ok'"))
            .await
            .unwrap(),
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_notice_delivered() {
    let cw = causeway("session", 4).await;
    notice_delivered(&cw).await;
    cw.stop().await;
}

async fn error_in_transaction(client: &mut Client, table: &str) {
    client
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .unwrap();
    let tx = within(T, "BEGIN", client.transaction()).await.unwrap();
    tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
        .await
        .unwrap();
    let err = within(T, "1/0", tx.simple_query("SELECT 1/0"))
        .await
        .expect_err("division by zero succeeded");
    assert_eq!(code(&err).as_deref(), Some("22012"), "{err:?}");
    let err = within(T, "after error", tx.simple_query("SELECT 1"))
        .await
        .expect_err("statement in an aborted transaction succeeded");
    assert_eq!(code(&err).as_deref(), Some("25P02"), "{err:?}");
    within(T, "ROLLBACK", tx.rollback()).await.unwrap();
    let n = within(
        T,
        "count after rollback",
        simple_one(client, &format!("SELECT count(*) FROM {table}")),
    )
    .await
    .unwrap();
    assert_eq!(n, "0", "rolled-back insert is visible");
    within(
        T,
        "insert after rollback",
        client.batch_execute(&format!("INSERT INTO {table} VALUES (2)")),
    )
    .await
    .unwrap();
    let n = simple_one(client, &format!("SELECT sum(v) FROM {table}"))
        .await
        .unwrap();
    assert_eq!(n, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_error_mid_transaction_then_rollback() {
    let cw = causeway("session", 4).await;
    let mut client = cw.app().await;
    error_in_transaction(&mut client, "err_session").await;
    drop(client);
    cw.stop().await;
}

/// A long query cancelled with the driver's cancel token ends promptly
/// with 57014, and the connection stays usable.
async fn cancel_long_query(cw: &Cw, mode: &str) {
    let client = cw.app().await;
    // Warm up, so the cancel hits a running query rather than a login.
    simple_one(&client, "SELECT 1").await.unwrap();
    let token = client.cancel_token();
    let start = Instant::now();
    // Named per mode: the session and transaction tests run at once.
    let sql = format!("SELECT pg_sleep(10) AS cancel_{mode}");
    let query = client.simple_query(&sql);
    let cancel = async {
        until_running(&[cluster().await.primary()], &sql).await;
        token.cancel_query(NoTls).await
    };
    let (res, cancelled) = within(Duration::from_secs(15), "cancelled pg_sleep(10)", async {
        tokio::join!(query, cancel)
    })
    .await;
    let took = start.elapsed();
    cancelled.expect("sending the cancel request");
    let err = res.expect_err("pg_sleep(10) was not cancelled");
    assert_eq!(code(&err).as_deref(), Some("57014"), "{err:?}");
    assert!(took < Duration::from_secs(3), "cancel took {took:?}");
    assert_eq!(
        within(
            T,
            "query after cancel",
            simple_one(&client, "SELECT 'alive'")
        )
        .await
        .unwrap(),
        "alive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cancel_query() {
    let cw = causeway("session", 4).await;
    cancel_long_query(&cw, "session").await;
    cw.stop().await;
}

// ------------------------------------------------------------ transaction mode

/// query_typed (Parse/Bind/Execute/Sync in one round trip, unnamed
/// statement) and simple queries, many times in a row on a small pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_query_typed_and_simple() {
    let cw = causeway("transaction", 2).await;
    let client = cw.app().await;
    for i in 0..30i32 {
        let rows = within(
            T,
            "query_typed",
            client.query_typed(
                "SELECT $1::int4 * 2, $2::text || '!'",
                &[
                    (&i, tokio_postgres::types::Type::INT4),
                    (&"hey", tokio_postgres::types::Type::TEXT),
                ],
            ),
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i32>(0), i * 2);
        assert_eq!(rows[0].get::<_, String>(1), "hey!");
        let msgs = within(
            T,
            "simple",
            client.simple_query(&format!("SELECT {i}; SELECT 'b'")),
        )
        .await
        .unwrap();
        assert_eq!(rows_of(&msgs), vec![vec![i.to_string()], vec!["b".into()]]);
    }
    drop(client);
    cw.stop().await;
}

fn rows_of(m: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    rows(m)
}

/// Inside an explicit transaction the client keeps its server, so
/// named prepared statements work in transaction mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_prepare_inside_explicit_transaction() {
    let cw = causeway("transaction", 2).await;
    let mut client = cw.app().await;
    client
        .batch_execute("CREATE TABLE tx_prep (id int, v text)")
        .await
        .unwrap();
    for round in 0..5i32 {
        let tx = within(T, "BEGIN", client.transaction()).await.unwrap();
        let ins = within(
            T,
            "prepare insert",
            tx.prepare("INSERT INTO tx_prep VALUES ($1, $2)"),
        )
        .await
        .unwrap();
        for i in 0..10i32 {
            within(
                T,
                "execute prepared insert",
                tx.execute(&ins, &[&(round * 10 + i), &format!("r{round}")]),
            )
            .await
            .unwrap();
        }
        let sel = within(
            T,
            "prepare select",
            tx.prepare("SELECT count(*) FROM tx_prep WHERE v = $1"),
        )
        .await
        .unwrap();
        let row = within(
            T,
            "query prepared",
            tx.query_one(&sel, &[&format!("r{round}")]),
        )
        .await
        .unwrap();
        assert_eq!(row.get::<_, i64>(0), 10);
        within(T, "COMMIT", tx.commit()).await.unwrap();
    }
    let n = simple_one(&client, "SELECT count(*) FROM tx_prep")
        .await
        .unwrap();
    assert_eq!(n, "50");
    drop(client);
    cw.stop().await;
}

/// The same driver features in transaction mode (COPY and the large rows
/// inside a transaction, since tokio-postgres prepares statements in a
/// separate round trip), so a session-mode failure above can be told apart
/// from a general one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_copy_big_rows_notice_error() {
    let cw = causeway("transaction", 2).await;
    let mut client = cw.app().await;
    {
        let tx = client.transaction().await.unwrap();
        copy_round_trip(tx.client(), "copy_tx").await;
        tx.commit().await.unwrap();
    }
    {
        let tx = client.transaction().await.unwrap();
        big_rows(tx.client(), "big_tx").await;
        tx.commit().await.unwrap();
    }
    notice_delivered(&cw).await;
    error_in_transaction(&mut client, "err_tx").await;
    drop(client);
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_cancel_query() {
    let cw = causeway("transaction", 2).await;
    cancel_long_query(&cw, "transaction").await;
    cw.stop().await;
}

// -------------------------------------------------------------- raw TCP input

fn startup_packet(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

fn query_msg(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

/// Reads one backend message (tag, body); None on EOF.
async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    match within(
        Duration::from_secs(5),
        "read message",
        s.read_exact(&mut head),
    )
    .await
    {
        Ok(_) => {}
        Err(_) => return None,
    }
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    assert!((4..=10_000_000).contains(&len), "bad length {len}");
    let mut body = vec![0u8; len - 4];
    within(Duration::from_secs(5), "read body", s.read_exact(&mut body))
        .await
        .expect("truncated message");
    Some((head[0], body))
}

/// Fields of an ErrorResponse body.
fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

fn field(fields: &[(u8, String)], t: u8) -> Option<&str> {
    fields
        .iter()
        .find(|(k, _)| *k == t)
        .map(|(_, v)| v.as_str())
}

/// Reads until ReadyForQuery; returns its status byte.
async fn until_ready(s: &mut TcpStream) -> u8 {
    loop {
        let (tag, body) = read_msg(s).await.expect("EOF before ReadyForQuery");
        match tag {
            b'Z' => return body[0],
            b'E' => panic!(
                "error while waiting for ReadyForQuery: {:?}",
                error_fields(&body)
            ),
            _ => {}
        }
    }
}

async fn logged_in_raw(cw: &Cw) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", cw.port())).await.unwrap();
    s.write_all(&startup_packet("app", "app")).await.unwrap();
    assert_eq!(until_ready(&mut s).await, b'I');
    s
}

/// The client must get an ErrorResponse with SQLSTATE 08P01 and then EOF.
/// Returns the message and any fields of an undocumented type (a sign of a
/// NUL byte inside the message text, which cuts it short).
async fn expect_08p01_and_close(s: &mut TcpStream, what: &str) -> (String, Vec<String>) {
    const DOCUMENTED: &[u8] = b"SVCMDHPpqWstcdnFLR";
    let mut error = None;
    let mut bogus = Vec::new();
    loop {
        match read_msg(s).await {
            Some((b'E', body)) => {
                let f = error_fields(&body);
                assert_eq!(field(&f, b'C'), Some("08P01"), "{what}: {f:?}");
                error = Some(field(&f, b'M').unwrap_or("").to_string());
                for (t, v) in &f {
                    if !DOCUMENTED.contains(t) {
                        bogus.push(format!(
                            "{what}: field type {:?} value {v:?} in {f:?}",
                            *t as char
                        ));
                    }
                }
            }
            Some((tag, _)) => {
                assert!(
                    error.is_none(),
                    "{what}: message '{}' after the error",
                    tag as char
                );
            }
            None => break,
        }
    }
    let m = error.unwrap_or_else(|| panic!("{what}: connection closed without an ErrorResponse"));
    (m, bogus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_bad_frames_get_08p01() {
    let c = cluster().await;
    let cw = start_cw(
        APP_USERS,
        &("auth_type = \"trust\"\nauth_file = \"{userlist}\"\npool_mode = \"transaction\"\n\
           max_packet_size = 65536\ndefault_pool_size = 2\n"
            .to_string()
            + &db_entry(c, "app", "")),
    )
    .await;
    let normal = cw.connect("app", None, "app").await.unwrap();
    assert_eq!(simple_one(&normal, "SELECT 1").await.unwrap(), "1");

    // A query just under the limit is fine.
    let mut s = logged_in_raw(&cw).await;
    let sql = format!("SELECT length('{}')", "y".repeat(60_000));
    s.write_all(&query_msg(&sql)).await.unwrap();
    let mut value = None;
    loop {
        let (tag, body) = read_msg(&mut s).await.expect("EOF");
        match tag {
            b'D' => value = Some(String::from_utf8_lossy(&body[6..]).into_owned()),
            b'Z' => break,
            b'E' => panic!("60 kB query refused: {:?}", error_fields(&body)),
            _ => {}
        }
    }
    assert_eq!(value.as_deref(), Some("60000"));

    // Idle client declares a 100 kB message (> max_packet_size).
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&100_000i32.to_be_bytes());
    frame.extend_from_slice(b"SELECT 1");
    s.write_all(&frame).await.unwrap();
    let mut malformed = Vec::new();
    let (m, bad) = expect_08p01_and_close(&mut s, "oversized frame while idle").await;
    eprintln!("oversized idle frame: {m}");
    malformed.extend(bad);

    // Same inside a transaction (the client holds a server).
    let mut s = logged_in_raw(&cw).await;
    s.write_all(&query_msg("BEGIN")).await.unwrap();
    assert_eq!(until_ready(&mut s).await, b'T');
    s.write_all(&frame).await.unwrap();
    let (m, bad) = expect_08p01_and_close(&mut s, "oversized frame inside a transaction").await;
    eprintln!("oversized frame in transaction: {m}");
    malformed.extend(bad);

    // Garbage startup packets: closed without a reply, as PostgreSQL does
    // (see parity.rs `garbage_before_startup_closes_silently`).
    for (what, bytes) in [
        ("startup length 3", 3i32.to_be_bytes().to_vec()),
        ("startup length 99999999", {
            let mut v = 99_999_999i32.to_be_bytes().to_vec();
            v.extend_from_slice(&196608i32.to_be_bytes());
            v
        }),
        ("negative startup length", (-1i32).to_be_bytes().to_vec()),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", cw.port())).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut reply = Vec::new();
        within(STEP, "close", s.read_to_end(&mut reply)).await.ok();
        assert!(reply.is_empty(), "{what}: replied {reply:?}");
    }

    // The well-behaved client never noticed.
    for i in 0..5 {
        assert_eq!(
            simple_one(&normal, &format!("SELECT {i}")).await.unwrap(),
            i.to_string()
        );
    }
    let fresh = cw.connect("app", None, "app").await.unwrap();
    assert_eq!(simple_one(&fresh, "SELECT 'fresh'").await.unwrap(), "fresh");
    drop((normal, fresh));
    cw.stop().await;
    // Checked last so that the checks above run whatever happens here.
    assert!(
        malformed.is_empty(),
        "ErrorResponse with undocumented fields (NUL inside the message?): {malformed:#?}"
    );
}
