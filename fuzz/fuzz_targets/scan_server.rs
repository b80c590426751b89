//! The server-side frame walk: the messages Causeway reads from a server
//! (ReadyForQuery, ParameterStatus, ErrorResponse, CommandComplete,
//! BackendKeyData, Authentication) parsed as the pool and the pump do.
#![no_main]

use causeway_protocol::auth::messages::parse_auth_request;
use causeway_protocol::backend;
use libfuzzer_sys::fuzz_target;

include!("scan_common.rs");

fn interest(tag: u8) -> Interest {
    match tag {
        b'Z' | b'S' | b'E' | b'N' | b'C' | b'K' | b'R' | b'1' | b'2' | b't' | b'n' => {
            Interest::Whole
        }
        b'G' | b'H' | b'W' => Interest::Header,
        _ => Interest::Pass,
    }
}

fn look_at(tag: u8, body: &[u8]) {
    match tag {
        b'Z' => {
            let _ = backend::parse_ready_status(body);
        }
        b'S' => {
            let _ = backend::parse_parameter_status(body);
        }
        b'E' | b'N' => {
            if let Ok(f) = backend::parse_error_fields(body) {
                let _ = (f.code.len(), f.message.len());
            }
        }
        b'K' => {
            let _ = backend::parse_backend_key_data(body);
        }
        b'R' => {
            let _ = parse_auth_request(body);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| run(data, interest));
