//! Forwarding a client's CancelRequest to the server running its query.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use causeway_net::PeerAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

/// A server connection's cancel key. While a cancel is in flight the
/// connection is not handed to another client, so a late cancel can only
/// ever hit the query it was meant for (or nothing).
#[derive(Debug)]
pub struct CancelTarget {
    pub addr: PeerAddr,
    pub pid: i32,
    pub secret: Vec<u8>,
    in_flight: AtomicU32,
    done: Notify,
}

impl CancelTarget {
    pub fn new(addr: PeerAddr, pid: i32, secret: Vec<u8>) -> Self {
        CancelTarget {
            addr,
            pid,
            secret,
            in_flight: AtomicU32::new(0),
            done: Notify::new(),
        }
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Waits until no cancel is in flight.
    pub async fn settled(&self) {
        loop {
            let notified = self.done.notified();
            if !self.in_flight() {
                return;
            }
            notified.await;
        }
    }
}

/// Opens a new connection to the server and sends the cancel; the server
/// closes it once the signal is delivered. In plain text even when the
/// session's connection uses TLS: PostgreSQL reads a CancelRequest before
/// any pg_hba.conf rule (`hostssl` included) applies, as libpq's PQcancel.
pub async fn forward_cancel(target: &CancelTarget) -> std::io::Result<()> {
    target.in_flight.fetch_add(1, Ordering::AcqRel);
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = BytesMut::with_capacity(16);
        causeway_protocol::frontend::write_cancel_request(&mut buf, target.pid, &target.secret);
        let mut s: causeway_net::Stream = match &target.addr {
            PeerAddr::Tcp(a) => TcpStream::connect(a).await?.into(),
            PeerAddr::Unix { path, .. } => UnixStream::connect(path).await?.into(),
        };
        s.write_all(&buf).await?;
        let mut sink = [0u8; 16];
        while s.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("cancel request timed out")));
    target.in_flight.fetch_sub(1, Ordering::AcqRel);
    target.done.notify_waiters();
    r
}
