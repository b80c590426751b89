//! The client side of a session: its stream (TCP, unix socket or TLS), the
//! bytes it sent that are not yet forwarded, and a buffer for messages
//! Causeway writes itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use causeway_net::{PeerAddr, Stream};
use causeway_protocol::backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::poll_read_buf;

use crate::bufpool;

pub struct Client {
    pub stream: Stream,
    /// Shared with the client's entry in the registry (SHOW CLIENTS):
    /// one copy per client.
    pub peer: Arc<PeerAddr>,
    /// Bytes received and not yet consumed.
    pub buf: BytesMut,
    /// Messages Causeway builds (errors, welcome); flushed with `flush`.
    pub out: BytesMut,
}

impl Client {
    pub fn new(stream: Stream, peer: PeerAddr) -> Self {
        Client {
            stream,
            peer: Arc::new(peer),
            // Taken from the free list on the first read.
            buf: BytesMut::new(),
            // Taken when the client speaks, given back while it is idle.
            out: BytesMut::new(),
        }
    }

    /// Reads more bytes; Ok(0) = the client closed.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        self.ensure_room();
        self.stream.read_buf(&mut self.buf).await
    }

    /// After `readable()`: reads what is there without waiting.
    /// Ok(None) = nothing after all (spurious readiness).
    pub fn try_read_more(&mut self) -> std::io::Result<Option<usize>> {
        self.ensure_room();
        // Polled once rather than `try_read_buf`: tokio's poll_read treats a
        // short read as "socket drained" and clears the readiness, which
        // saves the pump a recv that would only say EAGAIN (one syscall per
        // transaction). Pending leaves a no-op waker, replaced by the next
        // real wait. With TLS, plaintext the TLS layer keeps after this read
        // makes the next `readable()` return at once (`Stream::readable`).
        let mut cx = Context::from_waker(Waker::noop());
        match poll_read_buf(Pin::new(&mut self.stream), &mut cx, &mut self.buf) {
            Poll::Ready(Ok(n)) => Ok(Some(n)),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }

    fn ensure_room(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf = bufpool::take();
        }
        if self.out.capacity() == 0 {
            self.out = bufpool::take_out();
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
    }

    /// Gives the (empty) buffers back to the free lists while idle.
    pub fn park_buffer(&mut self) {
        if self.buf.capacity() > 0 && self.buf.is_empty() {
            bufpool::give(std::mem::take(&mut self.buf));
        }
        if self.out.capacity() > 0 && self.out.is_empty() {
            bufpool::give_out(std::mem::take(&mut self.out));
        }
    }

    /// Writes `out` and flushes it through the TLS layer, if any.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.flush().await
    }

    /// Sends an ErrorResponse (FATAL) and flushes; the caller then closes.
    pub async fn fatal(&mut self, code: &str, message: &str) {
        backend::write_error(&mut self.out, true, code, message);
        let _ = self.flush().await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.buf.clear();
        self.out.clear();
        self.park_buffer();
    }
}
