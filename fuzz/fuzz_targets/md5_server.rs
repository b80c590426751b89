//! The md5 server check: an arbitrary response (and user name) against
//! each kind of stored secret. Never panics; accepts only the right answer.
#![no_main]

use causeway_protocol::auth::md5::{md5_password_hash, md5_salted_response, verify_md5_response};
use causeway_protocol::auth::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let salt = [data[0], data[1], data[2], data[3]];
    let text = String::from_utf8_lossy(&data[4..]);
    let (user, response) = text.split_once('\n').unwrap_or(("u", &text));
    let stored = md5_password_hash(user, "pw");
    let right = md5_salted_response(&stored, salt);
    for secret in [
        Secret::parse("pw").unwrap(),
        Secret::parse(&stored).unwrap(),
    ] {
        let ok = verify_md5_response(&secret, user, salt, response);
        assert_eq!(ok, response == right, "user {user:?} response {response:?}");
    }
    if let Ok(secret) = Secret::parse(response) {
        let _ = verify_md5_response(&secret, user, salt, &right);
    }
});
