//! Connection limits shared by several pools (max_db_connections,
//! max_user_connections), and the pools blocked on them.
//!
//! A pool whose oldest waiter finds a limit full registers itself on that
//! limit, under the limit's lock (so a place freed at the same moment is
//! never missed). When a place frees, the limit wakes the blocked pools
//! in the order they registered, one at a time while room lasts: each
//! takes what its waiters need or, having none left, lets the wake pass
//! to the next.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// A pool waiting for room under a limit.
pub(crate) trait Blocked: Send + Sync {
    /// The limit has room: give it to the oldest waiters (registering
    /// again if a limit is still in the way), or do nothing.
    fn room(self: Arc<Self>);
}

pub struct Limit {
    state: Mutex<LimitState>,
}

struct LimitState {
    /// 0 = unlimited.
    max: u32,
    used: u32,
    /// Pools to wake when a place frees, oldest first, each at most once.
    blocked: VecDeque<Weak<dyn Blocked>>,
}

impl LimitState {
    fn has_room(&self) -> bool {
        self.max == 0 || self.used < self.max
    }

    fn block(&mut self, who: Option<&Weak<dyn Blocked>>) {
        if let Some(who) = who {
            if !self.blocked.iter().any(|b| Weak::ptr_eq(b, who)) {
                self.blocked.push_back(who.clone());
            }
        }
    }
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Limit")
            .field("max", &s.max)
            .field("used", &s.used)
            .field("blocked", &s.blocked.len())
            .finish()
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit::new(0)
    }
}

impl Limit {
    /// `max` 0 = unlimited.
    pub fn new(max: u32) -> Self {
        Limit {
            state: Mutex::new(LimitState {
                max,
                used: 0,
                blocked: VecDeque::new(),
            }),
        }
    }

    /// A reload: blocked pools get any room the new maximum makes.
    pub fn set_max(&self, max: u32) {
        self.state.lock().max = max;
        self.wake();
    }

    pub fn used(&self) -> u32 {
        self.state.lock().used
    }

    /// Takes one place in both limits, or none. When one is full, `who`
    /// (if given) is registered there to be woken when it has room.
    /// Lock order: the database limit, then the user's (always).
    pub(crate) fn take_pair(db: &Limit, user: &Limit, who: Option<&Weak<dyn Blocked>>) -> bool {
        let mut d = db.state.lock();
        if !d.has_room() {
            d.block(who);
            return false;
        }
        if std::ptr::eq(db, user) {
            // One limit serving as both (tests): one place.
            d.used += 1;
            return true;
        }
        let mut u = user.state.lock();
        if !u.has_room() {
            u.block(who);
            return false;
        }
        d.used += 1;
        u.used += 1;
        true
    }

    /// Gives one place back. The caller calls [`Limit::wake`] once it
    /// holds no pool lock (waking takes the blocked pools' locks).
    pub(crate) fn give_back(&self) {
        let mut s = self.state.lock();
        s.used = s.used.saturating_sub(1);
    }

    /// Wakes blocked pools, oldest first, while the limit has room and
    /// someone is blocked. O(1) per pool woken.
    pub(crate) fn wake(&self) {
        loop {
            let next = {
                let mut s = self.state.lock();
                if !s.has_room() {
                    return;
                }
                loop {
                    match s.blocked.pop_front() {
                        None => return,
                        Some(w) => {
                            if let Some(p) = w.upgrade() {
                                break p;
                            }
                        }
                    }
                }
            };
            next.room();
        }
    }

    #[cfg(test)]
    pub(crate) fn blocked(&self) -> usize {
        self.state.lock().blocked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn limit_counts() {
        let l = Limit::new(2);
        let unlimited = Limit::new(0);
        assert!(Limit::take_pair(&l, &unlimited, None));
        assert!(Limit::take_pair(&l, &unlimited, None));
        assert!(!Limit::take_pair(&l, &unlimited, None));
        assert_eq!(l.used(), 2);
        l.give_back();
        assert!(Limit::take_pair(&l, &unlimited, None));
        for _ in 0..1000 {
            assert!(Limit::take_pair(&unlimited, &unlimited, None));
        }
    }

    /// A blocked pool that takes one place per wake, up to `wants`.
    struct Taker {
        limit: Arc<Limit>,
        wants: AtomicU32,
        woken: AtomicU32,
        me: Weak<dyn Blocked>,
    }

    impl Blocked for Taker {
        fn room(self: Arc<Self>) {
            self.woken.fetch_add(1, Ordering::Relaxed);
            while self.wants.load(Ordering::Relaxed) > 0 {
                let none = Limit::new(0);
                if !Limit::take_pair(&self.limit, &none, Some(&self.me)) {
                    return;
                }
                self.wants.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn taker(limit: &Arc<Limit>, wants: u32) -> Arc<Taker> {
        Arc::new_cyclic(|me: &Weak<Taker>| Taker {
            limit: limit.clone(),
            wants: AtomicU32::new(wants),
            woken: AtomicU32::new(0),
            me: me.clone(),
        })
    }

    #[test]
    fn freed_place_goes_to_the_first_blocked_pool_and_passes_over_one_that_left() {
        let limit = Arc::new(Limit::new(1));
        let none = Limit::new(0);
        assert!(Limit::take_pair(&limit, &none, None));
        let (a, b) = (taker(&limit, 0), taker(&limit, 1));
        // `a` registered, then its waiters left (wants 0); `b` after it.
        assert!(!Limit::take_pair(&limit, &none, Some(&a.me)));
        assert!(!Limit::take_pair(&limit, &none, Some(&b.me)));
        assert!(!Limit::take_pair(&limit, &none, Some(&b.me)));
        assert_eq!(limit.blocked(), 2, "registered once each");
        limit.give_back();
        limit.wake();
        assert_eq!(a.woken.load(Ordering::Relaxed), 1);
        assert_eq!(b.woken.load(Ordering::Relaxed), 1, "the wake passed on");
        assert_eq!(b.wants.load(Ordering::Relaxed), 0, "b took the place");
        assert_eq!(limit.used(), 1);
        assert_eq!(limit.blocked(), 0);
    }

    #[test]
    fn raising_the_maximum_wakes_blocked_pools() {
        let limit = Arc::new(Limit::new(1));
        let none = Limit::new(0);
        assert!(Limit::take_pair(&limit, &none, None));
        let a = taker(&limit, 3);
        assert!(!Limit::take_pair(&limit, &none, Some(&a.me)));
        limit.set_max(3);
        assert_eq!(a.wants.load(Ordering::Relaxed), 1, "two places taken");
        assert_eq!(limit.blocked(), 1, "blocked again for the third");
    }
}
