//! TLS handshakes counted by side and outcome, for /metrics
//! (`causeway_tls_handshakes_total{side, result}`). Process-wide atomics:
//! one increment per handshake.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which way the handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A client connecting to Causeway.
    Client = 0,
    /// Causeway connecting to a server.
    Server = 1,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Client, Side::Server];

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    /// A client came without TLS where client_tls_sslmode requires it.
    PlaintextRefused,
    /// The server answered the SSLRequest with 'N' where TLS is required.
    ServerRefused,
    /// TLS asked for while it is disabled (client side: answered 'N').
    Disabled,
    /// The peer's certificate failed verification (or a required client
    /// certificate was missing).
    BadCertificate,
    /// No common protocol version, cipher suite or ALPN protocol.
    Incompatible,
    /// Direct TLS without the `postgresql` ALPN protocol.
    NoAlpn,
    /// Any other TLS protocol error.
    Protocol,
    /// The connection failed or closed during the handshake.
    Io,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::PlaintextRefused,
        Outcome::ServerRefused,
        Outcome::Disabled,
        Outcome::BadCertificate,
        Outcome::Incompatible,
        Outcome::NoAlpn,
        Outcome::Protocol,
        Outcome::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PlaintextRefused => "plaintext_refused",
            Outcome::ServerRefused => "server_refused",
            Outcome::Disabled => "disabled",
            Outcome::BadCertificate => "bad_certificate",
            Outcome::Incompatible => "incompatible",
            Outcome::NoAlpn => "no_alpn",
            Outcome::Protocol => "protocol",
            Outcome::Io => "io",
        }
    }

    /// Classifies a handshake error from tokio-rustls.
    pub fn of_io(e: &std::io::Error) -> Outcome {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(r) => Outcome::of_rustls(r),
            None => Outcome::Io,
        }
    }

    pub fn of_rustls(e: &rustls::Error) -> Outcome {
        use rustls::{AlertDescription as A, Error as E};
        match e {
            E::InvalidCertificate(_) | E::NoCertificatesPresented => Outcome::BadCertificate,
            E::AlertReceived(
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateRequired
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::DecryptError,
            ) => Outcome::BadCertificate,
            E::NoApplicationProtocol
            | E::PeerIncompatible(_)
            | E::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::NoApplicationProtocol,
            ) => Outcome::Incompatible,
            _ => Outcome::Protocol,
        }
    }
}

pub struct Handshakes {
    counts: [[AtomicU64; Outcome::ALL.len()]; 2],
}

/// The process's handshake counters.
pub static HANDSHAKES: Handshakes = Handshakes {
    counts: [const { [const { AtomicU64::new(0) }; Outcome::ALL.len()] }; 2],
};

impl Handshakes {
    pub fn count(&self, side: Side, outcome: Outcome) {
        self.counts[side as usize][outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, side: Side, outcome: Outcome) -> u64 {
        self.counts[side as usize][outcome as usize].load(Relaxed)
    }

    /// (side, outcome, count) for every pair.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut v = Vec::with_capacity(2 * Outcome::ALL.len());
        for side in Side::ALL {
            for o in Outcome::ALL {
                v.push((side.as_str(), o.as_str(), self.get(side, o)));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_rustls_errors() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(Outcome::of_io(&e), Outcome::BadCertificate);
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::NoApplicationProtocol,
        );
        assert_eq!(Outcome::of_io(&e), Outcome::Incompatible);
        let e = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(Outcome::of_io(&e), Outcome::Io);
        let before = HANDSHAKES.get(Side::Server, Outcome::NoAlpn);
        HANDSHAKES.count(Side::Server, Outcome::NoAlpn);
        assert_eq!(HANDSHAKES.get(Side::Server, Outcome::NoAlpn), before + 1);
        assert_eq!(HANDSHAKES.rows().len(), 18);
    }
}
