//! TLS towards clients (Causeway is the TLS server): PgBouncer's
//! `client_tls_*` settings, loaded into a rustls `ServerConfig`. A loaded
//! [`ClientTls`] is immutable; a reload builds a new one (or refuses, and
//! the old one stays), and each handshake uses the one current when it
//! starts, so established sessions keep their certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;

use crate::endpoint::EndPoint;
use crate::stats::{Outcome, Side, HANDSHAKES};
use crate::stream::{Stream, Tls};
use crate::tls_common::{err, protocol_versions, provider, read_certs, read_key, read_roots};
pub use crate::tls_common::{SslMode, TlsError};

/// The ALPN protocol of PostgreSQL 17's direct TLS negotiation.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// PgBouncer's `client_tls_*` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTlsSettings {
    pub sslmode: SslMode,
    pub key_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub protocols: String,
    pub ciphers: String,
}

/// The client-side TLS in force.
#[derive(Clone, Default)]
pub struct ClientTls {
    pub mode: SslMode,
    /// None when client_tls_sslmode = disable.
    loaded: Option<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Channel-binding data of our certificate.
    end_point: Option<EndPoint>,
    /// Client certificates are verified (client_tls_ca_file is set).
    verifies_clients: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientTls({}, loaded: {})",
            self.mode.as_str(),
            self.loaded.is_some()
        )
    }
}

impl ClientTls {
    /// Reads the key, certificate and CA files. Errors name the setting and
    /// the file.
    pub fn load(s: &ClientTlsSettings) -> Result<ClientTls, TlsError> {
        if s.sslmode == SslMode::Disable {
            return Ok(ClientTls::default());
        }
        let mode = s.sslmode.as_str();
        let (Some(key_file), Some(cert_file)) = (&s.key_file, &s.cert_file) else {
            return Err(err(format!(
                "client_tls_sslmode = {mode} needs client_tls_key_file and client_tls_cert_file"
            )));
        };
        let provider = provider("client_tls_ciphers", &s.ciphers)?;
        let versions = protocol_versions("client_tls_protocols", &s.protocols)?;
        let certs = read_certs("client_tls_cert_file", cert_file)?;
        let key = read_key("client_tls_key_file", key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| err(format!("client_tls_protocols: {e}")))?;
        let verifies_clients = s.ca_file.is_some();
        let builder = match &s.ca_file {
            Some(ca) => {
                let roots = Arc::new(read_roots("client_tls_ca_file", ca)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                // Below verify-ca a certificate is optional, but one that
                // is presented must be valid (as PgBouncer with a CA file).
                let v = if s.sslmode.verifies() {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                let v = v
                    .build()
                    .map_err(|e| err(format!("client_tls_ca_file {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(v)
            }
            None if s.sslmode.verifies() => {
                return Err(err(format!(
                "client_tls_sslmode = {mode} verifies client certificates: set client_tls_ca_file"
            )))
            }
            None => builder.with_no_client_auth(),
        };
        let end_point = EndPoint::of_certificate(&certs[0]);
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            err(format!(
                "client_tls_key_file {} does not fit client_tls_cert_file {}: {e}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ClientTls {
            mode: s.sslmode,
            loaded: Some(Loaded {
                acceptor: Arc::new(config).into(),
                end_point,
                verifies_clients,
            }),
        })
    }

    /// TLS is offered (an SSLRequest gets 'S').
    pub fn enabled(&self) -> bool {
        self.loaded.is_some()
    }

    /// Client certificates are checked against client_tls_ca_file.
    pub fn verifies_clients(&self) -> bool {
        self.loaded.as_ref().is_some_and(|l| l.verifies_clients)
    }

    /// Runs the handshake on `tcp`. `direct`: PostgreSQL 17's
    /// `sslnegotiation=direct` (no SSLRequest first), which must carry the
    /// `postgresql` ALPN protocol.
    pub async fn accept(&self, tcp: TcpStream, direct: bool) -> Result<Stream, HandshakeError> {
        let Some(l) = &self.loaded else {
            HANDSHAKES.count(Side::Client, Outcome::Disabled);
            return Err(HandshakeError(Outcome::Disabled, "TLS is disabled".into()));
        };
        let tls = l.acceptor.accept(tcp).await.map_err(|e| {
            let outcome = Outcome::of_io(&e);
            HANDSHAKES.count(Side::Client, outcome);
            HandshakeError(outcome, e.to_string())
        })?;
        if direct && tls.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
            HANDSHAKES.count(Side::Client, Outcome::NoAlpn);
            return Err(HandshakeError(
                Outcome::NoAlpn,
                "direct TLS connection without the \"postgresql\" ALPN protocol".into(),
            ));
        }
        HANDSHAKES.count(Side::Client, Outcome::Ok);
        Ok(Stream::TlsFromClient(Box::new(Tls {
            io: tls,
            end_point: l.end_point.clone(),
        })))
    }
}

/// A failed handshake: why (for the metrics) and what rustls said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS handshake failed: {1}")]
pub struct HandshakeError(pub Outcome, pub String);
