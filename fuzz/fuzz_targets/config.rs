//! The configuration loader (figment over TOML, then validation): any text
//! gives a Config or an error, never a panic; and an error never repeats a
//! secret-looking value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match causeway_config::load_str(text) {
        Ok(c) => {
            let _ = c.masked();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
