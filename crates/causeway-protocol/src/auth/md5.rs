//! PostgreSQL's md5 password scheme (AuthenticationMD5Password).
//!
//! Stored form: `"md5" + hex(md5(password + user))`.
//! Wire response: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.

use std::fmt::Write as _;

use ::md5::{Digest, Md5};
use subtle::ConstantTimeEq as _;

use super::secret::Secret;

/// `"md5" + hex(md5(password + user))`: the value PostgreSQL stores.
pub fn md5_password_hash(user: &str, password: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(password.as_bytes());
    md5.update(user.as_bytes());
    md5_hex(md5)
}

/// The response to an md5 challenge: `"md5" + hex(md5(hex_part + salt))`.
///
/// `stored` is the `md5`-prefixed stored hash (the prefix is optional; a bare
/// 32-digit hex hash is used as-is since hex never starts with `m`).
pub fn md5_salted_response(stored: &str, salt: [u8; 4]) -> String {
    let hex_part = stored.strip_prefix("md5").unwrap_or(stored);
    let mut md5 = Md5::new();
    md5.update(hex_part.as_bytes());
    md5.update(salt);
    md5_hex(md5)
}

/// Checks a client's md5 response against a stored secret.
///
/// Works from a plaintext or an md5 secret; a SCRAM verifier cannot answer md5
/// (the password is not recoverable from it), so that is always `false`.
/// The comparison is constant-time so the response cannot be guessed byte by
/// byte from timing.
pub fn verify_md5_response(
    secret: &Secret,
    user: &str,
    salt: [u8; 4],
    client_response: &str,
) -> bool {
    let expected = match secret {
        Secret::Plain(password) => md5_salted_response(&md5_password_hash(user, password), salt),
        Secret::Md5(stored) => md5_salted_response(stored, salt),
        Secret::Scram(_) => return false,
    };
    // The length (always 35) is public; only the content needs hiding.
    expected.as_bytes().ct_eq(client_response.as_bytes()).into()
}

fn md5_hex(md5: Md5) -> String {
    let mut out = String::with_capacity(35);
    out.push_str("md5");
    for byte in md5.finalize() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python's hashlib:
    //   h = hashlib.md5(b"secretuser").hexdigest()
    //     -> "20eb1b22a92b5c573dc1eb4331fc49ee"
    //   hashlib.md5(h.encode() + bytes([1, 2, 3, 4])).hexdigest()
    //     -> "fccef98e4f1cf6cbe96b743fad4e8bd0"
    //   hashlib.md5(h.encode() + bytes([0xde, 0xad, 0xbe, 0xef])).hexdigest()
    //     -> "90a95cfdc774174cda9be529cdd2ebbf"
    const HASH: &str = "md520eb1b22a92b5c573dc1eb4331fc49ee";
    const RESPONSE_1234: &str = "md5fccef98e4f1cf6cbe96b743fad4e8bd0";
    const RESPONSE_DEADBEEF: &str = "md590a95cfdc774174cda9be529cdd2ebbf";

    #[test]
    fn hash_matches_known_values() {
        assert_eq!(md5_password_hash("user", "secret"), HASH);
        // From PostgreSQL 15.18: SET password_encryption = 'md5';
        // ALTER ROLE postgres PASSWORD 'secret'; SELECT rolpassword ...
        assert_eq!(
            md5_password_hash("postgres", "secret"),
            "md553f48b7c4b76a86ce72276c5755f217d"
        );
    }

    #[test]
    fn salted_response_matches_known_values() {
        assert_eq!(md5_salted_response(HASH, [1, 2, 3, 4]), RESPONSE_1234);
        assert_eq!(
            md5_salted_response(HASH, [0xde, 0xad, 0xbe, 0xef]),
            RESPONSE_DEADBEEF
        );
        // The "md5" prefix on the stored hash is optional.
        assert_eq!(md5_salted_response(&HASH[3..], [1, 2, 3, 4]), RESPONSE_1234);
    }

    #[test]
    fn verify_from_plain_and_md5_secrets() {
        let salt = [1, 2, 3, 4];
        let plain = Secret::Plain("secret".into());
        let md5 = Secret::Md5(HASH.into());
        for secret in [&plain, &md5] {
            assert!(verify_md5_response(secret, "user", salt, RESPONSE_1234));
            // Wrong salt, wrong user, truncated, garbage: rejected.
            assert!(!verify_md5_response(secret, "user", [0; 4], RESPONSE_1234));
            assert!(!verify_md5_response(
                secret,
                "user",
                salt,
                &RESPONSE_1234[..34]
            ));
            assert!(!verify_md5_response(secret, "user", salt, ""));
            assert!(!verify_md5_response(
                secret,
                "user",
                salt,
                "\u{0}garbage\u{fffd}"
            ));
        }
        // From a plaintext secret the user name is part of the hash; an md5
        // secret already has it baked in, as in PostgreSQL.
        assert!(!verify_md5_response(&plain, "other", salt, RESPONSE_1234));
        assert!(!verify_md5_response(
            &Secret::Plain("wrong".into()),
            "user",
            salt,
            RESPONSE_1234
        ));
    }

    #[test]
    fn scram_secret_cannot_verify_md5() {
        let v = super::super::secret::ScramVerifier::from_password(b"secret", b"salt", 1).unwrap();
        assert!(!verify_md5_response(
            &Secret::Scram(v),
            "user",
            [1, 2, 3, 4],
            RESPONSE_1234
        ));
    }
}
