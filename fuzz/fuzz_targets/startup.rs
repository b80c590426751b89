//! The untyped first packets: SSLRequest, GSSENCRequest, CancelRequest,
//! StartupMessage (with `options`), as the listener reads them: length
//! first, then the whole packet.
#![no_main]

use causeway_protocol::startup::{packet_len, parse, parse_options, StartupPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Several packets back to back (SSLRequest, then the startup).
    for _ in 0..4 {
        let len = match packet_len(rest) {
            Ok(Some(n)) => n,
            _ => return,
        };
        assert!(len >= 8);
        let Some(packet) = rest.get(..len) else {
            return;
        };
        if let Ok(StartupPacket::Startup { params, .. }) = parse(packet) {
            for (k, v) in params {
                if k == "options" {
                    let _ = parse_options(v);
                }
            }
        }
        rest = &rest[len..];
    }
});
