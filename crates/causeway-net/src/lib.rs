//! Causeway's network surface, shared by the client side, the server side
//! and the monitor: one [`Stream`] type over TCP, unix sockets and TLS
//! (rustls, no OpenSSL); the `client_tls_*` and `server_tls_*` settings
//! loaded into rustls configurations that a reload can replace; listen
//! addresses and the unix socket; pg_hba.conf rules; tls-server-end-point
//! channel-binding data; handshake counters.

pub mod client_tls;
pub mod connect;
mod der;
pub mod endpoint;
pub mod hba;
pub mod listen;
pub mod server_tls;
pub mod stats;
pub mod stream;
mod tls_common;

pub use client_tls::{ClientTls, ClientTlsSettings, HandshakeError, ALPN_POSTGRESQL};
pub use connect::{connect, is_socket_dir, ConnectError, Connected};
pub use der::subject_common_name;
pub use endpoint::{EndPoint, TLS_SERVER_END_POINT};
pub use hba::Hba;
pub use listen::{bind_tcp, bind_unix, listen_addrs, Listener};
pub use server_tls::{ServerTls, ServerTlsSettings};
pub use stats::HANDSHAKES;
pub use stream::{unix_socket_path, PeerAddr, Stream};
pub use tls_common::{protocol_versions, SslMode, TlsError};
/// For callers that name TLS stream types (the monitor's connector).
pub use tokio_rustls;

/// The crypto provider everything here uses (ring), for callers that build
/// their own rustls configuration.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(tls_common::ring_provider())
}
