//! Server-side statement names: `causeway_<id>` per distinct statement,
//! and the reserved names that make a request a no-op or a failure.

/// The prefix of server-side statement names.
pub(super) const PREFIX: &[u8] = b"causeway_";
/// A statement name never prepared anywhere (Close of it is a no-op that
/// still gets a CloseComplete; Bind/Describe of it fail).
pub(super) const NONE_NAME: &[u8] = b"causeway_0";
/// A Parse that always fails (its error is replaced by 42P05).
pub(super) const DUP_NAME: &[u8] = b"causeway_dup";
pub(super) const DUP_IDENTITY: &[u8] = b"causeway_dup\0\0\0";
/// Put in front of the streamed text of a large Parse reusing an open name,
/// so that it fails like [`DUP_IDENTITY`] (then replaced by 42P05).
pub(super) const DUP_TEXT_PREFIX: &[u8] = b"causeway_dup ";

/// The server-side name of statement `id`, formatted on the stack.
pub struct ServerName {
    buf: [u8; 32],
    len: usize,
}

impl ServerName {
    pub fn new(id: u64) -> Self {
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 20];
        let mut n = id;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
        ServerName {
            buf,
            len: PREFIX.len() + d.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
