//! Which renamed prepared statements a server connection holds, as a
//! small LRU (the bound is `max_prepared_statements`).

use std::collections::HashMap;

/// Statement ids (see the session's registry) prepared on one server
/// connection, with the tick of their last use.
#[derive(Debug, Default)]
pub struct StatementCache {
    used: HashMap<u64, u64>,
    tick: u64,
    /// Entries used at or after this tick are pinned: a Bind of the current
    /// attachment may still need them (its portals die with the statement).
    pinned_from: u64,
    /// Outdated statements still on the server, to close before the next
    /// Parse on it.
    stale: Vec<u64>,
}

impl StatementCache {
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.used.contains_key(&id)
    }

    /// A new attachment starts: what it touches from now on is pinned.
    pub fn begin_pin(&mut self) {
        self.tick += 1;
        self.pinned_from = self.tick + 1;
    }

    /// Marks `id` used now (if present).
    pub fn touch(&mut self, id: u64) {
        if let Some(t) = self.used.get_mut(&id) {
            self.tick += 1;
            *t = self.tick;
        }
    }

    /// The least recently used unpinned statement to close before one more
    /// is added under `cap`, if the cache is full. It is removed.
    pub fn evict_for_one(&mut self, cap: usize) -> Option<u64> {
        if self.used.len() < cap.max(1) {
            return None;
        }
        let (&id, _) = self
            .used
            .iter()
            .filter(|(_, &t)| t < self.pinned_from)
            .min_by_key(|(_, &t)| t)?;
        self.used.remove(&id);
        Some(id)
    }

    /// Records `id` as prepared (and used now).
    pub fn insert(&mut self, id: u64) {
        self.tick += 1;
        self.used.insert(id, self.tick);
    }

    pub fn remove(&mut self, id: u64) {
        self.used.remove(&id);
    }

    /// DISCARD ALL / DEALLOCATE ALL ran on the server.
    pub fn clear(&mut self) {
        self.used.clear();
        self.stale.clear();
    }

    /// `id` is outdated on the server: no longer used, closed later.
    pub fn mark_stale(&mut self, id: u64) {
        self.used.remove(&id);
        if !self.stale.contains(&id) {
            self.stale.push(id);
        }
    }

    /// An outdated statement to close now, if any.
    pub fn take_stale(&mut self) -> Option<u64> {
        self.stale.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_skips_pinned() {
        let mut c = StatementCache::default();
        c.begin_pin();
        c.insert(1);
        c.insert(2);
        c.begin_pin();
        c.insert(3);
        c.begin_pin();
        c.touch(1);
        // Full at 3: 2 is the least recently used.
        assert_eq!(c.evict_for_one(3), Some(2));
        c.insert(4);
        // 1 and 4 were used by this attachment; 3 is the only candidate.
        assert_eq!(c.evict_for_one(3), Some(3));
        c.insert(5);
        // Everything is pinned: the cache grows past its bound instead.
        assert_eq!(c.evict_for_one(3), None);
        c.insert(6);
        assert_eq!(c.len(), 4);
        c.begin_pin();
        assert_eq!(c.evict_for_one(3), Some(1));
        assert!(!c.contains(1) && c.contains(6));
        assert_eq!(c.evict_for_one(100), None);
        c.clear();
        assert!(c.is_empty());
    }
}
