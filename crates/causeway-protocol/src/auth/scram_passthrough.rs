//! SCRAM-SHA-256 towards a server without the password: with the ClientKey
//! recovered from the client's own proof (see `ScramServer::client_key`) and
//! the verifier's ServerKey, Causeway can answer the server's challenge as
//! the client would. It works when the server stores the same verifier (same
//! salt and iterations) that authenticated the client, which is the case
//! when the verifier came from that server through auth_query.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::channel_binding::ClientBinding;
use super::secret::hmac_sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PassthroughError {
    #[error("malformed SCRAM server message")]
    Malformed,
    #[error("server nonce does not extend ours")]
    Nonce,
    #[error("server's SCRAM verifier differs from the one the client authenticated against")]
    WrongKeys,
    #[error("server signature does not verify")]
    ServerSignature,
    #[error("SCRAM step out of order")]
    OutOfOrder,
}

/// The keys that stand in for a password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramKeys {
    /// The keys a password gives for a server's salt and iteration count
    /// (as its server-first-message states them). Zero iterations: None.
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Option<ScramKeys> {
        if iterations == 0 {
            return None;
        }
        let (client_key, server_key) =
            super::secret::client_and_server_key(password, salt, iterations);
        Some(ScramKeys {
            client_key,
            server_key,
        })
    }
}

/// The salt and iteration count of a server-first-message.
pub fn server_first_salt(server_first: &[u8]) -> Option<(Vec<u8>, u32)> {
    let text = std::str::from_utf8(server_first).ok()?;
    let mut salt = None;
    let mut iterations = None;
    for part in text.split(',') {
        if let Some(s) = part.strip_prefix("s=") {
            salt = STANDARD.decode(s).ok();
        } else if let Some(i) = part.strip_prefix("i=") {
            iterations = i.parse().ok();
        }
    }
    Some((salt?, iterations?))
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

pub struct ScramPassthrough {
    keys: ScramKeys,
    binding: ClientBinding,
    client_first_bare: String,
    nonce: String,
    /// AuthMessage, once the server's first message arrived.
    auth_message: Option<Vec<u8>>,
}

impl ScramPassthrough {
    /// Without channel binding.
    pub fn new(keys: ScramKeys) -> Self {
        Self::with_binding(keys, ClientBinding::Unsupported)
    }

    /// With the channel binding chosen for this connection.
    pub fn with_binding(keys: ScramKeys, binding: ClientBinding) -> Self {
        let raw: [u8; 18] = rand::random();
        let nonce = STANDARD.encode(raw);
        ScramPassthrough {
            keys,
            binding,
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            auth_message: None,
        }
    }

    /// The mechanism name for the SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        self.binding.mechanism()
    }

    /// Replaces the keys before the server's first message is answered
    /// (when they are derived from a password and the server's salt).
    pub fn set_keys(&mut self, keys: ScramKeys) {
        self.keys = keys;
    }

    /// The client-first-message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.binding.gs2_header(), self.client_first_bare).into_bytes()
    }

    /// Answers the server-first-message with the client-final-message.
    pub fn handle_server_first(
        &mut self,
        server_first: &[u8],
    ) -> Result<Vec<u8>, PassthroughError> {
        if self.auth_message.is_some() {
            return Err(PassthroughError::OutOfOrder);
        }
        let text = std::str::from_utf8(server_first).map_err(|_| PassthroughError::Malformed)?;
        let mut parts = text.split(',');
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(PassthroughError::Malformed)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(PassthroughError::Nonce);
        }
        let without_proof = format!("c={},r={nonce}", self.binding.cbind_attr());
        let mut auth =
            Vec::with_capacity(self.client_first_bare.len() + text.len() + without_proof.len() + 2);
        auth.extend_from_slice(self.client_first_bare.as_bytes());
        auth.push(b',');
        auth.extend_from_slice(server_first);
        auth.push(b',');
        auth.extend_from_slice(without_proof.as_bytes());
        let stored_key: [u8; 32] = Sha256::digest(self.keys.client_key).into();
        let signature = hmac_sha256(&stored_key, &auth);
        let mut proof = self.keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        self.auth_message = Some(auth);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server's signature (it proves the server holds the verifier).
    pub fn handle_server_final(&self, server_final: &[u8]) -> Result<(), PassthroughError> {
        let auth = self
            .auth_message
            .as_ref()
            .ok_or(PassthroughError::OutOfOrder)?;
        let text = std::str::from_utf8(server_final).map_err(|_| PassthroughError::Malformed)?;
        if text.starts_with("e=") {
            return Err(PassthroughError::WrongKeys);
        }
        let v = text
            .split(',')
            .next()
            .and_then(|p| p.strip_prefix("v="))
            .ok_or(PassthroughError::Malformed)?;
        let got = STANDARD
            .decode(v)
            .map_err(|_| PassthroughError::Malformed)?;
        let want = hmac_sha256(&self.keys.server_key, auth);
        if bool::from(got.ct_eq(&want)) {
            Ok(())
        } else {
            Err(PassthroughError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ScramServer, ScramVerifier};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// A client logs in to Causeway's server side with its password; the
    /// recovered keys then log in to a second server holding the same verifier.
    #[test]
    fn recovered_keys_log_in_to_a_server_with_the_same_verifier() {
        let verifier = ScramVerifier::from_password(b"s3cret", b"0123456789abcdef", 4096).unwrap();
        let mut front = ScramServer::new(verifier.clone());
        let mut client = ScramSha256::new(b"s3cret", ChannelBinding::unsupported());
        let sf = front.handle_client_first(client.message()).unwrap();
        client.update(&sf).unwrap();
        let fin = front.handle_client_final(client.message()).unwrap();
        client.finish(&fin).unwrap();
        let keys = ScramKeys {
            client_key: front.client_key().unwrap(),
            server_key: *verifier.server_key(),
        };

        let mut back = ScramServer::new(verifier.clone());
        let mut pass = ScramPassthrough::new(keys);
        let sf = back.handle_client_first(&pass.client_first()).unwrap();
        let cf = pass.handle_server_first(&sf).unwrap();
        let fin = back.handle_client_final(&cf).unwrap();
        pass.handle_server_final(&fin).unwrap();

        // Another verifier (other salt) refuses the same keys.
        let other = ScramVerifier::from_password(b"s3cret", b"fedcba9876543210", 4096).unwrap();
        let mut back = ScramServer::new(other);
        let mut pass = ScramPassthrough::new(keys);
        let sf = back.handle_client_first(&pass.client_first()).unwrap();
        let cf = pass.handle_server_first(&sf).unwrap();
        assert!(back.handle_client_final(&cf).is_err());
    }

    /// Keys derived from the password and the server's salt log in like the
    /// password itself.
    #[test]
    fn keys_from_a_password_and_the_servers_salt() {
        let verifier = ScramVerifier::from_password(b"s3cret", b"0123456789abcdef", 4096).unwrap();
        let mut back = ScramServer::new(verifier);
        let mut pass = ScramPassthrough::new(ScramKeys {
            client_key: [0; 32],
            server_key: [0; 32],
        });
        let sf = back.handle_client_first(&pass.client_first()).unwrap();
        let (salt, iterations) = server_first_salt(&sf).unwrap();
        assert_eq!((&salt[..], iterations), (&b"0123456789abcdef"[..], 4096));
        pass.set_keys(ScramKeys::from_password(b"s3cret", &salt, iterations).unwrap());
        let cf = pass.handle_server_first(&sf).unwrap();
        let fin = back.handle_client_final(&cf).unwrap();
        pass.handle_server_final(&fin).unwrap();
        assert!(ScramKeys::from_password(b"x", b"s", 0).is_none());
        assert!(server_first_salt(b"r=abc,i=4096").is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        let keys = ScramKeys {
            client_key: [1; 32],
            server_key: [2; 32],
        };
        let mut p = ScramPassthrough::new(keys);
        assert!(p.handle_server_final(b"v=x").is_err());
        for bad in [&b""[..], b"x", b"r=", b"r=zzz,s=a,i=1", b"\xff"] {
            assert!(p.handle_server_first(bad).is_err(), "{bad:?}");
        }
    }
}
