//! Server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks
//! it: authenticates a client against a stored [`ScramVerifier`].
//!
//! Exchange: client-first -> server-first -> client-final -> server-final.
//! The caller frames these as SASLInitialResponse / AuthenticationSASLContinue
//! / SASLResponse / AuthenticationSASLFinal (see `messages`), and checks the
//! mechanism name itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::secret::{hmac_sha256, ScramVerifier, Secret};

/// Random bytes in the server's half of the nonce (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const SERVER_NONCE_LEN: usize = 18;

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's proof does not match: wrong password (SQLSTATE 28P01).
    #[error("password authentication failed (invalid SCRAM proof)")]
    InvalidProof,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error(
        "client requested SCRAM channel binding (SCRAM-SHA-256-PLUS), which this server does not offer"
    )]
    ChannelBindingNotSupported,
    #[error("SCRAM channel-binding attribute does not match the client-first-message")]
    ChannelBindingMismatch,
    /// 'y' over a connection where -PLUS was offered: a sign that someone
    /// in the middle stripped it (PostgreSQL's "negotiation error").
    #[error("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, and this server does support it")]
    ChannelBindingDowngrade,
    #[error("client selected {0} but the SCRAM message {1}")]
    MechanismMismatch(&'static str, &'static str),
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    #[error("SCRAM nonce does not match")]
    NonceMismatch,
    #[error("an md5 secret cannot be used for SCRAM authentication")]
    Md5Secret,
    #[error("SCRAM message received out of order")]
    OutOfOrder,
}

impl ScramError {
    /// The SQLSTATE to report: wrong password vs. protocol violation.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::InvalidProof | ScramError::Md5Secret => "28P01",
            _ => "08P01",
        }
    }
}

/// GS2 channel-binding flag from the client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gs2Flag {
    /// `n`: client does not support channel binding.
    No,
    /// `y`: client supports it but thinks the server does not.
    Yes,
    /// `p=tls-server-end-point`: bound to our certificate.
    Bound,
}

impl Gs2Flag {
    /// The `c=` value expected in the client-final-message: base64 of the
    /// gs2 header (and of the binding data when bound).
    fn expected_cbind(self, data: Option<&[u8]>) -> Vec<u8> {
        match self {
            Gs2Flag::No => b"biws".to_vec(),  // base64("n,,")
            Gs2Flag::Yes => b"eSws".to_vec(), // base64("y,,")
            Gs2Flag::Bound => {
                let mut input = b"p=tls-server-end-point,,".to_vec();
                input.extend_from_slice(data.unwrap_or_default());
                STANDARD.encode(input).into_bytes()
            }
        }
    }
}

enum State {
    Initial,
    FirstSent {
        gs2: Gs2Flag,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        /// client nonce + server nonce
        nonce: Vec<u8>,
    },
    Done {
        client_key: [u8; 32],
    },
    Failed,
}

/// One SCRAM-SHA-256 exchange with one client.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: State,
    /// tls-server-end-point data when SCRAM-SHA-256-PLUS was offered.
    binding: Option<Vec<u8>>,
    /// The client chose SCRAM-SHA-256-PLUS.
    plus: bool,
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier) -> ScramServer {
        ScramServer {
            verifier,
            state: State::Initial,
            binding: None,
            plus: false,
        }
    }

    /// Offers SCRAM-SHA-256-PLUS, bound to the hash of the certificate of
    /// this TLS connection.
    pub fn offer_channel_binding(&mut self, end_point: Vec<u8>) {
        self.binding = Some(end_point);
    }

    /// The mechanisms to announce in AuthenticationSASL.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.binding.is_some() {
            &[super::SCRAM_SHA_256_PLUS, super::SCRAM_SHA_256]
        } else {
            &[super::SCRAM_SHA_256]
        }
    }

    /// Records the mechanism the client chose; one that was not offered is
    /// an error.
    pub fn select(&mut self, mechanism: &str) -> Result<(), ScramError> {
        match mechanism {
            super::SCRAM_SHA_256 => self.plus = false,
            super::SCRAM_SHA_256_PLUS if self.binding.is_some() => self.plus = true,
            super::SCRAM_SHA_256_PLUS => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::Unsupported("SASL mechanism")),
        }
        Ok(())
    }

    /// From a stored secret. A plaintext password is turned into a verifier
    /// with a random salt and 4096 iterations (a few ms of PBKDF2; callers
    /// authenticating often may cache the verifier). md5 cannot do SCRAM.
    pub fn from_secret(secret: &Secret) -> Result<ScramServer, ScramError> {
        let verifier = match secret {
            Secret::Scram(v) => v.clone(),
            Secret::Plain(password) => {
                ScramVerifier::from_password_random_salt(password.as_bytes())
            }
            Secret::Md5(_) => return Err(ScramError::Md5Secret),
        };
        Ok(ScramServer::new(verifier))
    }

    /// Takes the client-first-message, returns the server-first-message.
    pub fn handle_client_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Failed;
            return Err(ScramError::OutOfOrder);
        }
        let mut nonce_bytes = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce_bytes);
        let server_nonce = STANDARD.encode(nonce_bytes);
        match self.client_first(message, &server_nonce) {
            Ok((state, reply)) => {
                self.state = state;
                Ok(reply)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn client_first(
        &self,
        message: &[u8],
        server_nonce: &str,
    ) -> Result<(State, Vec<u8>), ScramError> {
        check_no_nul(message)?;
        // gs2-header: cbind-flag "," [authzid] ","
        const BOUND: &[u8] = b"p=tls-server-end-point,";
        let (gs2, rest) = match message {
            [b'n', b',', rest @ ..] => (Gs2Flag::No, rest),
            [b'y', b',', ..] if self.binding.is_some() => {
                return Err(ScramError::ChannelBindingDowngrade)
            }
            [b'y', b',', rest @ ..] => (Gs2Flag::Yes, rest),
            m if m.starts_with(BOUND) && self.plus => (Gs2Flag::Bound, &m[BOUND.len()..]),
            m if m.starts_with(BOUND) && self.binding.is_some() => {
                return Err(ScramError::MechanismMismatch(
                    super::SCRAM_SHA_256,
                    "includes channel binding data",
                ))
            }
            [b'p', b'=', ..] => return Err(ScramError::ChannelBindingNotSupported),
            [b'n' | b'y', ..] => {
                return Err(ScramError::Malformed(
                    "expected ',' after channel-binding flag",
                ))
            }
            _ => return Err(ScramError::Malformed("unexpected channel-binding flag")),
        };
        if self.plus && gs2 != Gs2Flag::Bound {
            return Err(ScramError::MechanismMismatch(
                super::SCRAM_SHA_256_PLUS,
                "has no channel binding",
            ));
        }
        // PostgreSQL has no use for an authorization identity and refuses it.
        let client_first_bare = match rest {
            [b',', bare @ ..] => bare,
            [b'a', b'=', ..] => return Err(ScramError::Unsupported("authorization identity")),
            _ => return Err(ScramError::Malformed("expected ',' after gs2 header")),
        };
        let mut attrs = client_first_bare.split(|&b| b == b',');
        // "m=" here would be a mandatory extension, which nobody defines.
        let first = attrs.next().unwrap_or_default();
        if first.starts_with(b"m=") {
            return Err(ScramError::Unsupported("mandatory extension"));
        }
        // The user name is ignored, as PostgreSQL does: the startup packet's
        // user is authoritative and libpq sends "n=" empty.
        attr_value(first, b'n')
            .ok_or(ScramError::Malformed("expected user name attribute 'n='"))?;
        let client_nonce = attrs
            .next()
            .and_then(|a| attr_value(a, b'r'))
            .ok_or(ScramError::Malformed("expected nonce attribute 'r='"))?;
        if client_nonce.is_empty() || !client_nonce.iter().all(|&b| is_printable(b)) {
            return Err(ScramError::Malformed(
                "client nonce is empty or not printable",
            ));
        }
        // Optional extensions may follow; they must at least look like attributes.
        for extension in attrs {
            any_attr(extension).ok_or(ScramError::Malformed(
                "invalid attribute in client-first-message",
            ))?;
        }

        let mut nonce = client_nonce.to_vec();
        nonce.extend_from_slice(server_nonce.as_bytes());
        let mut server_first = Vec::with_capacity(nonce.len() + 64);
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(STANDARD.encode(self.verifier.salt()).as_bytes());
        server_first.extend_from_slice(format!(",i={}", self.verifier.iterations()).as_bytes());

        let state = State::FirstSent {
            gs2,
            client_first_bare: client_first_bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((state, server_first))
    }

    /// Takes the client-final-message, verifies the proof, and returns the
    /// server-final-message (`v=<ServerSignature>`) on success.
    pub fn handle_client_final(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let result = match &self.state {
            State::FirstSent {
                gs2,
                client_first_bare,
                server_first,
                nonce,
            } => self.client_final(message, *gs2, client_first_bare, server_first, nonce),
            _ => Err(ScramError::OutOfOrder),
        };
        match result {
            Ok((client_key, reply)) => {
                self.state = State::Done { client_key };
                Ok(reply)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn client_final(
        &self,
        message: &[u8],
        gs2: Gs2Flag,
        client_first_bare: &[u8],
        server_first: &[u8],
        nonce: &[u8],
    ) -> Result<([u8; 32], Vec<u8>), ScramError> {
        check_no_nul(message)?;
        // The proof must be the last attribute; everything before ",p=" is
        // signed as client-final-message-without-proof.
        let proof_at = find_last(message, b",p=")
            .ok_or(ScramError::Malformed("missing proof attribute 'p='"))?;
        let (without_proof, proof_attr) = message.split_at(proof_at);
        let proof_b64 = proof_attr.get(3..).unwrap_or_default();
        if proof_b64.contains(&b',') {
            return Err(ScramError::Malformed(
                "garbage after proof in client-final-message",
            ));
        }

        let mut attrs = without_proof.split(|&b| b == b',');
        let cbind = attrs
            .next()
            .and_then(|a| attr_value(a, b'c'))
            .ok_or(ScramError::Malformed(
                "expected channel-binding attribute 'c='",
            ))?;
        if cbind != gs2.expected_cbind(self.binding.as_deref()) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        let final_nonce = attrs
            .next()
            .and_then(|a| attr_value(a, b'r'))
            .ok_or(ScramError::Malformed("expected nonce attribute 'r='"))?;
        for extension in attrs {
            // A second "p=" means something followed the first proof.
            if extension.starts_with(b"p=") || any_attr(extension).is_none() {
                return Err(ScramError::Malformed(
                    "invalid attribute in client-final-message",
                ));
            }
        }
        // Both nonces are public (they went over the wire), so plain equality is fine.
        if final_nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof_b64)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;

        // AuthMessage = client-first-bare "," server-first "," client-final-without-proof
        let mut auth_message = Vec::with_capacity(
            client_first_bare.len() + server_first.len() + without_proof.len() + 2,
        );
        auth_message.extend_from_slice(client_first_bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof);

        let client_signature = hmac_sha256(self.verifier.stored_key(), &auth_message);
        let mut client_key = [0u8; 32];
        for ((k, p), s) in client_key.iter_mut().zip(proof).zip(client_signature) {
            *k = p ^ s;
        }
        let computed_stored_key: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(computed_stored_key.ct_eq(self.verifier.stored_key())) {
            return Err(ScramError::InvalidProof);
        }

        let server_signature = hmac_sha256(self.verifier.server_key(), &auth_message);
        let mut reply = b"v=".to_vec();
        reply.extend_from_slice(STANDARD.encode(server_signature).as_bytes());
        Ok((client_key, reply))
    }

    /// True once the client has proven knowledge of the password.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// The ClientKey recovered from the proof, after a successful exchange.
    /// With it Causeway can later authenticate to a server holding the same
    /// verifier (SCRAM pass-through) without knowing the password.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        match self.state {
            State::Done { client_key } => Some(client_key),
            _ => None,
        }
    }
}

/// PostgreSQL rejects SCRAM messages with embedded NULs (it treats them as C strings).
fn check_no_nul(message: &[u8]) -> Result<(), ScramError> {
    if message.is_empty() {
        return Err(ScramError::Malformed("empty message"));
    }
    if message.contains(&0) {
        return Err(ScramError::Malformed("message contains a NUL byte"));
    }
    Ok(())
}

/// The value of `attr=value` if the attribute letter matches.
fn attr_value(attr: &[u8], name: u8) -> Option<&[u8]> {
    match attr {
        [n, b'=', value @ ..] if *n == name => Some(value),
        _ => None,
    }
}

/// Any `x=value` attribute with an ASCII letter as name.
fn any_attr(attr: &[u8]) -> Option<&[u8]> {
    match attr {
        [n, b'=', value @ ..] if n.is_ascii_alphabetic() => Some(value),
        _ => None,
    }
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except ',').
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn verifier(password: &[u8]) -> ScramVerifier {
        ScramVerifier::parse(&postgres_protocol::password::scram_sha_256(password)).unwrap()
    }

    /// Runs postgres-protocol's client against our server; returns the
    /// server's result for the final step and the client's verdict.
    fn exchange(
        client_password: &[u8],
        server: &mut ScramServer,
    ) -> (Result<Vec<u8>, ScramError>, Option<std::io::Result<()>>) {
        let mut client = ScramSha256::new(client_password, ChannelBinding::unsupported());
        let server_first = server.handle_client_first(client.message()).unwrap();
        client.update(&server_first).unwrap();
        let result = server.handle_client_final(client.message());
        let client_verdict = result
            .as_ref()
            .ok()
            .map(|server_final| client.finish(server_final));
        (result, client_verdict)
    }

    #[test]
    fn postgres_protocol_client_succeeds_with_right_password() {
        let mut server = ScramServer::new(verifier(b"pw"));
        let (result, client_verdict) = exchange(b"pw", &mut server);
        let server_final = result.unwrap();
        assert!(server_final.starts_with(b"v="));
        // The client checks our ServerSignature.
        client_verdict.unwrap().unwrap();
        assert!(server.is_authenticated());
        // H(ClientKey) == StoredKey.
        let key = server.client_key().unwrap();
        let stored: [u8; 32] = Sha256::digest(key).into();
        assert_eq!(&stored, server.verifier.stored_key());
    }

    #[test]
    fn wrong_password_is_invalid_proof() {
        let mut server = ScramServer::new(verifier(b"pw"));
        let (result, _) = exchange(b"pW", &mut server);
        assert_eq!(result, Err(ScramError::InvalidProof));
        assert_eq!(ScramError::InvalidProof.sqlstate(), "28P01");
        assert!(!server.is_authenticated());
        assert_eq!(server.client_key(), None);
        // The exchange is over: no retry on the same state machine.
        assert_eq!(
            server.handle_client_final(b"c=biws,r=x,p=x"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn plaintext_secret_and_saslprep() {
        // A plaintext secret with a non-ASCII space: the client SASLpreps its
        // password, so the server must too when deriving the verifier.
        let secret = Secret::Plain("a\u{a0}b".into());
        let mut server = ScramServer::from_secret(&secret).unwrap();
        let (result, verdict) = exchange("a\u{a0}b".as_bytes(), &mut server);
        result.unwrap();
        verdict.unwrap().unwrap();
        let mut server = ScramServer::from_secret(&secret).unwrap();
        assert_eq!(
            exchange(b"ab", &mut server).0,
            Err(ScramError::InvalidProof)
        );
        assert_eq!(
            ScramServer::from_secret(&Secret::Md5("md520eb1b22a92b5c573dc1eb4331fc49ee".into()))
                .err(),
            Some(ScramError::Md5Secret)
        );
    }

    #[test]
    fn real_postgres_verifier_accepts_right_password() {
        // From PostgreSQL 15.18: ALTER ROLE postgres PASSWORD 'pw' (scram-sha-256).
        let v = ScramVerifier::parse("SCRAM-SHA-256$4096:/0LOgbmZM4lQ71hp00ankw==$3dPm0u9bd36nLgbgM0x/IC9eVgxM/OySH8deZnXrSjo=:PwUH1osVJBY81YfHHoEvKtDgfpvWTbpubV/hVzRxH2Q=").unwrap();
        let mut server = ScramServer::new(v.clone());
        let (result, verdict) = exchange(b"pw", &mut server);
        result.unwrap();
        verdict.unwrap().unwrap();
        let mut server = ScramServer::new(v);
        assert_eq!(
            exchange(b"nope", &mut server).0,
            Err(ScramError::InvalidProof)
        );
    }

    /// A hand-driven exchange so the messages can be tampered with.
    fn manual_first(server: &mut ScramServer, client_first: &[u8]) -> String {
        let server_first = server.handle_client_first(client_first).unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = server_first
            .strip_prefix("r=")
            .and_then(|s| s.split(',').next());
        nonce.unwrap().to_owned()
    }

    /// Computes a correct client-final for password "pw" given the verifier salt.
    fn client_final(
        v: &ScramVerifier,
        bare: &str,
        server_first: &str,
        without_proof: &str,
    ) -> String {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", v.salt(), v.iterations(), &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let auth = format!("{bare},{server_first},{without_proof}");
        let sig = hmac_sha256(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn y_flag_and_extensions_accepted_and_cbind_must_match() {
        let v = ScramVerifier::from_password(b"pw", b"saltsalt", 16).unwrap();
        let expect_server_first =
            |nonce: &str| format!("r={nonce},s={},i=16", STANDARD.encode(b"saltsalt"));

        // "y,," with an optional extension, username ignored, and c=eSws.
        let mut server = ScramServer::new(v.clone());
        let bare = "n=someone,r=clientnonce,x=ext";
        let nonce = manual_first(&mut server, format!("y,,{bare}").as_bytes());
        assert!(nonce.starts_with("clientnonce"));
        assert_eq!(nonce.len(), "clientnonce".len() + 24);
        let final_msg = client_final(
            &v,
            bare,
            &expect_server_first(&nonce),
            &format!("c=eSws,r={nonce},z=ext"),
        );
        let server_final = server.handle_client_final(final_msg.as_bytes()).unwrap();
        assert!(server_final.starts_with(b"v="));

        // "y,," but c=biws ("n,,"): mismatch.
        let mut server = ScramServer::new(v.clone());
        let bare = "n=,r=abc";
        let nonce = manual_first(&mut server, format!("y,,{bare}").as_bytes());
        let final_msg = client_final(
            &v,
            bare,
            &expect_server_first(&nonce),
            &format!("c=biws,r={nonce}"),
        );
        assert_eq!(
            server.handle_client_final(final_msg.as_bytes()),
            Err(ScramError::ChannelBindingMismatch)
        );

        // Wrong nonce.
        let mut server = ScramServer::new(v.clone());
        let nonce = manual_first(&mut server, format!("n,,{bare}").as_bytes());
        let final_msg = client_final(
            &v,
            bare,
            &expect_server_first(&nonce),
            &format!("c=biws,r={nonce}X"),
        );
        assert_eq!(
            server.handle_client_final(final_msg.as_bytes()),
            Err(ScramError::NonceMismatch)
        );

        // Proof followed by another attribute: garbage.
        let mut server = ScramServer::new(v.clone());
        let nonce = manual_first(&mut server, format!("n,,{bare}").as_bytes());
        let final_msg = client_final(
            &v,
            bare,
            &expect_server_first(&nonce),
            &format!("c=biws,r={nonce}"),
        );
        let tampered = format!("{final_msg},x=1");
        assert!(matches!(
            server.handle_client_final(tampered.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn client_first_errors() {
        let v = ScramVerifier::from_password(b"pw", b"salt", 1).unwrap();
        let cases: &[(&[u8], ScramError)] = &[
            (
                b"p=tls-server-end-point,,n=,r=abc",
                ScramError::ChannelBindingNotSupported,
            ),
            (
                b"n,a=admin,n=,r=abc",
                ScramError::Unsupported("authorization identity"),
            ),
            (
                b"n,,m=ext,n=,r=abc",
                ScramError::Unsupported("mandatory extension"),
            ),
        ];
        for (msg, expected) in cases {
            let mut server = ScramServer::new(v.clone());
            assert_eq!(&server.handle_client_first(msg).unwrap_err(), expected);
        }
        for msg in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=",
            b"n,,n=,",
            b"n,,n=,r=",
            b"n,,n=,r=a\x01b",
            b"n,,n=,r=abc,,",
            b"n,,r=abc",
            b"x,,n=,r=abc",
            b"nn,n=,r=abc",
            b"n,,n=,r=abc\0",
            b"\xff\xfe",
        ] {
            let mut server = ScramServer::new(v.clone());
            let err = server.handle_client_first(msg).unwrap_err();
            assert!(matches!(err, ScramError::Malformed(_)), "{msg:?}: {err:?}");
            assert_eq!(err.sqlstate(), "08P01");
        }
        // Out of order: final before first, first twice.
        let mut server = ScramServer::new(v.clone());
        assert_eq!(
            server.handle_client_final(b"c=biws,r=a,p=b"),
            Err(ScramError::OutOfOrder)
        );
        let mut server = ScramServer::new(v);
        server.handle_client_first(b"n,,n=,r=abc").unwrap();
        assert_eq!(
            server.handle_client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn client_final_truncations_and_garbage_are_errors() {
        let v = ScramVerifier::from_password(b"pw", b"salt", 1).unwrap();
        let bare = "n=,r=abc";
        let mut probe = ScramServer::new(v.clone());
        let nonce = manual_first(&mut probe, format!("n,,{bare}").as_bytes());
        let server_first = format!("r={nonce},s={},i=1", STANDARD.encode(b"salt"));
        let good = client_final(&v, bare, &server_first, &format!("c=biws,r={nonce}"));
        // A server that has just sent `server_first`.
        let fresh = || ScramServer {
            verifier: v.clone(),
            state: State::FirstSent {
                gs2: Gs2Flag::No,
                client_first_bare: bare.as_bytes().to_vec(),
                server_first: server_first.clone().into_bytes(),
                nonce: nonce.clone().into_bytes(),
            },
            binding: None,
            plus: false,
        };
        // The untampered message is accepted...
        fresh().handle_client_final(good.as_bytes()).unwrap();
        // ...and every strict prefix of it is rejected.
        for end in 0..good.len() {
            let result = fresh().handle_client_final(&good.as_bytes()[..end]);
            assert!(result.is_err(), "{}", &good[..end]);
        }
        // A flipped proof bit is a wrong password, not a parse error.
        let mut proof = STANDARD.decode(good.rsplit_once("p=").unwrap().1).unwrap();
        proof[0] ^= 1;
        let flipped = format!("c=biws,r={nonce},p={}", STANDARD.encode(&proof));
        assert_eq!(
            fresh().handle_client_final(flipped.as_bytes()),
            Err(ScramError::InvalidProof)
        );
        for bad in [
            format!("r={nonce},c=biws,p=AAAA"),
            format!("c=biws,r={nonce},p=!!!!"),
            format!("c=biws,r={nonce},p={}", STANDARD.encode([0u8; 31])),
            format!("c=biws,r={nonce},1=x,p={}", STANDARD.encode([0u8; 32])),
            format!("c=biws,r={nonce},p=x,p={}", STANDARD.encode([0u8; 32])),
            format!(
                "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r={nonce},p={}",
                STANDARD.encode([0u8; 32])
            ),
        ] {
            assert!(
                fresh().handle_client_final(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::Rng;
        let v = ScramVerifier::from_password(b"pw", b"salt", 1).unwrap();
        let mut rng = rand::thread_rng();
        let alphabet = b"nyp,=rcasmx019+/\0\xff";
        for i in 0..3000 {
            let len = rng.gen_range(0..40);
            // Half fully random bytes, half drawn from SCRAM-ish characters.
            let msg: Vec<u8> = if i % 2 == 0 {
                (0..len).map(|_| rng.gen()).collect()
            } else {
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            };
            let mut server = ScramServer::new(v.clone());
            let _ = server.handle_client_first(&msg);
            let mut server = ScramServer::new(v.clone());
            if server.handle_client_first(b"n,,n=,r=abc").is_ok() {
                assert!(server.handle_client_final(&msg).is_err());
            }
        }
    }

    /// A postgres-protocol client bound to `client_data` against a server
    /// that offered PLUS bound to `server_data`.
    fn plus_exchange(client_data: &[u8], server_data: &[u8]) -> Result<(), ScramError> {
        let mut server = ScramServer::new(verifier(b"pw"));
        server.offer_channel_binding(server_data.to_vec());
        assert_eq!(server.mechanisms()[0], "SCRAM-SHA-256-PLUS");
        server.select("SCRAM-SHA-256-PLUS")?;
        let mut client = ScramSha256::new(
            b"pw",
            ChannelBinding::tls_server_end_point(client_data.to_vec()),
        );
        let first = server.handle_client_first(client.message())?;
        client.update(&first).unwrap();
        let fin = server.handle_client_final(client.message())?;
        client.finish(&fin).unwrap();
        Ok(())
    }

    #[test]
    fn channel_binding_to_the_certificate_hash() {
        plus_exchange(b"cert-hash", b"cert-hash").unwrap();
        // A different certificate (a man in the middle's) fails.
        assert_eq!(
            plus_exchange(b"other-hash", b"cert-hash"),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn channel_binding_negotiation_errors() {
        // PLUS not offered (no TLS): choosing it is an error.
        let mut server = ScramServer::new(verifier(b"pw"));
        assert_eq!(server.mechanisms(), ["SCRAM-SHA-256"]);
        assert!(server.select("SCRAM-SHA-256-PLUS").is_err());
        // Offered, and the client says 'y' (it thinks we cannot): downgrade.
        let mut server = ScramServer::new(verifier(b"pw"));
        server.offer_channel_binding(b"h".to_vec());
        server.select("SCRAM-SHA-256").unwrap();
        let client = ScramSha256::new(b"pw", ChannelBinding::unrequested());
        assert_eq!(
            server.handle_client_first(client.message()),
            Err(ScramError::ChannelBindingDowngrade)
        );
        // Offered, client without channel binding ('n'): fine.
        let mut server = ScramServer::new(verifier(b"pw"));
        server.offer_channel_binding(b"h".to_vec());
        server.select("SCRAM-SHA-256").unwrap();
        let (result, verdict) = exchange(b"pw", &mut server);
        result.unwrap();
        verdict.unwrap().unwrap();
        // PLUS chosen but no binding in the message, and the reverse.
        let mut server = ScramServer::new(verifier(b"pw"));
        server.offer_channel_binding(b"h".to_vec());
        server.select("SCRAM-SHA-256-PLUS").unwrap();
        assert!(matches!(
            server.handle_client_first(b"n,,n=,r=abc"),
            Err(ScramError::MechanismMismatch(..))
        ));
        let mut server = ScramServer::new(verifier(b"pw"));
        server.offer_channel_binding(b"h".to_vec());
        server.select("SCRAM-SHA-256").unwrap();
        assert!(matches!(
            server.handle_client_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::MechanismMismatch(..))
        ));
    }

    #[test]
    fn passthrough_and_password_clients_bind_too() {
        use crate::auth::{ClientBinding, ScramClient, ScramKeys, ScramPassthrough};
        let v = verifier(b"pw");
        let binding = ClientBinding::EndPoint(b"hash".to_vec());
        // Password client.
        let mut server = ScramServer::new(v.clone());
        server.offer_channel_binding(b"hash".to_vec());
        let mut c = ScramClient::with_binding(b"pw", &binding);
        server.select(c.mechanism()).unwrap();
        let first = server
            .handle_client_first(c.client_first().unwrap())
            .unwrap();
        let fin = c.handle_server_first(&first).unwrap().to_vec();
        let fin = server.handle_client_final(&fin).unwrap();
        c.handle_server_final(&fin).unwrap();
        // Pass-through with the keys recovered above.
        let keys = ScramKeys {
            client_key: server.client_key().unwrap(),
            server_key: *v.server_key(),
        };
        let mut server = ScramServer::new(v);
        server.offer_channel_binding(b"hash".to_vec());
        let mut p = ScramPassthrough::with_binding(keys, binding);
        server.select(p.mechanism()).unwrap();
        let first = server.handle_client_first(&p.client_first()).unwrap();
        let fin = p.handle_server_first(&first).unwrap();
        let fin = server.handle_client_final(&fin).unwrap();
        p.handle_server_final(&fin).unwrap();
    }
}
