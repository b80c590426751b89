//! Client buffers, recycled per thread, so an idle client holds none and an
//! active one never allocates per transaction: read buffers, and the small
//! buffers for messages Causeway writes itself.

use std::cell::RefCell;

use bytes::BytesMut;

const SIZE: usize = 16 * 1024;
/// Buffers kept per worker thread; more are freed. Enough for the clients
/// of one thread active at once; a login burst leaves at most this many
/// (1 MB) behind.
const KEEP: usize = 64;
/// Output buffers: room for the usual welcome, error or token message.
const OUT_SIZE: usize = 512;
const OUT_KEEP: usize = 1024;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static FREE_OUT: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
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

pub fn take_out() -> BytesMut {
    FREE_OUT
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(OUT_SIZE))
}

pub fn give_out(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() > 4 * OUT_SIZE {
        return;
    }
    FREE_OUT.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < OUT_KEEP {
            f.push(buf);
        }
    });
}
