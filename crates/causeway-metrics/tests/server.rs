//! Starts the endpoint on 127.0.0.1:0 and talks raw HTTP/1.1 to it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use causeway_metrics::{serve, Format, Snapshot, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[derive(Default)]
struct TestSource {
    ready: AtomicBool,
    panic: AtomicBool,
    scrapes: AtomicUsize,
}

impl Source for TestSource {
    fn snapshot(&self) -> Snapshot {
        self.scrapes.fetch_add(1, Ordering::SeqCst);
        if self.panic.load(Ordering::SeqCst) {
            panic!("test source panics on purpose");
        }
        common::filled_snapshot()
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

struct Server {
    addr: std::net::SocketAddr,
    source: Arc<TestSource>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Arc::new(TestSource::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, source.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        source,
        stop: Some(stop),
        task,
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a fresh connection and reads until the server closes it.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

fn parse(resp: &str) -> Reply {
    let (head, body) = resp.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    parse(&exchange(addr, raw.as_bytes()).await)
}

#[tokio::test]
async fn routes() {
    let mut srv = start().await;
    let addr = srv.addr;

    // /metrics without Accept: classic text format.
    let r = request(addr, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(Format::TEXT_CONTENT_TYPE));
    assert!(
        r.body.contains("\n# TYPE causeway_queries_total counter\n"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("\ncauseway_queries_total{database=\"app\"} 3\n"));
    assert!(!r.body.contains("# EOF"));

    // Prometheus' Accept header: OpenMetrics.
    let r = request(
        addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some(Format::OPENMETRICS_CONTENT_TYPE)
    );
    assert!(r.body.contains("\n# TYPE causeway_queries counter\n"));
    assert!(r.body.contains("\ncauseway_routing_decisions_total{database=\"app\",target=\"primary\",reason=\"write\"} 15\n"));
    assert!(r.body.ends_with("# EOF\n"));
    // Query strings do not matter.
    assert_eq!(request(addr, "GET", "/metrics?x=1", "").await.status, 200);
    assert_eq!(srv.source.scrapes.load(Ordering::SeqCst), 3);

    // HEAD: headers, no body.
    let r = request(addr, "HEAD", "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    let r = request(addr, "GET", "/health", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let r = request(addr, "GET", "/ready", "").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready\n"));
    srv.source.ready.store(true, Ordering::SeqCst);
    let r = request(addr, "GET", "/ready", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    srv.source.ready.store(false, Ordering::SeqCst);
    assert_eq!(request(addr, "GET", "/ready", "").await.status, 503);
    // Health does not depend on readiness.
    assert_eq!(request(addr, "GET", "/health", "").await.status, 200);

    for path in ["/", "/metric", "/metrics/", "/healthz", "/../etc/passwd"] {
        let r = request(addr, "GET", path, "").await;
        assert_eq!(r.status, 404, "{path}");
    }

    let r = request(addr, "POST", "/metrics", "Content-Length: 5\r\n").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    srv.stop.take().unwrap().send(()).unwrap();
    timeout(Duration::from_secs(10), srv.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn keep_alive_serves_several_requests() {
    let srv = start().await;
    let raw = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let out = exchange(srv.addr, raw).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert_eq!(out.matches("HTTP/1.1 503").count(), 1, "{out}");
}

#[tokio::test]
async fn panicking_source_is_a_500_not_a_crash() {
    let srv = start().await;
    srv.source.panic.store(true, Ordering::SeqCst);
    let r = request(srv.addr, "GET", "/metrics", "").await;
    assert_eq!(r.status, 500);
    srv.source.panic.store(false, Ordering::SeqCst);
    assert_eq!(request(srv.addr, "GET", "/metrics", "").await.status, 200);
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let srv = start().await;
    let big = format!("X-Junk: {}\r\n", "a".repeat(64 * 1024));
    let raw = format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{big}\r\n");
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    // The server may close before we finish writing.
    let _ = s.write_all(raw.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("connection closed within 10 s");
    let out = String::from_utf8_lossy(&buf);
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 431"),
        "unexpected reply: {out}"
    );
    assert_eq!(srv.source.scrapes.load(Ordering::SeqCst), 0);
    // Still serving.
    assert_eq!(request(srv.addr, "GET", "/health", "").await.status, 200);
}

/// Opens `n` connections that never send a byte.
async fn idle_sockets(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[tokio::test]
async fn idle_sockets_do_not_starve_health() {
    // 200 silent sockets (a port scanner, a stuck load balancer): the
    // liveness and readiness probes still get their answer.
    let srv = start().await;
    let _idle = idle_sockets(srv.addr, 200).await;
    let r = request(srv.addr, "GET", "/health", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(request(srv.addr, "GET", "/ready", "").await.status, 503);
}

#[tokio::test]
async fn beyond_the_limit_the_oldest_connection_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Arc::new(TestSource::default());
    let limits = causeway_metrics::Limits {
        max_connections: 16,
        // Longer than the test: only the limit can close the idle sockets.
        header_read_timeout: Duration::from_secs(3600),
    };
    tokio::spawn(causeway_metrics::serve_with(
        listener,
        source,
        std::future::pending(),
        limits,
    ));
    let mut idle = idle_sockets(addr, 200).await;
    let r = request(addr, "GET", "/health", "").await;
    assert_eq!(r.status, 200);
    // The first idle socket was closed by the server to make room.
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(30), idle[0].read(&mut buf))
        .await
        .expect("oldest idle socket closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test]
async fn silent_socket_is_closed_after_the_header_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = causeway_metrics::Limits {
        max_connections: 16,
        header_read_timeout: Duration::from_millis(200),
    };
    tokio::spawn(causeway_metrics::serve_with(
        listener,
        Arc::new(TestSource::default()),
        std::future::pending(),
        limits,
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("closed by the server")
        .ok();
    assert!(buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"));
}
