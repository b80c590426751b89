//! Client cancel keys. Each client gets its own BackendKeyData; a
//! CancelRequest carrying it is forwarded to whatever server connection is
//! running that client's query right now, and to none when it is idle.
//!
//! With `peer_id` set, keys follow PgBouncer's peering layout, so that
//! Causeway and PgBouncer peers can hand cancels to each other: of the
//! 8-byte key (pid, then secret), bytes 1 and 2 hold the peer id (low byte
//! first) and the low two bits of the last byte a forwarding TTL, 3 in a
//! key as handed out. A key of another peer is sent on to it (see
//! peers.rs) with the TTL at 0, so it travels one hop and never loops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use causeway_pool::CancelTarget;
use parking_lot::Mutex;

/// What a session shares with the registry: the server it is attached to.
#[derive(Debug, Default)]
pub struct CancelSlot {
    attached: Mutex<Option<Arc<CancelTarget>>>,
}

impl CancelSlot {
    pub fn attach(&self, t: &Arc<CancelTarget>) {
        *self.attached.lock() = Some(t.clone());
    }

    /// Must happen before the server connection goes back to the pool.
    pub fn detach(&self) {
        *self.attached.lock() = None;
    }

    fn target(&self) -> Option<Arc<CancelTarget>> {
        self.attached.lock().clone()
    }
}

#[derive(Default)]
pub struct CancelRegistry {
    next: AtomicI32,
    /// By the (pid, secret) the client was told in its BackendKeyData. The
    /// pid alone is not unique: a session-mode client is told its server's
    /// real pid, which may equal another server's or a counter value.
    clients: Mutex<HashMap<KeyData, Arc<CancelSlot>>>,
}

/// (pid, secret) as told in BackendKeyData.
type KeyData = (i32, [u8; 4]);

/// The forwarding TTL bits in the last byte of a peered key.
const TTL_MASK: u8 = 0x03;

/// The peer id a key carries (0: none).
fn key_peer(pid: i32) -> u16 {
    let b = pid.to_be_bytes();
    u16::from(b[1]) | (u16::from(b[2]) << 8)
}

/// Where a CancelRequest goes.
#[derive(Debug)]
pub enum CancelRoute {
    /// One of this instance's clients: its server, if it is running a query.
    Here(Option<Arc<CancelTarget>>),
    /// Another peer's client: the key to send on, TTL spent.
    Peer { id: u16, pid: i32, secret: [u8; 4] },
    /// Another peer's key that has been forwarded already.
    Spent,
}

/// A client's key; removes itself from the registry when dropped.
pub struct ClientKey {
    /// The client's id (SHOW CLIENTS, KILL_CLIENT): unique among live
    /// clients (32 bits: packs beside the pid and secret).
    pub id: u32,
    pub pid: i32,
    pub secret: [u8; 4],
    pub slot: Arc<CancelSlot>,
    /// The pid carries the peer id, so it stays Causeway's own.
    peered: bool,
    registry: Arc<CancelRegistry>,
}

impl Drop for ClientKey {
    fn drop(&mut self) {
        self.registry
            .clients
            .lock()
            .remove(&(self.pid, self.secret));
    }
}

impl ClientKey {
    /// Session mode: the client is told its server's real pid (so that
    /// `pg_backend_pid()` and `pg_terminate_backend` mean what they say);
    /// the secret stays Causeway's own, and cancels are routed by both.
    /// Not with peering, where the pid names the instance.
    pub fn repoint(&mut self, pid: i32) {
        if self.peered {
            return;
        }
        let mut clients = self.registry.clients.lock();
        let slot = clients
            .remove(&(self.pid, self.secret))
            .unwrap_or_else(|| self.slot.clone());
        while clients.contains_key(&(pid, self.secret)) {
            self.secret = rand::random();
        }
        self.pid = pid;
        clients.insert((pid, self.secret), slot);
    }
}

impl CancelRegistry {
    /// A new client's key; `peer_id` (0 = no peering) goes into it.
    pub fn register(self: &Arc<Self>, peer_id: u16) -> ClientKey {
        let slot = Arc::new(CancelSlot::default());
        let mut clients = self.clients.lock();
        // Positive (wraps after 2^31 clients, 2^15 with peering); unique
        // with its secret.
        let (pid, secret) = loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let mut secret: [u8; 4] = rand::random();
            let p = if peer_id == 0 {
                n & 0x7fff_ffff
            } else {
                secret[3] |= TTL_MASK;
                let [id_lo, id_hi] = peer_id.to_le_bytes();
                i32::from_be_bytes([(n >> 8) as u8 & 0x7f, id_lo, id_hi, n as u8])
            };
            if p != 0 && !clients.contains_key(&(p, secret)) {
                break (p, secret);
            }
        };
        clients.insert((pid, secret), slot.clone());
        ClientKey {
            id: pid as u32,
            pid,
            secret,
            slot,
            peered: peer_id != 0,
            registry: self.clone(),
        }
    }

    /// Where a CancelRequest with this key goes, for an instance with
    /// `peer_id` (0 = no peering).
    pub fn route(&self, peer_id: u16, pid: i32, secret: &[u8]) -> CancelRoute {
        let Ok(mut secret) = <[u8; 4]>::try_from(secret) else {
            return CancelRoute::Here(None);
        };
        if peer_id == 0 {
            return CancelRoute::Here(self.lookup(pid, &secret));
        }
        let owner = key_peer(pid);
        if owner != 0 && owner != peer_id {
            if secret[3] & TTL_MASK == 0 {
                return CancelRoute::Spent;
            }
            secret[3] &= !TTL_MASK;
            return CancelRoute::Peer {
                id: owner,
                pid,
                secret,
            };
        }
        // Ours, perhaps forwarded by a peer (which spent the TTL bits).
        secret[3] |= TTL_MASK;
        CancelRoute::Here(self.lookup(pid, &secret))
    }

    /// The server to cancel for this key, if the key is valid and the client
    /// is running something.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<Arc<CancelTarget>> {
        let secret: [u8; 4] = secret.try_into().ok()?;
        let slot = self.clients.lock().get(&(pid, secret))?.clone();
        slot.target()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_only_reaches_attached_server_with_right_secret() {
        let reg = Arc::new(CancelRegistry::default());
        let key = reg.register(0);
        assert!(
            reg.lookup(key.pid, &key.secret).is_none(),
            "idle client: nothing to cancel"
        );
        let t = Arc::new(CancelTarget::new(
            causeway_net::PeerAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            77,
            vec![1, 2, 3, 4],
        ));
        key.slot.attach(&t);
        assert_eq!(reg.lookup(key.pid, &key.secret).unwrap().pid, 77);
        let mut wrong = key.secret;
        wrong[0] ^= 1;
        assert!(reg.lookup(key.pid, &wrong).is_none());
        key.slot.detach();
        assert!(
            reg.lookup(key.pid, &key.secret).is_none(),
            "released: stale cancel goes nowhere"
        );
        let pid = key.pid;
        drop(key);
        assert!(reg.lookup(pid, &[0; 4]).is_none());
        assert_eq!(reg.len(), 0);
    }

    #[test]
    fn peered_keys_carry_the_peer_id_and_route_one_hop() {
        let reg = Arc::new(CancelRegistry::default());
        let mut key = reg.register(300);
        let (pid, secret) = (key.pid, key.secret);
        assert!(pid > 0);
        assert_eq!(key_peer(pid), 300);
        assert_eq!(secret[3] & TTL_MASK, TTL_MASK, "TTL 3 as handed out");
        key.repoint(4242);
        assert_eq!(key.pid, pid, "the pid names the instance: kept");
        let t = Arc::new(CancelTarget::new(
            causeway_net::PeerAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            77,
            vec![1, 2, 3, 4],
        ));
        key.slot.attach(&t);
        // Instance 300 itself: the key as handed out, or as a peer forwards it.
        assert!(matches!(
            reg.route(300, pid, &secret),
            CancelRoute::Here(Some(_))
        ));
        let mut spent = secret;
        spent[3] &= !TTL_MASK;
        assert!(matches!(
            reg.route(300, pid, &spent),
            CancelRoute::Here(Some(_))
        ));
        // Instance 7: forwarded to 300 with the TTL spent.
        match reg.route(7, pid, &secret) {
            CancelRoute::Peer {
                id,
                pid: p,
                secret: s,
            } => {
                assert_eq!((id, p), (300, pid));
                assert_eq!(s, spent);
                // What 7 sends is never sent on again by another instance.
                assert!(matches!(reg.route(9, p, &s), CancelRoute::Spent));
            }
            other => panic!("{other:?}"),
        }
        // Keys of 2^15 clients stay distinct and positive.
        let keys: Vec<_> = (0..40_000).map(|_| reg.register(16383)).collect();
        assert!(keys.iter().all(|k| k.pid > 0 && key_peer(k.pid) == 16383));
    }

    #[test]
    fn session_keys_carry_the_server_pid() {
        let reg = Arc::new(CancelRegistry::default());
        let other = reg.register(0);
        let mut key = reg.register(0);
        let (id, secret) = (key.id, key.secret);
        assert_ne!(secret, [0; 4], "random");
        // Told the same pid as another client: the secrets keep them apart.
        key.repoint(other.pid);
        assert_eq!((key.id, key.pid), (id, other.pid));
        let t = Arc::new(CancelTarget::new(
            causeway_net::PeerAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            other.pid,
            vec![9, 9, 9, 9],
        ));
        key.slot.attach(&t);
        assert!(reg.lookup(key.pid, &key.secret).is_some());
        assert!(
            reg.lookup(other.pid, &other.secret).is_none(),
            "other is idle"
        );
        assert_ne!((key.pid, key.secret), (other.pid, other.secret));
        let _ = secret;
        drop(key);
        assert_eq!(reg.len(), 1);
    }
}
