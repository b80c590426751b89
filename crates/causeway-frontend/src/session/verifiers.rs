//! SCRAM verifiers for plaintext auth_file passwords, derived once per
//! password rather than at every login. Deriving one is PBKDF2 (4096 HMAC
//! rounds), which would otherwise run on a runtime thread for every client
//! login and hold up other sessions during a burst of logins. A fixed salt
//! per password is what PostgreSQL itself does (its stored verifier).
//! Unknown users are checked against one random verifier per process, so
//! they cost the same as known ones and the timing reveals nothing.

use std::collections::HashMap;
use std::sync::LazyLock;

use causeway_protocol::auth::ScramVerifier;
use parking_lot::Mutex;

/// Passwords remembered; beyond it the cache starts over.
const MAX_ENTRIES: usize = 4096;

static PLAIN: LazyLock<Mutex<HashMap<String, ScramVerifier>>> = LazyLock::new(Default::default);

static UNKNOWN: LazyLock<ScramVerifier> =
    LazyLock::new(|| ScramVerifier::from_password_random_salt(&rand::random::<[u8; 16]>()));

/// The verifier for a plaintext password.
pub fn plain(password: &str) -> ScramVerifier {
    if let Some(v) = PLAIN.lock().get(password) {
        return v.clone();
    }
    let v = ScramVerifier::from_password_random_salt(password.as_bytes());
    let mut cache = PLAIN.lock();
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.entry(password.to_string()).or_insert(v).clone()
}

/// The verifier an unknown user is checked against.
pub fn unknown() -> ScramVerifier {
    UNKNOWN.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_verifier_per_password() {
        let a = plain("pw");
        assert_eq!(plain("pw").salt(), a.salt());
        assert_ne!(plain("other").salt(), a.salt());
        assert_eq!(unknown().salt(), unknown().salt());
    }
}
