//! A steady writer on the primary, so replicas have WAL to replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::Cluster;

/// Inserts a row on the primary every 50 ms until stopped or dropped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl Writer {
    /// Starts writing into `table` (created if missing) as the superuser.
    pub async fn start(c: &Cluster, table: &str) -> Writer {
        let p = c.primary();
        let (client, conn) = tokio_postgres::connect(&p.conn_str("postgres", None, "app"), NoTls)
            .await
            .expect("writer connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, pad text)"
            ))
            .await
            .expect("create writer table");
        let insert = format!("INSERT INTO {table} (pad) VALUES (repeat('x', 100))");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                client.execute(&insert, &[]).await.expect("writer insert");
                n += 1;
            }
            n
        });
        Writer {
            stop,
            task: Some(task),
        }
    }

    /// Stops and returns the number of rows written.
    pub async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(t) => t.await.expect("writer task"),
            None => 0,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `GET path` on a loopback HTTP port: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let status = out
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
