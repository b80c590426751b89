//! The SCRAM-SHA-256 server exchange against a stored verifier: arbitrary
//! client-first and client-final messages (split at the first 0xFF byte).
//! Never panics, and never authenticates without the password.
#![no_main]

use causeway_protocol::auth::{ScramServer, ScramVerifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn verifier() -> &'static ScramVerifier {
    static V: OnceLock<ScramVerifier> = OnceLock::new();
    // Few iterations: the fuzzer explores parsing, not PBKDF2.
    V.get_or_init(|| {
        ScramVerifier::from_password(b"fuzz-secret", b"0123456789abcdef", 16)
            .expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut server = ScramServer::new(verifier().clone());
    if server.handle_client_first(first).is_ok() {
        let _ = server.handle_client_final(last);
    }
    assert!(!server.is_authenticated(), "authenticated without the password");
});
