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

struct Entry {
    secret: [u8; 4],
    slot: Arc<CancelSlot>,
}

#[derive(Default)]
pub struct CancelRegistry {
    next_pid: AtomicI32,
    clients: Mutex<HashMap<i32, Entry>>,
}

/// A client's key; removes itself from the registry when dropped.
pub struct ClientKey {
    pub pid: i32,
    pub secret: [u8; 4],
    pub slot: Arc<CancelSlot>,
    registry: Arc<CancelRegistry>,
}

impl Drop for ClientKey {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.pid);
    }
}

impl CancelRegistry {
    pub fn register(self: &Arc<Self>) -> ClientKey {
        let secret: [u8; 4] = rand::random();
        let slot = Arc::new(CancelSlot::default());
        let mut clients = self.clients.lock();
        // Positive, unique among live clients (wraps after 2^31 clients).
        let pid = loop {
            let p = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if p != 0 && !clients.contains_key(&p) {
                break p;
            }
        };
        clients.insert(
            pid,
            Entry {
                secret,
                slot: slot.clone(),
            },
        );
        ClientKey {
            pid,
            secret,
            slot,
            registry: self.clone(),
        }
    }

    /// The server to cancel for this key, if the key is valid and the client
    /// is running something.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<Arc<CancelTarget>> {
        let clients = self.clients.lock();
        let e = clients.get(&pid)?;
        // Constant-time enough for 4 bytes: compare all of them.
        let ok = secret.len() == 4
            && e.secret
                .iter()
                .zip(secret)
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if !ok {
            return None;
        }
        e.slot.target()
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
}
