//! SCRAM keys derived from a password, cached: the PBKDF2 step of a SCRAM
//! login (4096 HMAC rounds by default) depends only on the password and the
//! server's salt and iteration count, so it is done once per role rather
//! than once per server connection. A burst of new connections (session
//! mode logins, a pool refilling after a restart) then costs the server's
//! SCRAM exchange and nothing more. PgBouncer keeps the keys the same way.

use std::collections::HashMap;
use std::sync::LazyLock;

use causeway_protocol::auth::ScramKeys;
use parking_lot::Mutex;

/// Distinct (password, salt, iterations) remembered; beyond it the cache
/// starts over (roles are few; this only bounds a misconfiguration).
const MAX_ENTRIES: usize = 1024;

type Key = (Vec<u8>, Vec<u8>, u32);

static CACHE: LazyLock<Mutex<HashMap<Key, ScramKeys>>> = LazyLock::new(Default::default);

/// The keys for `password` against a server that stores it with `salt`
/// and `iterations`.
pub(crate) fn keys_for(password: &str, salt: &[u8], iterations: u32) -> Option<ScramKeys> {
    let key = (password.as_bytes().to_vec(), salt.to_vec(), iterations);
    if let Some(k) = CACHE.lock().get(&key) {
        return Some(*k);
    }
    // Computed outside the lock: other logins are not held up.
    let keys = ScramKeys::from_password(password.as_bytes(), salt, iterations)?;
    let mut cache = CACHE.lock();
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(key, keys);
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_keys() {
        let a = keys_for("pw", b"salt", 16).unwrap();
        assert_eq!(keys_for("pw", b"salt", 16), Some(a));
        assert_ne!(keys_for("pw", b"other", 16), Some(a));
        assert_eq!(keys_for("pw", b"salt", 0), None);
    }
}
