//! Client side of SCRAM-SHA-256, for Causeway logging in to a PostgreSQL
//! server: a thin wrapper over `postgres_protocol`'s implementation.
//!
//! The wrapper tracks the step itself because `ScramSha256::message()` panics
//! once the exchange is over; a misbehaving server must yield an error instead.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::channel_binding::ClientBinding;

/// Why the server-facing SCRAM exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ScramClientError {
    /// Bad server message, server-reported error (`e=`), iteration count above
    /// postgres-protocol's cap, or a server signature that does not verify.
    #[error("SCRAM authentication with the server failed: {0}")]
    Protocol(#[source] std::io::Error),
    #[error("SCRAM client step called out of order")]
    OutOfOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// client-first available; waiting for server-first.
    Start,
    /// client-final sent; waiting for server-final.
    FinalSent,
    Done,
    Failed,
}

/// One SCRAM-SHA-256 login to a server.
pub struct ScramClient {
    inner: ScramSha256,
    step: Step,
    mechanism: &'static str,
}

impl ScramClient {
    /// Without channel binding (gs2 header `n,,`).
    pub fn new(password: &[u8]) -> ScramClient {
        ScramClient {
            inner: ScramSha256::new(password, ChannelBinding::unsupported()),
            step: Step::Start,
            mechanism: postgres_protocol::authentication::sasl::SCRAM_SHA_256,
        }
    }

    /// With the channel binding chosen for this connection.
    pub fn with_binding(password: &[u8], binding: &ClientBinding) -> ScramClient {
        ScramClient {
            inner: ScramSha256::new(password, binding.to_postgres()),
            step: Step::Start,
            mechanism: binding.mechanism(),
        }
    }

    /// The mechanism name for the SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// The client-first-message, for the SASLInitialResponse.
    pub fn client_first(&self) -> Result<&[u8], ScramClientError> {
        match self.step {
            Step::Start => Ok(self.inner.message()),
            _ => Err(ScramClientError::OutOfOrder),
        }
    }

    /// Takes AuthenticationSASLContinue data (server-first-message) and returns
    /// the client-final-message for the SASLResponse.
    pub fn handle_server_first(&mut self, server_first: &[u8]) -> Result<&[u8], ScramClientError> {
        if self.step != Step::Start {
            self.step = Step::Failed;
            return Err(ScramClientError::OutOfOrder);
        }
        if let Err(e) = self.inner.update(server_first) {
            self.step = Step::Failed;
            return Err(ScramClientError::Protocol(e));
        }
        self.step = Step::FinalSent;
        Ok(self.inner.message())
    }

    /// Takes AuthenticationSASLFinal data (server-final-message) and checks
    /// the server's signature, i.e. that the server really knows the verifier.
    pub fn handle_server_final(&mut self, server_final: &[u8]) -> Result<(), ScramClientError> {
        if self.step != Step::FinalSent {
            self.step = Step::Failed;
            return Err(ScramClientError::OutOfOrder);
        }
        match self.inner.finish(server_final) {
            Ok(()) => {
                self.step = Step::Done;
                Ok(())
            }
            Err(e) => {
                self.step = Step::Failed;
                Err(ScramClientError::Protocol(e))
            }
        }
    }

    /// True once the server's signature has been verified.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram_server::{ScramError, ScramServer};
    use crate::auth::secret::ScramVerifier;

    fn server(password: &[u8]) -> ScramServer {
        ScramServer::new(ScramVerifier::from_password(password, b"0123456789abcdef", 4096).unwrap())
    }

    #[test]
    fn logs_in_to_our_server() {
        let mut client = ScramClient::new(b"pw");
        assert_eq!(client.mechanism(), "SCRAM-SHA-256");
        let mut server = server(b"pw");
        let first = client.client_first().unwrap();
        assert!(first.starts_with(b"n,,n=,r="));
        let server_first = server.handle_client_first(first).unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap().to_vec();
        let server_final = server.handle_client_final(&client_final).unwrap();
        client.handle_server_final(&server_final).unwrap();
        assert!(client.is_done());
        // Everything after the end is an error, not a panic.
        assert!(matches!(
            client.client_first(),
            Err(ScramClientError::OutOfOrder)
        ));
        assert!(matches!(
            client.handle_server_first(b"r=x"),
            Err(ScramClientError::OutOfOrder)
        ));
        assert!(matches!(
            client.handle_server_final(b"v=x"),
            Err(ScramClientError::OutOfOrder)
        ));
    }

    #[test]
    fn wrong_password_rejected_by_server() {
        let mut client = ScramClient::new(b"wrong");
        let mut server = server(b"pw");
        let server_first = server
            .handle_client_first(client.client_first().unwrap())
            .unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap().to_vec();
        assert_eq!(
            server.handle_client_final(&client_final),
            Err(ScramError::InvalidProof)
        );
    }

    #[test]
    fn bad_server_messages_are_errors() {
        // Garbage / truncated server-first.
        for bad in [
            &b""[..],
            b"r=",
            b"x=1",
            b"r=abc,s=c2FsdA==",
            b"r=abc,s=c2FsdA==,i=",
            b"\xff",
        ] {
            let mut client = ScramClient::new(b"pw");
            assert!(client.handle_server_first(bad).is_err(), "{bad:?}");
            // Once failed, the client stays failed instead of panicking.
            assert!(client.client_first().is_err());
            assert!(client.handle_server_final(b"v=x").is_err());
        }
        // Server nonce that does not extend ours.
        let mut client = ScramClient::new(b"pw");
        assert!(client
            .handle_server_first(b"r=someoneelse,s=c2FsdA==,i=4096")
            .is_err());

        // A forged server signature, a server error, and truncations.
        for bad in [&b"v=AAAA"[..], b"e=invalid-proof", b"v=", b"", b"\xff"] {
            let mut client = ScramClient::new(b"pw");
            let mut server = server(b"pw");
            let server_first = server
                .handle_client_first(client.client_first().unwrap())
                .unwrap();
            client.handle_server_first(&server_first).unwrap();
            assert!(client.handle_server_final(bad).is_err(), "{bad:?}");
            assert!(!client.is_done());
        }
    }
}
