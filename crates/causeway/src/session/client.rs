//! The client side of a session: its socket, the bytes it sent that are
//! not yet forwarded, and a buffer for messages Causeway writes itself.

use std::net::SocketAddr;

use bytes::BytesMut;
use causeway_protocol::backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Bytes received and not yet consumed.
    pub buf: BytesMut,
    /// Messages Causeway builds (errors, welcome); flushed with `flush`.
    pub out: BytesMut,
}

impl Client {
    pub fn new(stream: TcpStream, peer: SocketAddr, buf_size: usize) -> Self {
        Client {
            stream,
            peer,
            buf: BytesMut::with_capacity(buf_size),
            out: BytesMut::with_capacity(512),
        }
    }

    /// Reads more bytes; Ok(0) = the client closed.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends an ErrorResponse (FATAL) and flushes; the caller then closes.
    pub async fn fatal(&mut self, code: &str, message: &str) {
        backend::write_error(&mut self.out, true, code, message);
        let _ = self.flush().await;
    }
}
