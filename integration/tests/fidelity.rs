//! Protocol fidelity through Causeway, per pool mode, with raw protocol
//! frames (so exactly what reaches the client is checked), tokio-postgres
//! and psql: extended-protocol pipelining and Flush, errors inside a
//! pipeline, COPY text/binary both ways, a 100 MB COPY in, CopyFail, a
//! 1 GiB result with Causeway's memory bounded, notices and NOTIFY, LISTEN
//! in transaction mode, FunctionCall (large objects), empty and
//! multi-statement queries, ParameterStatus, protocol 3.2 negotiation,
//! replication refusal and cancel. What each test checks is what
//! docs/protocol.md promises.

mod common;

use std::time::{Duration, Instant};

use causeway_integration::frames::*;
use causeway_integration::raw::*;
use causeway_integration::wait::eventually;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{AsyncMessage, NoTls};

/// Causeway with trust auth (raw clients need no SCRAM) in `mode`.
async fn causeway(mode: &str, pool: u32) -> Cw {
    let c = cluster().await;
    start_cw(
        APP_USERS,
        &(format!(
            "auth_type = \"trust\"\nauth_file = \"{{userlist}}\"\npool_mode = \"{mode}\"\n\
             default_pool_size = {pool}\nmax_client_conn = 100\n"
        ) + &db_entry(c, "app", "")),
    )
    .await
}

/// Transaction mode over the primary and both replicas (reads go to replicas).
async fn causeway_split(pool: u32) -> Cw {
    let c = cluster().await;
    let toml = split_toml(c, &format!("default_pool_size = {pool}"), "")
        .replace("auth_type = \"scram-sha-256\"", "auth_type = \"trust\"");
    start_cw(APP_USERS, &toml).await
}

// ------------------------------------------------------------ pipelining

/// 100 Parse/Bind/Execute before one Sync; 20 units each with its own
/// Sync in one write; Flush without Sync (a portal suspended, then resumed
/// on the same backend after the Flush).
async fn pipelining(cw: &Cw) {
    let mut c = Raw::login(cw).await;
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(pbe("SELECT $1::int4 * 2", &[Some(&i.to_string())]));
    }
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), format!("{}Z", "12DC".repeat(100)));
    let want: Vec<String> = (0..100).map(|i| (i * 2).to_string()).collect();
    assert_eq!(data(&msgs), want);
    assert_eq!(status(&msgs), b'I');

    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend(pbe("SELECT $1::text || '!'", &[Some(&i.to_string())]));
        batch.extend(sync());
    }
    c.send(&batch).await;
    for i in 0..20 {
        let msgs = c.until_ready().await;
        assert_eq!(tags(&msgs), "12DCZ", "unit {i}");
        assert_eq!(data(&msgs), vec![format!("{i}!")]);
    }

    // Flush without Sync: the replies so far arrive, with no ReadyForQuery.
    let mut batch = parse(
        "",
        "SELECT g, pg_backend_pid() FROM generate_series(1, 5) g",
        &[],
    );
    batch.extend(bind("p1", "", &[]));
    batch.extend(describe(b'P', "p1"));
    batch.extend(execute("p1", 2));
    batch.extend(flush());
    c.send(&batch).await;
    let mut got = Vec::new();
    while got.len() < 6 {
        let m = c.recv().await.expect("reply to Flush");
        if m.0 != b'S' {
            got.push(m);
        }
    }
    assert_eq!(tags(&got), "12TDDs", "after Flush");
    c.assert_quiet(Duration::from_millis(300), "after Flush")
        .await;
    // The portal is still open on the same backend: resume it, then Sync.
    let mut batch = execute("p1", 0);
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "DDDCZ", "resumed portal");
    assert_eq!(data(&msgs), vec!["3", "4", "5"]);
    // And the session goes on.
    assert_eq!(
        c.simple("SELECT 'after'").await,
        (vec!["after".to_string()], b'I')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_session() {
    let cw = causeway("session", 2).await;
    pipelining(&cw).await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_transaction() {
    let cw = causeway("transaction", 2).await;
    pipelining(&cw).await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_statement() {
    let cw = causeway("statement", 2).await;
    pipelining(&cw).await;
    cw.stop().await;
}

/// Reads go to replicas here: pipelines are units up to Sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_transaction_with_replicas() {
    let cw = causeway_split(2).await;
    pipelining(&cw).await;
    pipeline_error(&cw).await;
    cw.stop().await;
}

/// Fails in Execute (a constant 1/0 already fails at Bind, when planned).
const DIV0_AT_EXECUTE: &str = "SELECT 1/(random() * 0)::int";

/// An error in the middle of a pipeline: the server skips to the Sync; the
/// client sees exactly one ErrorResponse, then ReadyForQuery, and the next
/// pipeline is fine. Also at Parse, and inside an explicit transaction.
async fn pipeline_error(cw: &Cw) {
    let mut c = Raw::login(cw).await;
    let mut batch = pbe("SELECT 1", &[]);
    batch.extend(pbe("SELECT 2", &[]));
    batch.extend(pbe(DIV0_AT_EXECUTE, &[]));
    batch.extend(pbe("SELECT 4", &[]));
    batch.extend(pbe("SELECT 5", &[]));
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "12DC12DC12EZ", "error mid-pipeline");
    assert_eq!(errors(&msgs), vec!["22012"]);
    assert_eq!(status(&msgs), b'I');

    // A syntax error at Parse: Bind/Execute after it are skipped too.
    let mut batch = pbe("SELECT 1", &[]);
    batch.extend(pbe("SELEKT 2", &[]));
    batch.extend(pbe("SELECT 3", &[]));
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "12DCEZ", "parse error mid-pipeline");
    assert_eq!(errors(&msgs), vec!["42601"]);

    // The next pipeline is fine.
    let mut batch = pbe("SELECT 6", &[]);
    batch.extend(pbe("SELECT 7", &[]));
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "12DC12DCZ");
    assert_eq!(data(&msgs), vec!["6", "7"]);

    // Inside a transaction block (not in statement mode): the error aborts
    // it (status E) and ROLLBACK ends it.
    let (_, st) = c.simple("BEGIN").await;
    if st == b'T' {
        let mut batch = pbe("SELECT 1", &[]);
        batch.extend(pbe(DIV0_AT_EXECUTE, &[]));
        batch.extend(pbe("SELECT 3", &[]));
        batch.extend(sync());
        c.send(&batch).await;
        let msgs = c.until_ready().await;
        assert_eq!(tags(&msgs), "12DC12EZ");
        assert_eq!(status(&msgs), b'E');
        c.send(&query("SELECT 1")).await;
        let msgs = c.until_ready().await;
        assert_eq!(errors(&msgs), vec!["25P02"]);
        assert_eq!(c.simple("ROLLBACK").await.1, b'I');
    }
    assert_eq!(
        c.simple("SELECT 'ok'").await,
        (vec!["ok".to_string()], b'I')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_error_session() {
    let cw = causeway("session", 2).await;
    pipeline_error(&cw).await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_error_transaction() {
    let cw = causeway("transaction", 2).await;
    pipeline_error(&cw).await;
    cw.stop().await;
}

// ------------------------------------------------------------------ COPY

/// PGCOPY binary stream of (int4, text) rows.
fn binary_copy(rows: &[(i32, &str)]) -> Vec<u8> {
    let mut b = b"PGCOPY\n\xff\r\n\0".to_vec();
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    for (id, v) in rows {
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

/// Text and binary COPY in (simple Query, and extended protocol with the
/// Sync sent right after Execute as tokio-postgres does) and out; the
/// binary stream read back is byte for byte the one sent.
async fn copy_formats(cw: &Cw, table: &str) {
    let mut c = Raw::login(cw).await;
    c.simple(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int4, v text)"
    ))
    .await;

    // Text, simple protocol.
    c.send(&query(&format!("COPY {table} FROM STDIN"))).await;
    assert_eq!(c.recv().await.unwrap().0, b'G');
    c.send(&copy_data(b"1\tone\n2\ttwo\n")).await;
    c.send(&copy_data(b"3\tthree\n")).await;
    c.send(&copy_done()).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "CZ");
    assert_eq!(String::from_utf8_lossy(&msgs[0].1), "COPY 3\0");

    // Eager client (asyncpg): COPY, its data and CopyDone in one write,
    // without waiting for CopyInResponse, then the next query at once.
    let mut batch = query(&format!("COPY {table} FROM STDIN"));
    batch.extend(copy_data(b"4\tfour\n"));
    batch.extend(copy_done());
    batch.extend(query("SELECT 'next'"));
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "GCZ", "eager COPY");
    let msgs = c.until_ready().await;
    assert_eq!(data(&msgs), vec!["next"], "query after an eager COPY");
    // The same with extended protocol, and an eager CopyFail.
    let mut batch = pbe(&format!("COPY {table} FROM STDIN"), &[]);
    batch.extend(copy_data(b"5\tfive\n"));
    batch.extend(copy_done());
    batch.extend(sync());
    batch.extend(query(&format!("COPY {table} FROM STDIN")));
    batch.extend(copy_data(b"6\tsix\n"));
    batch.extend(copy_fail("eager fail"));
    batch.extend(query("SELECT 'next2'"));
    c.send(&batch).await;
    assert_eq!(tags(&c.until_ready().await), "12GCZ", "eager extended COPY");
    assert_eq!(tags(&c.until_ready().await), "GEZ", "eager CopyFail");
    assert_eq!(data(&c.until_ready().await), vec!["next2"]);
    c.simple(&format!("DELETE FROM {table} WHERE id > 3")).await;

    // Binary, extended protocol: Parse/Bind/Execute/Sync, data, CopyDone, Sync.
    let rows: Vec<(i32, String)> = (10..1010).map(|i| (i, format!("bin é {i}"))).collect();
    let refs: Vec<(i32, &str)> = rows.iter().map(|(i, s)| (*i, s.as_str())).collect();
    let stream = binary_copy(&refs);
    let mut batch = pbe(&format!("COPY {table} FROM STDIN (FORMAT binary)"), &[]);
    batch.extend(sync());
    c.send(&batch).await;
    let head = [
        c.recv().await.unwrap().0,
        c.recv().await.unwrap().0,
        c.recv().await.unwrap().0,
    ];
    assert_eq!(&head, b"12G");
    for chunk in stream.chunks(1000) {
        c.send(&copy_data(chunk)).await;
    }
    let mut end = copy_done();
    end.extend(sync());
    c.send(&end).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "CZ", "binary COPY in: one ReadyForQuery");
    assert_eq!(String::from_utf8_lossy(&msgs[0].1), "COPY 1000\0");
    c.assert_quiet(Duration::from_millis(200), "after binary COPY in")
        .await;

    // Binary out of the same rows: the same bytes.
    c.send(&query(&format!(
        "COPY (SELECT id, v FROM {table} WHERE id >= 10 ORDER BY id) TO STDOUT (FORMAT binary)"
    )))
    .await;
    let msgs = c.until_ready().await;
    assert_eq!(msgs[0].0, b'H');
    let out: Vec<u8> = msgs
        .iter()
        .filter(|(t, _)| *t == b'd')
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert_eq!(out, stream, "binary COPY out differs from what went in");
    assert!(tags(&msgs).ends_with("cCZ"), "{}", tags(&msgs));

    // Text out, extended protocol.
    let mut batch = pbe(
        &format!("COPY (SELECT id, v FROM {table} WHERE id < 10 ORDER BY id) TO STDOUT"),
        &[],
    );
    batch.extend(sync());
    c.send(&batch).await;
    let msgs = c.until_ready().await;
    let out: Vec<u8> = msgs
        .iter()
        .filter(|(t, _)| *t == b'd')
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&out), "1\tone\n2\ttwo\n3\tthree\n");
    assert!(tags(&msgs).starts_with("12H") && tags(&msgs).ends_with("cCZ"));
    assert_eq!(status(&msgs), b'I');
    c.simple(&format!("DROP TABLE {table}")).await;
}

/// CopyFail (simple and extended): the server answers with one error
/// (57014), nothing was copied, and the connection goes on.
async fn copy_fail_case(cw: &Cw, table: &str) {
    let mut c = Raw::login(cw).await;
    c.simple(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int4, v text)"
    ))
    .await;
    c.send(&query(&format!("COPY {table} FROM STDIN"))).await;
    assert_eq!(c.recv().await.unwrap().0, b'G');
    c.send(&copy_data(b"1\tone\n2\ttwo\n")).await;
    c.send(&copy_fail("client gave up")).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(field(&msgs[0].1, b'C'), "57014");
    assert!(
        field(&msgs[0].1, b'M').contains("client gave up"),
        "{:?}",
        fields(&msgs[0].1)
    );
    assert_eq!(status(&msgs), b'I');

    let mut batch = pbe(&format!("COPY {table} FROM STDIN"), &[]);
    batch.extend(sync());
    c.send(&batch).await;
    for want in [b'1', b'2', b'G'] {
        assert_eq!(c.recv().await.unwrap().0, want);
    }
    c.send(&copy_data(b"3\tthree\n")).await;
    let mut end = copy_fail("extended gave up");
    end.extend(sync());
    c.send(&end).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(field(&msgs[0].1, b'C'), "57014");
    c.assert_quiet(Duration::from_millis(200), "after CopyFail")
        .await;
    assert_eq!(
        c.simple(&format!("SELECT count(*) FROM {table}")).await,
        (vec!["0".to_string()], b'I')
    );
    c.simple(&format!("DROP TABLE {table}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_session() {
    let cw = causeway("session", 2).await;
    copy_formats(&cw, "fid_copy_s").await;
    copy_fail_case(&cw, "fid_copyfail_s").await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_transaction() {
    let cw = causeway("transaction", 2).await;
    copy_formats(&cw, "fid_copy_t").await;
    copy_fail_case(&cw, "fid_copyfail_t").await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_statement() {
    let cw = causeway("statement", 2).await;
    copy_formats(&cw, "fid_copy_st").await;
    copy_fail_case(&cw, "fid_copyfail_st").await;
    cw.stop().await;
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

const MIB: u64 = 1024 * 1024;
/// Causeway's memory may grow this much while streaming (functional bound).
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// 100 MB COPY in, in 64 KiB CopyData messages, in transaction mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_100mb() {
    let cw = causeway("transaction", 2).await;
    let mut c = Raw::login(&cw).await;
    c.simple(
        "DROP TABLE IF EXISTS fid_copy_big; CREATE UNLOGGED TABLE fid_copy_big (id int4, v text)",
    )
    .await;
    let before = rss_kib(cw.pid());
    let row_payload = "x".repeat(1000);
    let mut chunk = Vec::with_capacity(64 * 1024 + 1100);
    let mut rows = 0u64;
    let mut sent = 0u64;
    let mut peak = before;
    let start = Instant::now();
    c.send(&query("COPY fid_copy_big FROM STDIN")).await;
    assert_eq!(c.recv().await.unwrap().0, b'G');
    while sent < 100 * MIB {
        chunk.clear();
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(format!("{rows}\t{row_payload}\n").as_bytes());
            rows += 1;
        }
        sent += chunk.len() as u64;
        c.send(&copy_data(&chunk)).await;
        if rows % 5000 < 70 {
            peak = peak.max(rss_kib(cw.pid()));
        }
    }
    c.send(&copy_done()).await;
    let msgs = c.until_ready().await;
    peak = peak.max(rss_kib(cw.pid()));
    let took = start.elapsed();
    assert_eq!(tags(&msgs), "CZ", "{:?}", errors(&msgs));
    assert_eq!(
        String::from_utf8_lossy(&msgs[0].1),
        format!("COPY {rows}\0")
    );
    assert_eq!(
        c.simple("SELECT count(*) FROM fid_copy_big").await.0,
        vec![rows.to_string()]
    );
    eprintln!(
        "copy_in_100mb: {} MiB, {rows} rows in {took:.1?}; causeway RSS {before} KiB -> peak {peak} KiB (+{} KiB)",
        sent / MIB,
        peak - before
    );
    assert!(
        peak - before < RSS_BOUND_KIB,
        "RSS grew {} KiB",
        peak - before
    );
    c.simple("DROP TABLE fid_copy_big").await;
    cw.stop().await;
}

/// A 1 GiB result (1024 rows of 1 MiB) through Causeway, read by a client
/// that pauses twice for a second: Causeway's RSS grows by less than
/// 64 MiB (it streams with backpressure instead of buffering the result).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_result_memory_bounded() {
    let cw = causeway("transaction", 2).await;
    let mut c = Raw::login(&cw).await;
    c.simple("SELECT 1").await;
    let pid = cw.pid();
    let before = rss_kib(pid);
    let mut peak = before;
    let start = Instant::now();
    c.send(&query(
        "SELECT repeat('x', 1048576) FROM generate_series(1, 1024)",
    ))
    .await;
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut head = [0u8; 5];
    let mut body = vec![0u8; 2 * MIB as usize];
    loop {
        within(T, "read result", c.s.read_exact(&mut head))
            .await
            .unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
        assert!(len <= body.len(), "message of {len} bytes");
        within(T, "read body", c.s.read_exact(&mut body[..len]))
            .await
            .unwrap();
        bytes += len as u64 + 5;
        match head[0] {
            b'D' => {
                rows += 1;
                if rows & 31 == 0 {
                    peak = peak.max(rss_kib(pid));
                }
                if rows == 256 || rows == 700 {
                    // A slow client: the server keeps producing.
                    // sleep-ok: the stall is the test (memory must stay bounded)
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    peak = peak.max(rss_kib(pid));
                }
            }
            b'E' => panic!("{:?}", fields(&body[..len])),
            b'Z' => break,
            _ => {}
        }
    }
    let took = start.elapsed();
    peak = peak.max(rss_kib(pid));
    let after = rss_kib(pid);
    eprintln!(
        "large_result_memory_bounded: {rows} rows, {} MiB in {took:.1?}; causeway RSS before {before} KiB, peak {peak} KiB (+{} KiB), after {after} KiB",
        bytes / MIB,
        peak - before
    );
    assert_eq!(rows, 1024);
    assert!(bytes > 1024 * MIB);
    assert!(
        peak - before < RSS_BOUND_KIB,
        "RSS grew {} KiB",
        peak - before
    );
    assert_eq!(c.simple("SELECT 'after'").await.0, vec!["after"]);
    cw.stop().await;
}

/// Size of each large statement in `large_statements_memory_bounded`.
const BIG: usize = 64 * MIB as usize;

/// Client `n` sends one 64 MiB statement in one write: a named Parse (with
/// Bind/Execute/Sync) or a simple Query. Returns its one value.
async fn big_statement(cw: &Cw, n: i32, simple: bool) -> String {
    let mut c = Raw::login(cw).await;
    let pad = "x".repeat(BIG);
    let msg = if simple {
        query(&format!("SELECT 1 + {n} -- {pad}"))
    } else {
        [
            parse("big", &format!("SELECT $1::int + {n} -- {pad}"), &[]),
            bind("", "big", &[Some("1")]),
            execute("", 0),
            sync(),
        ]
        .concat()
    };
    drop(pad);
    c.send(&msg).await;
    drop(msg);
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs), Vec::<String>::new());
    data(&msgs).concat()
}

/// Peak VmRSS of `pid` (KiB), sampled until `stop` is set.
fn sample_peak(pid: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut peak = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        peak = peak.max(rss_kib(pid));
        // sleep-ok: sampling interval of an RSS sampler, not a wait
        std::thread::sleep(Duration::from_millis(5));
    }
    peak.max(rss_kib(pid))
}

/// Large statements from several clients at once (issue 12): Causeway
/// forwards them as they arrive instead of holding each whole, so its
/// memory stays far below their sum; they run with the right results,
/// another client's queries go on meanwhile, and memory is back down once
/// they leave. `simple`: which clients send a Query rather than a Parse.
async fn large_statements(cw: &Cw, simple: &[bool], label: &str) {
    let pid = cw.pid();
    let mut small = Raw::login(cw).await;
    small.simple("SELECT 1").await;
    let before = rss_kib(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || sample_peak(pid, stop))
    };
    // Another client's queries meanwhile.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let other = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(small.simple("SELECT 'small'").await.0, vec!["small"]);
                n += 1;
            }
            (n, small)
        })
    };
    let results = futures_util::future::join_all(
        simple
            .iter()
            .enumerate()
            .map(|(n, s)| big_statement(cw, n as i32, *s)),
    )
    .await;
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    let (during, mut small) = other.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let want: Vec<String> = (0..simple.len()).map(|n| (n + 1).to_string()).collect();
    assert_eq!(results, want);
    let sent = (simple.len() * BIG) as u64 / MIB;
    eprintln!(
        "{label}: {} clients x {} MiB ({sent} MiB); causeway RSS before {before} KiB, peak {peak} KiB (+{} KiB); {during} small queries meanwhile",
        simple.len(),
        BIG as u64 / MIB,
        peak.saturating_sub(before)
    );
    assert!(
        peak.saturating_sub(before) < RSS_BOUND_KIB,
        "RSS grew {} KiB while {sent} MiB of statements went through",
        peak - before
    );
    assert!(
        during > 0,
        "the small client was stuck behind the large ones"
    );
    // The large clients have left: what they used is given back.
    eventually(T, "RSS back down", || async {
        rss_kib(pid) < before + 16 * 1024
    })
    .await;
    assert_eq!(small.simple("SELECT 'after'").await.0, vec!["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_statements_memory_bounded() {
    // Transaction mode, prepared statements tracked: four named Parses.
    let cw = causeway("transaction", 6).await;
    large_statements(&cw, &[false; 4], "large_parse_transaction").await;
    cw.stop().await;
    // With replicas the unit is planned before routing: large Queries and
    // Parses go to the primary unread.
    let cw = causeway_split(6).await;
    large_statements(&cw, &[true, false, true, false], "large_split").await;
    cw.stop().await;
}

// ----------------------------------------------------- notices and NOTIFY

/// Session mode: notifications reach an idle listener (no query running),
/// in order, with their payloads; notices and warnings reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_and_notices_session() {
    let cw = causeway("session", 4).await;
    let (listener, mut conn) = within(
        T,
        "connect",
        tokio_postgres::connect(&cw.conn_str("app", None, "app"), NoTls),
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            let _ = tx.send(m);
        }
    });
    listener.batch_execute("LISTEN fid_ch").await.unwrap();
    let sender = cw.connect("app", None, "app").await.unwrap();
    sender
        .batch_execute("NOTIFY fid_ch, 'one'; SELECT pg_notify('fid_ch', 'two')")
        .await
        .unwrap();
    sender
        .batch_execute(
            "BEGIN; NOTIFY fid_ch, 'three'; COMMIT; BEGIN; NOTIFY fid_ch, 'lost'; ROLLBACK",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match within(Duration::from_secs(10), "notification", rx.recv()).await {
            Some(AsyncMessage::Notification(n)) => {
                assert_eq!(n.channel(), "fid_ch");
                got.push(n.payload().to_string());
            }
            Some(_) => {}
            None => panic!("listener connection ended"),
        }
    }
    assert_eq!(got, ["one", "two", "three"]);
    // Notices and warnings, in order.
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'n1'; RAISE WARNING 'w2'; END $$")
        .await
        .unwrap();
    let mut notes = Vec::new();
    while notes.len() < 2 {
        if let Some(AsyncMessage::Notice(n)) =
            within(Duration::from_secs(10), "notice", rx.recv()).await
        {
            notes.push(format!("{}:{}", n.severity(), n.message()));
        }
    }
    assert_eq!(notes, ["NOTICE:n1", "WARNING:w2"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "the rolled-back NOTIFY was delivered"
    );
    cw.stop().await;
}

/// Transaction mode: LISTEN runs, but notifications are not delivered to
/// a client that has no server attached (documented), and never to a
/// different client: the connection that ran LISTEN is closed at release
/// instead of going back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_transaction_mode() {
    let cw = causeway("transaction", 1).await;
    let mut a = Raw::login(&cw).await;
    let (pid_a, _) = a.simple("LISTEN fid_tx_ch; SELECT pg_backend_pid()").await;
    // Another client of the same one-connection pool sends NOTIFY: it must
    // not receive A's notification (it never listened).
    let mut b = Raw::login(&cw).await;
    b.send(&query("NOTIFY fid_tx_ch, 'x'; SELECT pg_backend_pid()"))
        .await;
    let msgs = b.until_ready().await;
    assert!(
        !msgs.iter().any(|(t, _)| *t == b'A'),
        "client B received a notification for a channel only A listened on: {}",
        tags(&msgs)
    );
    let pid_b = data(&msgs);
    eprintln!("LISTEN ran on backend {pid_a:?}; the next client got {pid_b:?}");
    assert_ne!(
        Some(&pid_a[0]),
        pid_b.first(),
        "the listening backend was reused"
    );
    b.send(&query("SELECT pg_sleep(0.2); NOTIFY fid_tx_ch, 'y'"))
        .await;
    let msgs = b.until_ready().await;
    assert!(!msgs.iter().any(|(t, _)| *t == b'A'), "{}", tags(&msgs));
    // A still works (on whatever server it gets).
    assert_eq!(a.simple("SELECT 'a'").await.0, vec!["a"]);
    cw.stop().await;
}

// ------------------------------------------------ FunctionCall, large objects

/// psql's \lo_import / \lo_export (libpq large objects over FunctionCall)
/// round-trip a 3 MiB file; raw FunctionCall of int4pl 20 times in a row.
async fn function_calls(cw: &Cw) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    let blob: Vec<u8> = (0..3 * MIB as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&input, &blob).unwrap();
    let conn = format!(
        "host=127.0.0.1 port={} user=app dbname=app sslmode=disable",
        cw.port()
    );
    let mut cmd = libpq_cmd("psql");
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &conn, "-c"])
        .arg(format!("\\lo_import {}", input.display()));
    let out = run_cmd(cmd, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let oid: u32 = text(&out.stdout)
        .trim()
        .strip_prefix("lo_import ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("lo_import output: {}", text(&out.stdout)));
    let mut cmd = libpq_cmd("psql");
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &conn, "-c"])
        .arg(format!("\\lo_export {oid} {}", output.display()))
        .args(["-c", &format!("\\lo_unlink {oid}")]);
    let out = run_cmd(cmd, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = std::fs::read(&output).unwrap();
    assert!(
        back == blob,
        "large object differs ({} bytes back)",
        back.len()
    );

    let mut c = Raw::login(cw).await;
    let (oid, _) = c.simple("SELECT 'int4pl'::regproc::oid").await;
    let oid: u32 = oid[0].parse().unwrap();
    for i in 0..20 {
        c.send(&function_call(oid, &[i, 1000])).await;
        let msgs = c.until_ready().await;
        assert_eq!(tags(&msgs), "VZ");
        let v = &msgs[0].1;
        assert_eq!(i32::from_be_bytes(v[..4].try_into().unwrap()), 4);
        assert_eq!(i32::from_be_bytes(v[4..8].try_into().unwrap()), i + 1000);
        assert_eq!(status(&msgs), b'I');
        assert_eq!(
            c.simple(&format!("SELECT {i}")).await.0,
            vec![i.to_string()]
        );
    }
    // A failing call: one error, then ReadyForQuery.
    c.send(&function_call(oid, &[i32::MAX, 1])).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(errors(&msgs), vec!["22003"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_session() {
    let cw = causeway("session", 2).await;
    function_calls(&cw).await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_transaction() {
    let cw = causeway("transaction", 2).await;
    function_calls(&cw).await;
    cw.stop().await;
}

// ------------------------------------------- empty and multi-statement queries

async fn empty_and_multi(cw: &Cw, table: &str) {
    let mut c = Raw::login(cw).await;
    for q in ["", ";", "  -- only a comment"] {
        c.send(&query(q)).await;
        let msgs = c.until_ready().await;
        assert_eq!(tags(&msgs), "IZ", "simple query {q:?}");
    }
    let mut batch = pbe("", &[]);
    batch.extend(sync());
    c.send(&batch).await;
    assert_eq!(tags(&c.until_ready().await), "12IZ", "extended empty query");

    c.send(&query("SELECT 1; SELECT 2, 3; SELECT 'x'")).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "TDCTDCTDCZ");
    assert_eq!(data(&msgs), vec!["1", "2", "x"]);

    // One implicit transaction: an error in the last statement undoes the first.
    c.simple(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
    ))
    .await;
    c.send(&query(&format!(
        "INSERT INTO {table} VALUES (1); SELECT 1/0; INSERT INTO {table} VALUES (2)"
    )))
    .await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "CEZ");
    assert_eq!(status(&msgs), b'I');
    assert_eq!(
        c.simple(&format!("SELECT count(*) FROM {table}")).await.0,
        vec!["0"]
    );
    c.simple(&format!("DROP TABLE {table}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_multi_statement_all_modes() {
    for (mode, table) in [
        ("session", "fid_multi_s"),
        ("transaction", "fid_multi_t"),
        ("statement", "fid_multi_st"),
    ] {
        let cw = causeway(mode, 2).await;
        empty_and_multi(&cw, table).await;
        cw.stop().await;
    }
}

/// Transaction mode: a multi-statement query that leaves a transaction
/// open keeps its server for the next query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_opening_transaction_keeps_server() {
    let cw = causeway("transaction", 3).await;
    let mut c = Raw::login(&cw).await;
    // Keep the other connections busy so a switch would be visible.
    let (pid, st) = c.simple("BEGIN; SELECT pg_backend_pid()").await;
    assert_eq!(st, b'T');
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut o = Raw::login(&cw).await;
        o.simple("BEGIN; SELECT 1").await;
        others.push(o);
    }
    let (pid2, st) = c.simple("SELECT pg_backend_pid(); COMMIT").await;
    assert_eq!(pid, pid2);
    assert_eq!(st, b'I');
    cw.stop().await;
}

// ------------------------------------------------------- ParameterStatus

/// SET of a reported parameter sends ParameterStatus before
/// ReadyForQuery; RESET sends it back; in session and transaction mode.
async fn parameter_status(cw: &Cw) {
    let mut c = Raw::login(cw).await;
    for (sql, name, value) in [
        (
            "SET application_name = 'fid_app'",
            "application_name",
            "fid_app",
        ),
        ("SET TimeZone = 'Asia/Tokyo'", "TimeZone", "Asia/Tokyo"),
        ("SET DateStyle = 'German'", "DateStyle", "German, DMY"),
        ("RESET application_name", "application_name", ""),
    ] {
        c.send(&query(sql)).await;
        let msgs = c.until_ready().await;
        let ps: Vec<(String, String)> = msgs
            .iter()
            .filter(|(t, _)| *t == b'S')
            .map(|(_, b)| {
                let mut it = b.split(|x| *x == 0);
                (
                    String::from_utf8_lossy(it.next().unwrap()).into_owned(),
                    String::from_utf8_lossy(it.next().unwrap()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            ps,
            vec![(name.to_string(), value.to_string())],
            "{sql}: {}",
            tags(&msgs)
        );
        // PostgreSQL sends it after CommandComplete.
        assert_eq!(tags_all(&msgs), "CSZ", "{sql}");
    }
    assert_eq!(c.simple("SHOW TimeZone").await.0, vec!["Asia/Tokyo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_status_session() {
    let cw = causeway("session", 2).await;
    parameter_status(&cw).await;
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_status_transaction() {
    let cw = causeway("transaction", 2).await;
    parameter_status(&cw).await;
    cw.stop().await;
}

// ------------------------------------------------- startup: versions, replication

/// A 3.2 StartupMessage (and a `_pq_.` option) is answered with
/// NegotiateProtocolVersion (3.0, option listed) before authentication;
/// the session is 3.0 with a 4-byte cancel key, which cancels (57014).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_2_negotiated_down() {
    let cw = causeway("transaction", 2).await;
    let mut c = Raw::login_with(&cw, V3_2, &[("_pq_.fid_test", "1")]).await;
    let (tag, body) = &c.login[0];
    assert_eq!(*tag, b'v', "first message: {}", tags(&c.login));
    assert_eq!(
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        0,
        "newest minor"
    );
    assert_eq!(i32::from_be_bytes(body[4..8].try_into().unwrap()), 1);
    assert_eq!(&body[8..], b"_pq_.fid_test\0");
    assert_eq!(c.key.1.len(), 4, "cancel key length in a 3.0 session");
    assert_eq!(c.simple("SELECT 42").await.0, vec!["42"]);

    // Protocol 2 and 4.0 are refused as PostgreSQL 15 refuses them: 4.0
    // with FATAL 0A000, 2.0 with a protocol-2 error text.
    for version in [0x0002_0000, 0x0004_0000] {
        let mut s = Raw::open(&cw).await;
        s.write_all(&startup(version, &[("user", "app"), ("database", "app")]))
            .await
            .unwrap();
        let mut reply = Vec::new();
        within(
            T,
            "reply to an unsupported version",
            s.read_to_end(&mut reply),
        )
        .await
        .unwrap();
        let major = version >> 16;
        let msg = format!("unsupported frontend protocol {major}.0: server supports 3.0 to 3.0");
        if major == 2 {
            assert_eq!(text(&reply), format!("EFATAL:  {msg}\n\0"));
        } else {
            assert_eq!(reply[0], b'E', "{version:#x}");
            assert_eq!(field(&reply[5..], b'C'), "0A000");
            assert_eq!(field(&reply[5..], b'M'), msg);
        }
    }

    // Plain 3.0: no NegotiateProtocolVersion.
    let plain = Raw::login(&cw).await;
    assert!(!plain.login.iter().any(|(t, _)| *t == b'v'));

    // Cancel with the 3.0 key.
    c.send(&query("SELECT pg_sleep(10) AS cancel_3_0_key"))
        .await;
    until_running(
        &[cluster().await.primary()],
        "SELECT pg_sleep(10) AS cancel_3_0_key",
    )
    .await;
    let mut req = 16i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80877102i32.to_be_bytes());
    req.extend_from_slice(&c.key.0.to_be_bytes());
    req.extend_from_slice(&c.key.1);
    let start = Instant::now();
    let mut s = Raw::open(&cw).await;
    s.write_all(&req).await.unwrap();
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs), vec!["57014"], "{}", tags(&msgs));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(c.simple("SELECT 'alive'").await.0, vec!["alive"]);
    cw.stop().await;
}

/// replication=true/database startups are refused with 0A000 and the
/// connection closed; replication=false logs in. psql shows the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_connections_refused() {
    let cw = causeway("session", 2).await;
    for v in ["true", "database", "on", "1"] {
        let mut s = Raw::open(&cw).await;
        s.write_all(&startup(
            V3_0,
            &[("user", "app"), ("database", "app"), ("replication", v)],
        ))
        .await
        .unwrap();
        let mut c = Raw {
            s,
            key: (0, Vec::new()),
            login: Vec::new(),
        };
        let (tag, body) = c.recv().await.expect("an error before EOF");
        assert_eq!(tag, b'E', "replication={v}");
        assert_eq!(field(&body, b'C'), "0A000");
        assert_eq!(field(&body, b'S'), "FATAL");
        assert!(
            field(&body, b'M').contains("replication"),
            "{:?}",
            fields(&body)
        );
        assert!(
            c.recv().await.is_none(),
            "replication={v}: connection not closed"
        );
    }
    let mut ok = Raw::login_with(&cw, V3_0, &[("replication", "false")]).await;
    assert_eq!(ok.simple("SELECT 1").await.0, vec!["1"]);

    let mut cmd = libpq_cmd("psql");
    cmd.args([
        "-X",
        "-d",
        &format!(
            "host=127.0.0.1 port={} user=app dbname=app replication=database sslmode=disable",
            cw.port()
        ),
        "-c",
        "IDENTIFY_SYSTEM",
    ]);
    let out = run_cmd(cmd, Duration::from_secs(30)).await;
    assert!(!out.status.success());
    eprintln!("psql replication=database: {}", text(&out.stderr).trim());
    assert!(
        text(&out.stderr).contains("replication connections are not supported"),
        "{}",
        text(&out.stderr)
    );
    cw.stop().await;
}

/// Cancel in statement mode (session and transaction are in protocol.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_statement_mode() {
    let cw = causeway("statement", 2).await;
    let client = cw.connect("app", None, "app").await.unwrap();
    simple_one(&client, "SELECT 1").await.unwrap();
    let token = client.cancel_token();
    let q = client.simple_query("SELECT pg_sleep(10) AS cancel_statement_mode");
    let cancel = async {
        until_running(
            &[cluster().await.primary()],
            "SELECT pg_sleep(10) AS cancel_statement_mode",
        )
        .await;
        token.cancel_query(NoTls).await
    };
    let (res, sent) = within(T, "cancel", async { tokio::join!(q, cancel) }).await;
    sent.unwrap();
    let err = res.expect_err("not cancelled");
    assert_eq!(code(&err).as_deref(), Some("57014"));
    assert_eq!(simple_one(&client, "SELECT 2").await.unwrap(), "2");
    cw.stop().await;
}
