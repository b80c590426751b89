//! Read buffers for clients, recycled per thread, so an idle client holds
//! none and an active one never allocates per transaction.

use std::cell::RefCell;

use bytes::BytesMut;

const SIZE: usize = 16 * 1024;
/// Buffers kept per worker thread; more are freed.
const KEEP: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

pub fn give(mut buf: BytesMut) {
    buf.clear();
    // Reclaims the space in front of the view when the buffer is unique.
    buf.reserve(SIZE);
    if buf.capacity() > 4 * SIZE {
        return; // grown for a big message: let it go
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}
