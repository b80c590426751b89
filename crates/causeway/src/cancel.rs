//! Client cancel keys. Each client gets its own BackendKeyData; a
//! CancelRequest carrying it is forwarded to whatever server connection is
//! running that client's query right now, and to none when it is idle.

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

/// A client's key; removes itself from the registry when dropped.
pub struct ClientKey {
    /// The client's id (SHOW CLIENTS, KILL_CLIENT): unique among live clients.
    pub id: u64,
    pub pid: i32,
    pub secret: [u8; 4],
    pub slot: Arc<CancelSlot>,
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
    pub fn repoint(&mut self, pid: i32) {
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
    pub fn register(self: &Arc<Self>) -> ClientKey {
        let slot = Arc::new(CancelSlot::default());
        let mut clients = self.clients.lock();
        // Positive (wraps after 2^31 clients); unique with its secret.
        let (pid, secret) = loop {
            let p = self.next.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            let secret: [u8; 4] = rand::random();
            if p != 0 && !clients.contains_key(&(p, secret)) {
                break (p, secret);
            }
        };
        clients.insert((pid, secret), slot.clone());
        ClientKey {
            id: u64::from(pid as u32),
            pid,
            secret,
            slot,
            registry: self.clone(),
        }
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
        let key = reg.register();
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
    fn session_keys_carry_the_server_pid() {
        let reg = Arc::new(CancelRegistry::default());
        let other = reg.register();
        let mut key = reg.register();
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
