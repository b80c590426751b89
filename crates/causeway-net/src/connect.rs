//! Opening a connection to a PostgreSQL server: a unix socket when the
//! host is a directory (`/run/postgresql`), else TCP, then TLS as the
//! database's server_tls_sslmode says.

use std::net::SocketAddr;

use tokio::net::{TcpStream, UnixStream};

use crate::server_tls::{NegotiateError, ServerTls};
use crate::stream::{unix_socket_path, PeerAddr, Stream};

/// An open connection, before the StartupMessage.
pub struct Connected {
    pub stream: Stream,
    pub peer: PeerAddr,
    pub local: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be opened.
    #[error("{0}")]
    Connect(std::io::Error),
    /// TLS negotiation failed (or the server refused TLS that is required).
    #[error("{0}")]
    Tls(String),
}

/// Whether `host` names a unix socket directory (as libpq: an absolute path).
pub fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

pub async fn connect(
    host: &str,
    port: u16,
    tls: &ServerTls,
    keepalive: bool,
) -> Result<Connected, ConnectError> {
    if is_socket_dir(host) {
        // As libpq and PgBouncer: no TLS over a unix socket.
        let path = unix_socket_path(host, port);
        let s = UnixStream::connect(&path)
            .await
            .map_err(ConnectError::Connect)?;
        return Ok(Connected {
            stream: Stream::Unix(s),
            peer: PeerAddr::Unix { path, port },
            local: None,
        });
    }
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(ConnectError::Connect)?;
    tcp.set_nodelay(true).map_err(ConnectError::Connect)?;
    if keepalive {
        let _ = socket2::SockRef::from(&tcp).set_keepalive(true);
    }
    let peer = tcp.peer_addr().map_err(ConnectError::Connect)?;
    let local = tcp.local_addr().ok();
    let stream = tls.negotiate(tcp, host).await.map_err(|e| match e {
        NegotiateError::Io(e) => ConnectError::Connect(e),
        NegotiateError::Tls(m) => ConnectError::Tls(m),
    })?;
    Ok(Connected {
        stream,
        peer: PeerAddr::Tcp(peer),
        local,
    })
}
