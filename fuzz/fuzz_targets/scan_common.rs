// Shared by scan_client and scan_server (included with `include!`).

use causeway_protocol::scan::{Interest, Scanner, Step};

/// What one walk saw: (tag, length) of every message header or whole
/// frame, in order, and the bytes passed through.
#[derive(Debug, PartialEq, Eq, Default)]
struct Walk {
    seen: Vec<(u8, usize)>,
    passed: usize,
    error: bool,
}

/// Walks `data` handing the scanner at most `chunk` new bytes at a time
/// (as reads from a socket would), checking the scanner's accounting.
fn walk(data: &[u8], chunk: usize, max_len: usize, interest: fn(u8) -> Interest) -> Walk {
    let mut s = Scanner::new();
    let mut w = Walk::default();
    let mut consumed = 0usize;
    let mut avail = chunk.min(data.len());
    loop {
        let buf = &data[consumed..avail];
        match s.step(buf, max_len, interest) {
            Err(_) => {
                w.error = true;
                return w;
            }
            Ok(Step::Pass(n)) => {
                assert!(n > 0 && n <= buf.len(), "Pass({n}) of {} bytes", buf.len());
                consumed += n;
                w.passed += n;
            }
            Ok(Step::Header { tag, len }) => {
                assert!(len >= 4 && len <= max_len);
                assert_eq!(tag, buf[0]);
                w.seen.push((tag, len));
                // The caller forwards the header's bytes as Pass next.
            }
            Ok(Step::Whole { tag, frame }) => {
                assert_eq!(tag, frame[0]);
                assert!(frame.len() >= 5 && frame.len() <= buf.len());
                let len = i32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
                assert_eq!(frame.len(), len + 1);
                w.seen.push((tag, len));
                look_at(tag, causeway_protocol::scan::body(frame));
                consumed += frame.len();
                w.passed += frame.len();
            }
            Ok(Step::NeedMore) => {
                if avail == data.len() {
                    return w;
                }
                avail = (avail + chunk).min(data.len());
            }
        }
    }
}

fn run(data: &[u8], interest: fn(u8) -> Interest) {
    let Some((&c, data)) = data.split_first() else {
        return;
    };
    let chunk = 1 + (c as usize % 64);
    let max_len = 1 << 16;
    let whole = walk(data, data.len().max(1), max_len, interest);
    let pieces = walk(data, chunk, max_len, interest);
    // Socket read sizes never change what is seen.
    assert_eq!(whole, pieces);
    assert!(whole.passed <= data.len());
}
