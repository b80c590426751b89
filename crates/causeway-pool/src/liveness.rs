//! Is an idle server connection still alive? An idle PostgreSQL backend
//! never speaks on its own: if its socket is readable, the backend was
//! terminated (`pg_terminate_backend`, `DROP DATABASE ... WITH (FORCE)`, a
//! server shutdown sends FATAL 57P01 and closes) or something is wrong.
//! Either way the connection must not be lent.
//!
//! Two checks: each pool's watcher task is woken by the reactor when any
//! idle socket becomes readable and drops that connection at once
//! ([`watch`]); and when a connection is lent, its readiness is checked
//! again ([`gone`]), with a real `recv(MSG_PEEK)` when it has been idle long
//! enough that the reactor's view may lag.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use causeway_net::Stream;

use crate::server::ServerConn;

/// Lending a connection idle at least this long costs one `recv` syscall
/// (MSG_PEEK); a recently used one relies on the reactor's readiness.
pub(crate) const PEEK_AFTER: Duration = Duration::from_secs(1);

/// True when the peer has closed the connection or sent something (an
/// idle backend only speaks to say it is going away). Registers `cx`'s
/// waker for the socket's next read readiness when it returns false. For
/// TLS the socket under it is checked: an idle TLS backend sends nothing
/// either.
pub(crate) fn gone_or_register(stream: &Stream, cx: &mut Context<'_>) -> bool {
    match stream {
        Stream::Unix(s) => probe(|cx| s.poll_read_ready(cx), |b| s.try_read(b), cx),
        other => match other.tcp() {
            Some(s) => probe(|cx| s.poll_read_ready(cx), |b| s.try_read(b), cx),
            None => true,
        },
    }
}

fn probe(
    poll_ready: impl Fn(&mut Context<'_>) -> Poll<std::io::Result<()>>,
    try_read: impl Fn(&mut [u8]) -> std::io::Result<usize>,
    cx: &mut Context<'_>,
) -> bool {
    // Two rounds: a stale readiness is cleared by the first (WouldBlock),
    // the second registers the waker.
    for _ in 0..2 {
        match poll_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => match try_read(&mut [0u8; 1]) {
                // EOF, or bytes from an idle backend (its FATAL error).
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return true,
            },
        }
    }
    false
}

/// The check made when a connection is lent (idle for `idle_for`): the
/// reactor's readiness, and after [`PEEK_AFTER`] of idleness a
/// non-blocking peek at the socket.
pub(crate) fn gone(conn: &ServerConn, idle_for: Duration) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    if gone_or_register(&conn.stream, &mut cx) {
        return true;
    }
    if idle_for < PEEK_AFTER {
        return false;
    }
    let mut b = [MaybeUninit::<u8>::uninit(); 1];
    let peeked = match &conn.stream {
        Stream::Unix(s) => socket2::SockRef::from(s).peek(&mut b),
        other => match other.tcp() {
            Some(s) => socket2::SockRef::from(s).peek(&mut b),
            None => return true,
        },
    };
    match peeked {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The pool's watcher: woken whenever an idle connection's socket becomes
/// readable, it runs `sweep` (which drops the connections whose backend
/// went away and registers the waker on the others). Ends when `sweep`
/// returns false (the pool is closed or gone).
pub(crate) async fn watch(mut sweep: impl FnMut(&mut Context<'_>) -> bool) {
    poll_fn(|cx| {
        if sweep(cx) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (Stream::Tcp(a), b)
    }

    /// Waits (bounded) until the reactor has seen the socket readable.
    async fn readable(s: &Stream) {
        let s = s.tcp().expect("tcp");
        tokio::time::timeout(Duration::from_secs(10), s.readable())
            .await
            .expect("readable")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_socket_is_alive_closed_or_talking_one_is_gone() {
        let mut cx = Context::from_waker(Waker::noop());
        let (ours, theirs) = pair().await;
        assert!(!gone_or_register(&ours, &mut cx), "quiet peer");
        drop(theirs);
        readable(&ours).await;
        assert!(gone_or_register(&ours, &mut cx), "peer closed");

        let (ours, mut theirs) = pair().await;
        theirs.write_all(b"E").await.unwrap();
        readable(&ours).await;
        assert!(gone_or_register(&ours, &mut cx), "an idle backend spoke");
    }
}
