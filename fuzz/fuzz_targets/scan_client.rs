//! The client-side frame walk: Causeway's interests in a client's stream
//! (as session/pump.rs asks), and the frontend parsers on the frames it
//! looks at. Feeding the bytes in pieces must see exactly what feeding
//! them at once sees.
#![no_main]

use causeway_protocol::frontend;
use libfuzzer_sys::fuzz_target;

include!("scan_common.rs");

fn interest(tag: u8) -> Interest {
    match tag {
        b'Q' | b'P' | b'B' | b'C' | b'D' => Interest::Whole,
        b'S' | b'F' | b'X' | b'E' | b'H' | b'd' | b'c' | b'f' => Interest::Header,
        _ => Interest::Pass,
    }
}

fn look_at(tag: u8, body: &[u8]) {
    match tag {
        b'Q' => {
            if let Some(sql) = frontend::query_text(body) {
                assert!(sql.len() < body.len());
            }
        }
        b'P' => {
            let _ = frontend::parse_statement(body);
        }
        b'B' => {
            let _ = frontend::bind_names(body);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| run(data, interest));
