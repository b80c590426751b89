//! Slots for logins in progress. A connection holds one from accept until
//! it is logged in (or gone), so bare sockets and slow logins cannot take
//! the places of logged-in clients (max_client_conn): they are bounded in
//! all (`client_login_slots`) and per source address
//! (`client_login_slots_per_addr`). A connection that finds no slot is
//! still answered properly (SSLRequest first, then 53300), under a short
//! deadline and its own bound of the same size; past that it is closed
//! without a word.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use causeway_config::Config;

#[derive(Default)]
pub struct LoginSlots {
    total: AtomicU32,
    /// Connections being refused (answered, then closed).
    refusing: AtomicU32,
    per_addr: Mutex<HashMap<IpAddr, u32>>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Total,
    Addr,
}

/// A login in progress; frees its slot when dropped.
pub struct LoginSlot {
    slots: Arc<LoginSlots>,
    addr: Option<IpAddr>,
}

/// A connection being refused; frees its place when dropped.
pub struct Refusing {
    slots: Arc<LoginSlots>,
}

/// Takes one from `counter` if it is below `max`.
fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// A login slot for a connection from `addr` (None: unix socket, counted
/// in the total only).
pub fn acquire(
    slots: &Arc<LoginSlots>,
    cfg: &Config,
    addr: Option<IpAddr>,
) -> Result<LoginSlot, Full> {
    if !take(&slots.total, cfg.client_login_slots) {
        return Err(Full::Total);
    }
    if let Some(ip) = addr {
        let mut map = slots.per_addr.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= cfg.client_login_slots_per_addr {
            if *n == 0 {
                map.remove(&ip);
            }
            drop(map);
            slots.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Addr);
        }
        *n += 1;
    }
    Ok(LoginSlot {
        slots: slots.clone(),
        addr,
    })
}

/// A place to answer a connection that got no login slot; None past the
/// bound (`client_login_slots` of them): close it without a reply.
pub fn refusing(slots: &Arc<LoginSlots>, cfg: &Config) -> Option<Refusing> {
    take(&slots.refusing, cfg.client_login_slots).then(|| Refusing {
        slots: slots.clone(),
    })
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        let slots = &self.slots;
        if let Some(ip) = self.addr {
            let mut map = slots.per_addr.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        slots.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.slots.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}
