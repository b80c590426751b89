//! One byte stream to a client or a server, whatever carries it: TCP, a
//! unix socket, or TLS over TCP (rustls, as the accepting or the connecting
//! side). The plain variants cost one `match` over the tokio socket; the
//! TLS ones are boxed so the enum stays small.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::endpoint::EndPoint;

/// TLS accepted from a client (Causeway is the TLS server).
pub type TlsFromClient = tokio_rustls::server::TlsStream<TcpStream>;
/// TLS towards a server (Causeway is the TLS client).
pub type TlsToServer = tokio_rustls::client::TlsStream<TcpStream>;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    TlsFromClient(Box<Tls<TlsFromClient>>),
    TlsToServer(Box<Tls<TlsToServer>>),
    /// Left behind while the socket is handed to a TLS handshake; every
    /// operation fails.
    Detached,
}

/// A TLS stream with what the session needs to know about it.
pub struct Tls<S> {
    pub io: S,
    /// tls-server-end-point channel-binding data of the server certificate
    /// of this connection (None: its signature algorithm has no defined hash).
    pub end_point: Option<EndPoint>,
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::TlsFromClient(_) | Stream::TlsToServer(_))
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// Local TCP address (None for unix sockets).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::TlsFromClient(t) => t.io.get_ref().0.local_addr().ok(),
            Stream::TlsToServer(t) => t.io.get_ref().0.local_addr().ok(),
            Stream::Unix(_) | Stream::Detached => None,
        }
    }

    /// The tls-server-end-point data of this TLS connection.
    pub fn end_point(&self) -> Option<&EndPoint> {
        match self {
            Stream::TlsFromClient(t) => t.end_point.as_ref(),
            Stream::TlsToServer(t) => t.end_point.as_ref(),
            _ => None,
        }
    }

    /// The client's certificate (DER), when it sent one; it has been
    /// verified against client_tls_ca_file by then.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::TlsFromClient(t) => {
                t.io.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref())
            }
            _ => None,
        }
    }

    /// The OS user name of the process at the other end of a unix socket
    /// (hba `peer`).
    pub fn unix_peer_user(&self) -> Option<String> {
        let Stream::Unix(s) = self else {
            return None;
        };
        os_user_name(s.peer_cred().ok()?.uid())
    }

    /// What SHOW CLIENTS / SHOW SERVERS print in the `tls` column, e.g.
    /// `TLSv1.3/TLS13_AES_256_GCM_SHA384` (empty without TLS).
    pub fn tls_description(&self) -> String {
        let common: &rustls::CommonState = match self {
            Stream::TlsFromClient(t) => t.io.get_ref().1,
            Stream::TlsToServer(t) => t.io.get_ref().1,
            _ => return String::new(),
        };
        let version = match common.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        match common.negotiated_cipher_suite() {
            Some(s) => format!("{version}/{:?}", s.suite()),
            None => version.to_string(),
        }
    }

    /// Takes the TCP socket out for a TLS handshake (None if this is not a
    /// plain TCP stream; the stream is left unchanged then).
    pub fn take_tcp(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Stream::Detached) {
            Stream::Tcp(s) => Some(s),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The TCP socket under any TCP-based stream (for peek, keepalive...).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::TlsFromClient(t) => Some(t.io.get_ref().0),
            Stream::TlsToServer(t) => Some(t.io.get_ref().0),
            _ => None,
        }
    }

    /// Whether decrypted bytes are already waiting inside the TLS layer:
    /// the socket may then never become readable again for them, so a
    /// caller that waits for readiness must read first.
    pub fn has_buffered_read(&mut self) -> bool {
        fn pending<D: rustls::SideData>(c: &mut rustls::ConnectionCommon<D>) -> bool {
            // An error is "ready" too: the next read reports it.
            c.process_new_packets()
                .map_or(true, |s| s.plaintext_bytes_to_read() > 0)
        }
        match self {
            Stream::TlsFromClient(t) => pending(t.io.get_mut().1),
            Stream::TlsToServer(t) => pending(t.io.get_mut().1),
            _ => false,
        }
    }

    /// Waits until a read may make progress: bytes (or EOF) on the socket,
    /// or plaintext already buffered in the TLS layer.
    /// [`Stream::readable`] as a poll: no waiter state to store, so a
    /// future waiting on it (an idle client's) stays small.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_buffered_read() {
            return Poll::Ready(Ok(()));
        }
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::TlsFromClient(t) => t.io.get_ref().0.poll_read_ready(cx),
            Stream::TlsToServer(t) => t.io.get_ref().0.poll_read_ready(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    pub async fn readable(&mut self) -> io::Result<()> {
        if self.has_buffered_read() {
            return Ok(());
        }
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::TlsFromClient(t) => t.io.get_ref().0.readable().await,
            Stream::TlsToServer(t) => t.io.get_ref().0.readable().await,
            Stream::Detached => Err(detached()),
        }
    }
}

fn os_user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: zeroed passwd struct filled by getpwuid_r, which writes its
    // strings into `buf` (whose length we pass); `result` is null or
    // points at `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream handed to TLS")
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::TlsFromClient(t) => Pin::new(&mut t.io).poll_read(cx, buf),
            Stream::TlsToServer(t) => Pin::new(&mut t.io).poll_read(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Stream {
    /// With TLS the bytes may be accepted into the TLS layer before they
    /// reach the socket: callers must `poll_flush` until it is ready (the
    /// plain variants' flush returns at once).
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::TlsFromClient(t) => Pin::new(&mut t.io).poll_write(cx, buf),
            Stream::TlsToServer(t) => Pin::new(&mut t.io).poll_write(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(_) | Stream::Unix(_) => Poll::Ready(Ok(())),
            Stream::TlsFromClient(t) => Pin::new(&mut t.io).poll_flush(cx),
            Stream::TlsToServer(t) => Pin::new(&mut t.io).poll_flush(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::TlsFromClient(t) => Pin::new(&mut t.io).poll_shutdown(cx),
            Stream::TlsToServer(t) => Pin::new(&mut t.io).poll_shutdown(cx),
            Stream::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// Where a peer is, for logs, SHOW CLIENTS/SERVERS and hba rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    /// A unix socket: its path and the port in its name (`.s.PGSQL.<port>`).
    Unix {
        path: PathBuf,
        port: u16,
    },
}

impl PeerAddr {
    /// The IP address (None for unix sockets).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            PeerAddr::Tcp(a) => Some(a.ip()),
            PeerAddr::Unix { .. } => None,
        }
    }

    /// PgBouncer's `addr` column: the IP, or `unix`.
    pub fn host_text(&self) -> String {
        match self {
            PeerAddr::Tcp(a) => a.ip().to_string(),
            PeerAddr::Unix { .. } => "unix".into(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Tcp(a) => a.port(),
            PeerAddr::Unix { port, .. } => *port,
        }
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "{a}"),
            PeerAddr::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `<dir>/.s.PGSQL.<port>`, PostgreSQL's socket file name.
pub fn unix_socket_path(dir: &str, port: u16) -> PathBuf {
    std::path::Path::new(dir).join(format!(".s.PGSQL.{port}"))
}
