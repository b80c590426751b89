//! The probes' TLS: a tokio-postgres connector over rustls that uses the
//! database's server_tls_* settings (the same [`ServerTls`] handle as the
//! pools, so a reload's new files reach the probes too), and hands
//! tokio-postgres the tls-server-end-point data for SCRAM channel binding.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use causeway_net::server_tls::NegotiateError;
use causeway_net::tokio_rustls::client::TlsStream;
use causeway_net::{ServerTls, SslMode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

/// tokio-postgres' sslmode for a server: libpq's prefer/require (certificate
/// checks are in the rustls configuration). A unix socket never does TLS.
pub(crate) fn pg_ssl_mode(tls: &ServerTls, host: &str) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as Pg;
    if causeway_net::is_socket_dir(host) {
        return Pg::Disable;
    }
    match tls.mode() {
        SslMode::Disable => Pg::Disable,
        SslMode::Allow | SslMode::Prefer => Pg::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
    }
}

#[derive(Clone)]
pub(crate) struct MakeRustls(pub ServerTls);

pub(crate) struct ConnectRustls {
    tls: ServerTls,
    host: String,
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = ConnectRustls;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<ConnectRustls, io::Error> {
        Ok(ConnectRustls {
            tls: self.0.clone(),
            host: domain.to_string(),
        })
    }
}

impl TlsConnect<Socket> for ConnectRustls {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self
                .tls
                .current()
                .ok_or_else(|| io::Error::other("server TLS is disabled"))?;
            let (io, end_point) = self
                .tls
                .handshake(config, stream, &self.host)
                .await
                .map_err(|e| match e {
                    NegotiateError::Io(e) => e,
                    NegotiateError::Tls(m) => io::Error::other(m),
                })?;
            Ok(RustlsStream {
                io: Box::new(io),
                end_point: end_point.map(|e| e.0),
            })
        })
    }
}

pub(crate) struct RustlsStream {
    io: Box<TlsStream<Socket>>,
    end_point: Option<Vec<u8>>,
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(d) => ChannelBinding::tls_server_end_point(d.clone()),
            None => ChannelBinding::none(),
        }
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}
