//! Stored credentials: what an `auth_file` line or `pg_authid.rolpassword`
//! holds for a user, classified the way PostgreSQL does it.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Prefix of a SCRAM-SHA-256 verifier string.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
/// Length of an md5 secret: "md5" + 32 lowercase hex digits.
const MD5_SECRET_LEN: usize = 35;

/// Iteration count PostgreSQL uses by default (`scram_iterations`).
pub const SCRAM_DEFAULT_ITERATIONS: u32 = 4096;
const DEFAULT_ITERATIONS: NonZeroU32 = match NonZeroU32::new(SCRAM_DEFAULT_ITERATIONS) {
    Some(n) => n,
    None => panic!("SCRAM_DEFAULT_ITERATIONS must be non-zero"),
};
/// Salt length PostgreSQL uses for new verifiers.
pub const SCRAM_DEFAULT_SALT_LEN: usize = 16;

/// A malformed stored secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The value starts like a SCRAM verifier but is not one. Reported rather
    /// than silently treated as a plaintext password (which PostgreSQL would
    /// do) so that a typo in the auth file is noticed.
    #[error("malformed SCRAM-SHA-256 secret: {0}")]
    MalformedScram(&'static str),
    /// A SCRAM verifier needs at least one PBKDF2 iteration.
    #[error("SCRAM iteration count must be at least 1")]
    ZeroIterations,
}

/// A user's stored credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password; can answer every mechanism.
    Plain(String),
    /// `"md5"` + hex(md5(password + user)), exactly as stored by PostgreSQL.
    Md5(String),
    /// A SCRAM-SHA-256 verifier; cannot answer md5.
    Scram(ScramVerifier),
}

impl Secret {
    /// Classifies a stored value like PostgreSQL's `get_password_type`:
    /// `md5` + 32 lowercase hex digits is md5, `SCRAM-SHA-256$...` is a SCRAM
    /// verifier, anything else is a plaintext password.
    pub fn parse(value: &str) -> Result<Secret, SecretError> {
        if is_md5_secret(value) {
            Ok(Secret::Md5(value.to_owned()))
        } else if value.starts_with(SCRAM_PREFIX) {
            ScramVerifier::parse(value).map(Secret::Scram)
        } else {
            Ok(Secret::Plain(value.to_owned()))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Secret::Md5(_) => f.write_str("Secret::Md5(<redacted>)"),
            Secret::Scram(v) => write!(f, "Secret::Scram({v:?})"),
        }
    }
}

/// Same test as PostgreSQL: prefix, length and the lowercase hex charset
/// (`MD5_PASSWD_CHARSET`); uppercase hex is therefore a plaintext password.
pub(crate) fn is_md5_secret(value: &str) -> bool {
    value.len() == MD5_SECRET_LEN
        && value.strip_prefix("md5").is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A SCRAM-SHA-256 verifier: what the server needs to check a client proof
/// without knowing the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
    pub fn parse(value: &str) -> Result<ScramVerifier, SecretError> {
        use SecretError::MalformedScram as Bad;

        let rest = value
            .strip_prefix(SCRAM_PREFIX)
            .ok_or(Bad("missing \"SCRAM-SHA-256$\" prefix"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(Bad("missing '$' between salt and keys"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(Bad("missing ':' between iterations and salt"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(Bad("missing ':' between StoredKey and ServerKey"))?;

        // u32::from_str accepts a leading '+'; PostgreSQL's strtol would too,
        // so that is harmless. Zero is rejected: it is not a valid PBKDF2 count.
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| Bad("iteration count is not a positive integer"))?;
        if iterations == 0 {
            return Err(SecretError::ZeroIterations);
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| Bad("salt is not valid base64"))?;
        if salt.is_empty() {
            return Err(Bad("salt is empty"));
        }
        let stored_key =
            decode_key(stored_key).ok_or(Bad("StoredKey is not 32 bytes of base64"))?;
        let server_key =
            decode_key(server_key).ok_or(Bad("ServerKey is not 32 bytes of base64"))?;

        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Builds a verifier from a password, as `CREATE ROLE ... PASSWORD` does.
    ///
    /// The password is SASLprep'ed when that succeeds; like PostgreSQL
    /// (`pg_saslprep`) and libpq, invalid UTF-8 or prohibited characters mean
    /// the raw bytes are used instead, so the result matches what any
    /// PostgreSQL client derives from the same password.
    pub fn from_password(
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramVerifier, SecretError> {
        let iterations = NonZeroU32::new(iterations).ok_or(SecretError::ZeroIterations)?;
        Ok(ScramVerifier::derive(password, salt, iterations))
    }

    fn derive(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> ScramVerifier {
        let iterations = iterations.get();
        let (client_key, server_key) = client_and_server_key(password, salt, iterations);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Like [`ScramVerifier::from_password`] with a fresh random 16-byte salt
    /// and PostgreSQL's default 4096 iterations.
    pub fn from_password_random_salt(password: &[u8]) -> ScramVerifier {
        use rand::RngCore as _;
        let mut salt = [0u8; SCRAM_DEFAULT_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramVerifier::derive(password, &salt, DEFAULT_ITERATIONS)
    }

    /// The verifier in PostgreSQL's text form (the inverse of [`ScramVerifier::parse`]).
    /// Deliberately not `Display`, so it is not logged by accident.
    pub fn encode(&self) -> String {
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// H(ClientKey): checks a client proof.
    pub fn stored_key(&self) -> &[u8; 32] {
        &self.stored_key
    }

    /// HMAC(SaltedPassword, "Server Key"): signs the server-final message.
    pub fn server_key(&self) -> &[u8; 32] {
        &self.server_key
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys allow an offline dictionary attack and the stored key, once
        // paired with a sniffed exchange, impersonation: never print them.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn decode_key(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// SASLprep (RFC 4013) when possible, else the raw bytes, as PostgreSQL does.
/// SCRAM's ClientKey and ServerKey for a password (the PBKDF2 step, the
/// expensive part of a SCRAM login).
pub(crate) fn client_and_server_key(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> ([u8; 32], [u8; 32]) {
    let prepared = saslprep_or_raw(password);
    let mut salted_password = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&prepared, salt, iterations, &mut salted_password);
    (
        hmac_sha256(&salted_password, b"Client Key"),
        hmac_sha256(&salted_password, b"Server Key"),
    )
}

pub(crate) fn saslprep_or_raw(password: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(password) {
        Ok(s) => match stringprep::saslprep(s) {
            Ok(prepared) => prepared.into_owned().into_bytes(),
            Err(_) => password.to_vec(),
        },
        Err(_) => password.to_vec(),
    }
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_postgres() {
        let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(Secret::parse(md5).unwrap(), Secret::Md5(md5.to_owned()));
        // Uppercase hex, wrong length, or a plain word: plaintext.
        for plain in [
            "md5A3556571E93B0D20722BA62BE61E8C2D",
            "md5a3556571e93b0d20722ba62be61e8c2",
            "md5",
            "hunter2",
            "",
        ] {
            assert_eq!(
                Secret::parse(plain).unwrap(),
                Secret::Plain(plain.to_owned())
            );
        }
        let scram = postgres_protocol::password::scram_sha_256(b"pw");
        assert!(matches!(Secret::parse(&scram).unwrap(), Secret::Scram(_)));
        // Looks like SCRAM but is broken: an error, not a plaintext password.
        assert!(Secret::parse("SCRAM-SHA-256$4096:abc").is_err());
    }

    #[test]
    fn round_trips_postgres_protocol_verifier() {
        let text = postgres_protocol::password::scram_sha_256(b"pw");
        let v = ScramVerifier::parse(&text).unwrap();
        assert_eq!(v.iterations(), 4096);
        assert_eq!(v.salt().len(), 16);
        assert_eq!(v.encode(), text);
        // Recomputing from the password and the same salt gives the same keys.
        let again = ScramVerifier::from_password(b"pw", v.salt(), 4096).unwrap();
        assert_eq!(again, v);
        let other = ScramVerifier::from_password(b"pW", v.salt(), 4096).unwrap();
        assert_ne!(other, v);
    }

    #[test]
    fn matches_real_postgres_verifiers() {
        // Produced by PostgreSQL 15.18 (initdb -E UTF8, then postgres --single):
        //   SET password_encryption = 'scram-sha-256';
        //   ALTER ROLE postgres PASSWORD <password>;
        //   SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres';
        let cases: [(&[u8], &str); 3] = [
            // PASSWORD 'pw'
            (b"pw", "SCRAM-SHA-256$4096:/0LOgbmZM4lQ71hp00ankw==$3dPm0u9bd36nLgbgM0x/IC9eVgxM/OySH8deZnXrSjo=:PwUH1osVJBY81YfHHoEvKtDgfpvWTbpubV/hVzRxH2Q="),
            // PASSWORD E'a\u00a0b': SASLprep maps the no-break space to ' '.
            ("a\u{a0}b".as_bytes(), "SCRAM-SHA-256$4096:8CAwAec/BPPMYc83BJ7idg==$t2gAUQwEzOK+OoeEIkPPURw6XkJJuLdjVVybUW0YEaY=:fHDOynUvAuYgHrKWVSjnrVGWMAjkCPeQGC85WSAhib4="),
            // PASSWORD E'a\x07b': prohibited by SASLprep, so used raw.
            (b"a\x07b", "SCRAM-SHA-256$4096:jqoDE256DNi7D0jg+RZfoA==$lJO0MkxSyUAcgR1t7shGnb+tc3YygsPSNse9ZGVRPDk=:pR/QNqlpmOdn2MxqOi9gM6djNcuqw6/z5NJDs399igM="),
        ];
        for (password, from_pg) in cases {
            let v = ScramVerifier::parse(from_pg).unwrap();
            assert_eq!(v.encode(), from_pg);
            let ours = ScramVerifier::from_password(password, v.salt(), v.iterations()).unwrap();
            assert_eq!(ours, v, "{from_pg}");
        }
        // The prepared form of the second password gives the same verifier.
        let v = ScramVerifier::parse(cases[1].1).unwrap();
        assert_eq!(
            ScramVerifier::from_password(b"a b", v.salt(), 4096).unwrap(),
            v
        );
    }

    #[test]
    fn invalid_utf8_and_zero_iterations() {
        let salt = b"0123456789abcdef";
        // Invalid UTF-8 cannot be SASLprep'ed: used as-is, no error.
        let raw = ScramVerifier::from_password(b"\xff\xfe", salt, 16).unwrap();
        assert_ne!(
            raw,
            ScramVerifier::from_password(b"\xfe\xff", salt, 16).unwrap()
        );
        assert_eq!(
            ScramVerifier::from_password(b"pw", salt, 0),
            Err(SecretError::ZeroIterations)
        );
    }

    #[test]
    fn rejects_malformed_verifiers() {
        let good = postgres_protocol::password::scram_sha_256(b"pw");
        // Every truncation of a valid verifier is invalid.
        for end in 0..good.len() {
            assert!(
                ScramVerifier::parse(&good[..end]).is_err(),
                "{}",
                &good[..end]
            );
        }
        let key = STANDARD.encode([7u8; 32]);
        let short = STANDARD.encode([7u8; 31]);
        for bad in [
            format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            format!("SCRAM-SHA-256$4096:!!!${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}"),
            format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
        ] {
            assert!(ScramVerifier::parse(&bad).is_err(), "{bad}");
        }
        assert!(ScramVerifier::parse(&format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}")).is_ok());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let v = ScramVerifier::from_password(b"pw", b"salt", 1).unwrap();
        let encoded = v.encode();
        let stored = STANDARD.encode(v.stored_key());
        for (secret, hidden) in [
            (Secret::Plain("hunter2".into()), "hunter2".to_owned()),
            (
                Secret::Md5("md5a3556571e93b0d20722ba62be61e8c2d".into()),
                "a3556571".to_owned(),
            ),
            (Secret::Scram(v), stored),
        ] {
            let shown = format!("{secret:?}");
            assert!(!shown.contains(&hidden), "{shown}");
            assert!(!shown.contains(&encoded), "{shown}");
        }
        assert_eq!(
            format!("{:?}", Secret::Plain("x".into())),
            "Secret::Plain(<redacted>)"
        );
    }
}
