//! The auth_file (userlist.txt) parser and the secret formats in it.
#![no_main]

use causeway_protocol::auth::userlist::parse_userlist;
use causeway_protocol::auth::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(users) = parse_userlist(text) {
        for (user, secret) in users {
            assert!(!user.is_empty());
            let _ = format!("{secret:?}");
        }
    }
    let _ = Secret::parse(text);
});
