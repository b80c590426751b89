//! What both TLS sides share: sslmode, PEM files, PgBouncer's
//! `*_tls_protocols` and `*_tls_ciphers`, and the crypto provider (ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};

/// PgBouncer's (and libpq's) sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SslMode {
    #[default]
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// TLS is mandatory.
    pub fn requires(self) -> bool {
        self >= SslMode::Require
    }

    /// The peer's certificate is checked against the CA file.
    pub fn verifies(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

/// Why TLS settings could not be put in force. Every message names the
/// setting and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

pub(crate) fn err(msg: impl Into<String>) -> TlsError {
    TlsError(msg.into())
}

/// rustls over ring, restricted to the configured TLS 1.2 cipher suites.
pub(crate) fn provider(setting: &str, ciphers: &str) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = ring_provider();
    p.cipher_suites = cipher_suites(setting, ciphers, &p.cipher_suites)?;
    Ok(Arc::new(p))
}

/// ring rather than aws-lc-rs: no C/cmake build and no OpenSSL-like
/// dependency. rustls marks it deprecated only because it lacks the
/// post-quantum key exchange (X25519MLKEM768).
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// `tlsv1.2,tlsv1.3`, `secure`, `all`, `legacy`. rustls speaks only TLS 1.2
/// and 1.3: the older versions are accepted in the list (PgBouncer's
/// `all`/`legacy` include them) but never negotiated.
pub fn protocol_versions(
    setting: &str,
    value: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let (mut v12, mut v13) = (false, false);
    for word in value
        .split([',', ':', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_lowercase().as_str() {
            "secure" | "all" | "legacy" | "default" => (v12, v13) = (true, true),
            "tlsv1.2" => v12 = true,
            "tlsv1.3" => v13 = true,
            "tlsv1.0" | "tlsv1.1" | "tlsv1" => {}
            other => {
                return Err(err(format!(
                    "{setting}: unknown protocol {other:?} (tlsv1.2, tlsv1.3, secure, all, legacy)"
                )))
            }
        }
    }
    let mut out = Vec::new();
    if v13 {
        out.push(&rustls::version::TLS13);
    }
    if v12 {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err(err(format!(
            "{setting} = {value:?} leaves no protocol Causeway supports (TLS 1.2 and 1.3)"
        )));
    }
    Ok(out)
}

/// PgBouncer's shortcuts (`fast`, `normal`, `secure`, `default`, `compat`,
/// `legacy`, `insecure`, `all`) all mean every suite rustls has (each is an
/// AEAD with forward secrecy); an OpenSSL-style list (`A:B:!C`) keeps the
/// named TLS 1.2 suites. TLS 1.3 suites are never filtered (as PgBouncer).
fn cipher_suites(
    setting: &str,
    value: &str,
    all: &[SupportedCipherSuite],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let words: Vec<String> = value
        .split([':', ',', ' '])
        .map(|w| w.trim().to_ascii_uppercase())
        .filter(|w| !w.is_empty() && !w.starts_with('!') && !w.starts_with('-'))
        .collect();
    let shortcut = |w: &str| {
        matches!(
            w,
            "FAST"
                | "NORMAL"
                | "SECURE"
                | "DEFAULT"
                | "COMPAT"
                | "LEGACY"
                | "INSECURE"
                | "ALL"
                | "HIGH"
        )
    };
    if words.is_empty() || words.iter().any(|w| shortcut(w)) {
        return Ok(all.to_vec());
    }
    let kept: Vec<SupportedCipherSuite> = all
        .iter()
        .filter(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => words.iter().any(|w| *w == openssl_name(s)),
        })
        .copied()
        .collect();
    if !kept
        .iter()
        .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
    {
        return Err(err(format!(
            "{setting} = {value:?} names no TLS 1.2 cipher suite Causeway supports ({})",
            all.iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
                .map(openssl_name)
                .collect::<Vec<_>>()
                .join(":")
        )));
    }
    Ok(kept)
}

/// OpenSSL's name of a TLS 1.2 suite, e.g. ECDHE-RSA-AES128-GCM-SHA256.
fn openssl_name(s: &SupportedCipherSuite) -> String {
    let iana = format!("{:?}", s.suite());
    let body = iana
        .trim_start_matches("TLS_")
        .replace("_WITH_", "_")
        .replace("AES_128", "AES128")
        .replace("AES_256", "AES256")
        .replace("CHACHA20_POLY1305_SHA256", "CHACHA20_POLY1305");
    body.replace('_', "-")
}

pub(crate) fn read_certs(
    setting: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(setting, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            err(format!(
                "{setting} {}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(err(format!(
            "{setting} {}: no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

pub(crate) fn read_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        err(format!(
            "{setting} {}: no private key in PEM format (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        ))
    })
}

pub(crate) fn read_roots(setting: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(setting, path)? {
        roots.add(c).map_err(|e| {
            err(format!(
                "{setting} {}: unusable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The system's CA bundle, for verify-ca/verify-full without a CA file.
pub(crate) fn system_roots(setting: &str) -> Result<RootCertStore, TlsError> {
    const BUNDLES: [&str; 3] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    let path = BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(format!(
                "{setting} is not set and no system CA bundle was found ({})",
                BUNDLES.join(", ")
            ))
        })?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold certificates webpki cannot use; skip them.
    roots.add_parsable_certificates(read_certs(setting, &path)?);
    Ok(roots)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(format!("{setting} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(protocol_versions("p", "secure").unwrap().len(), 2);
        assert_eq!(
            protocol_versions("p", "tlsv1.3").unwrap(),
            vec![&rustls::version::TLS13]
        );
        assert_eq!(protocol_versions("p", "tlsv1.0,tlsv1.2").unwrap().len(), 1);
        let e = protocol_versions("client_tls_protocols", "tlsv1.1").unwrap_err();
        assert!(e.0.contains("client_tls_protocols"), "{e}");
        assert!(protocol_versions("p", "sslv3").is_err());
    }

    #[test]
    fn ciphers() {
        let all = ring_provider().cipher_suites;
        assert_eq!(cipher_suites("c", "fast", &all).unwrap().len(), all.len());
        let one = cipher_suites("c", "ECDHE-RSA-AES128-GCM-SHA256", &all).unwrap();
        let tls12: Vec<String> = one
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(openssl_name)
            .collect();
        assert_eq!(tls12, vec!["ECDHE-RSA-AES128-GCM-SHA256"]);
        assert!(cipher_suites("c", "RC4-MD5", &all).is_err());
    }

    #[test]
    fn missing_and_bad_files_name_the_setting_and_path() {
        let e = read_certs("client_tls_cert_file", Path::new("/nonexistent/x.crt")).unwrap_err();
        assert!(
            e.0.contains("client_tls_cert_file /nonexistent/x.crt"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, "not a key").unwrap();
        let e = read_key("client_tls_key_file", &p).unwrap_err();
        assert!(e.0.contains("no private key"), "{e}");
        let e = read_certs("client_tls_cert_file", &p).unwrap_err();
        assert!(e.0.contains("no certificate"), "{e}");
    }
}
