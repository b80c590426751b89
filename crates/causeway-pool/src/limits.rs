//! Connection limits shared by several pools (max_db_connections,
//! max_user_connections).

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct Limit {
    max: AtomicU32,
    used: AtomicU32,
}

impl Limit {
    /// `max` 0 = unlimited.
    pub fn new(max: u32) -> Self {
        Limit {
            max: AtomicU32::new(max),
            used: AtomicU32::new(0),
        }
    }

    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn try_take(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (max == 0 || u < max).then_some(u + 1)
            })
            .is_ok()
    }

    pub fn give_back(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts() {
        let l = Limit::new(2);
        assert!(l.try_take());
        assert!(l.try_take());
        assert!(!l.try_take());
        l.give_back();
        assert!(l.try_take());
        let unlimited = Limit::new(0);
        for _ in 0..1000 {
            assert!(unlimited.try_take());
        }
    }
}
