//! A counted place in a pool (and in the database/user limits), held by
//! a connection for as long as it is open. Its own file so that the
//! server connection (which holds one) and the pool (which hands them
//! out) need not import each other.

use std::sync::{Arc, Weak};

/// What frees the place when the guard drops: the pool.
pub(crate) trait SlotOwner: Send + Sync {
    /// One place is free again; `server` is the connection that used it
    /// (0 if it never connected).
    fn slot_freed(self: Arc<Self>, server: u64);
}

/// Dropping it frees the place and hands it to the oldest waiter.
pub(crate) struct SlotGuard {
    owner: Weak<dyn SlotOwner>,
    armed: bool,
    /// The connection using the slot (0 while connecting).
    server: u64,
}

impl SlotGuard {
    /// A place `owner` has already counted.
    pub(crate) fn new(owner: Weak<dyn SlotOwner>) -> Self {
        SlotGuard {
            owner,
            armed: true,
            server: 0,
        }
    }

    pub(crate) fn set_server(&mut self, id: u64) {
        self.server = id;
    }

    /// The owner undoes the count itself (it holds its lock: dropping
    /// the guard there would re-enter it).
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(owner) = self.owner.upgrade() {
                owner.slot_freed(self.server);
            }
        }
    }
}
