//! TLS towards PostgreSQL servers (Causeway is the TLS client): PgBouncer's
//! `server_tls_*` settings, per database. A [`ServerTls`] is a shared
//! handle: pools and the monitor keep it, and a reload swaps the rustls
//! configuration inside (new files for new connections; open connections
//! keep their session).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoint::EndPoint;
use crate::stats::{Outcome, Side, HANDSHAKES};
use crate::stream::{Stream, Tls};
use crate::tls_common::{
    err, protocol_versions, provider, read_certs, read_key, read_roots, system_roots,
};
pub use crate::tls_common::{SslMode, TlsError};

/// PgBouncer's `server_tls_*` settings, resolved for one database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ServerTlsSettings {
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub protocols: String,
    pub ciphers: String,
}

/// The server-side TLS of some databases. Cheap to clone; equal when the
/// settings are (whatever the files held when loaded).
#[derive(Clone, Default)]
pub struct ServerTls {
    settings: Arc<ServerTlsSettings>,
    config: Arc<RwLock<Option<Arc<rustls::ClientConfig>>>>,
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for ServerTls {}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerTls({})", self.settings.sslmode.as_str())
    }
}

/// How a server connection came to be: plain, or TLS.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tls(String),
}

impl ServerTls {
    /// Loads the files of `settings`.
    pub fn new(settings: ServerTlsSettings) -> Result<ServerTls, TlsError> {
        let config = build(&settings)?;
        Ok(ServerTls {
            settings: Arc::new(settings),
            config: Arc::new(RwLock::new(config)),
        })
    }

    pub fn settings(&self) -> &ServerTlsSettings {
        &self.settings
    }

    pub fn mode(&self) -> SslMode {
        self.settings.sslmode
    }

    /// Reads the files again (first step of a reload: nothing changes yet).
    pub fn prepare(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        build(&self.settings)
    }

    /// Puts a prepared configuration in force for new connections.
    pub fn commit(&self, config: Option<Arc<rustls::ClientConfig>>) {
        *self.config.write() = config;
    }

    /// Over a fresh TCP connection to `host`: SSLRequest and handshake as
    /// the sslmode says (plain when the server declines and TLS is only
    /// preferred).
    pub async fn negotiate(
        &self,
        mut tcp: TcpStream,
        host: &str,
    ) -> Result<Stream, NegotiateError> {
        let Some(config) = self.config.read().clone() else {
            return Ok(Stream::Tcp(tcp));
        };
        let mode = self.settings.sslmode;
        // SSLRequest: length 8, code 80877103.
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
        // Exactly one byte: anything the server sent after it would be
        // plaintext injected ahead of the TLS stream.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await?;
        match answer[0] {
            b'S' => {}
            b'N' if !mode.requires() => return Ok(Stream::Tcp(tcp)),
            b'N' => {
                HANDSHAKES.count(Side::Server, Outcome::ServerRefused);
                return Err(NegotiateError::Tls(format!(
                    "server does not support TLS and server_tls_sslmode = {}",
                    mode.as_str()
                )));
            }
            other => {
                HANDSHAKES.count(Side::Server, Outcome::Protocol);
                return Err(NegotiateError::Tls(format!(
                    "unexpected answer {:?} to SSLRequest",
                    other as char
                )));
            }
        }
        let (tls, end_point) = self.handshake(config, tcp, host).await?;
        Ok(Stream::TlsToServer(Box::new(Tls { io: tls, end_point })))
    }

    /// The TLS handshake alone, over any stream (the SSLRequest has been
    /// answered 'S'); counted in the handshake metrics. Also used by the
    /// monitor's tokio-postgres connector.
    pub async fn handshake<S>(
        &self,
        config: Arc<rustls::ClientConfig>,
        io: S,
        host: &str,
    ) -> Result<(tokio_rustls::client::TlsStream<S>, Option<EndPoint>), NegotiateError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = server_name(host, self.settings.sslmode)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| {
                HANDSHAKES.count(Side::Server, Outcome::of_io(&e));
                NegotiateError::Tls(format!("TLS handshake with the server failed: {e}"))
            })?;
        HANDSHAKES.count(Side::Server, Outcome::Ok);
        let end_point = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| EndPoint::of_certificate(c));
        Ok((tls, end_point))
    }

    /// The rustls configuration in force (the monitor's connector uses it).
    pub fn current(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.config.read().clone()
    }
}

/// The name checked against the certificate (verify-full) and sent as SNI.
pub fn server_name(host: &str, mode: SslMode) -> Result<ServerName<'static>, NegotiateError> {
    match ServerName::try_from(host.to_string()) {
        Ok(n) => Ok(n),
        Err(_) if mode != SslMode::VerifyFull => Ok(ServerName::try_from("postgres")
            .map_err(|e| NegotiateError::Tls(e.to_string()))?
            .to_owned()),
        Err(e) => Err(NegotiateError::Tls(format!(
            "server_tls_sslmode = verify-full: {host:?} is not a valid host name: {e}"
        ))),
    }
}

fn build(s: &ServerTlsSettings) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    if s.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let provider = provider("server_tls_ciphers", &s.ciphers)?;
    let versions = protocol_versions("server_tls_protocols", &s.protocols)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err(format!("server_tls_protocols: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.sslmode.verifies() {
        let roots = match &s.ca_file {
            Some(ca) => read_roots("server_tls_ca_file", ca)?,
            None => system_roots("server_tls_ca_file")?,
        };
        let full = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| err(format!("server_tls_ca_file: {e}")))?;
        if s.sslmode == SslMode::VerifyFull {
            full
        } else {
            Arc::new(ChainOnly(full))
        }
    } else {
        Arc::new(NoVerify(provider))
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&s.key_file, &s.cert_file) {
        (Some(key), Some(cert)) => builder
            .with_client_auth_cert(
                read_certs("server_tls_cert_file", cert)?,
                read_key("server_tls_key_file", key)?,
            )
            .map_err(|e| {
                err(format!(
                    "server_tls_key_file {} does not fit server_tls_cert_file {}: {e}",
                    key.display(),
                    cert.display()
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(err(
                "server_tls_key_file and server_tls_cert_file go together: set both or neither",
            ))
        }
    };
    Ok(Some(Arc::new(config)))
}

/// verify-ca: the chain must lead to the CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the
        // chain was fine.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// allow/prefer/require: encrypted, certificate not checked (as libpq and
/// PgBouncer). The handshake signature is still verified.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
