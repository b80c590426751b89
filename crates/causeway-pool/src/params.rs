//! Session parameters (client_encoding, DateStyle, TimeZone, ...) as a small
//! sorted set with a fingerprint, so "is this server already set up the way
//! this client expects?" is one integer compare on the hot path.

use std::hash::{Hash, Hasher};

#[derive(Debug, Clone)]
struct Entry {
    /// Lower-case name: GUC names are case-insensitive.
    key: String,
    /// The name as the server spells it (DateStyle), for ParameterStatus.
    name: String,
    value: String,
    /// Reported by the server in ParameterStatus (vs. set by us silently).
    reported: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    entries: Vec<Entry>,
    fingerprint: u64,
}

impl ParamSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| cmp_ci(&e.key, name))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.entries[i].value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name`; returns true if the value changed.
    pub fn set(&mut self, name: &str, value: &str, reported: bool) -> bool {
        match self.find(name) {
            Ok(i) => {
                let e = &mut self.entries[i];
                e.reported |= reported;
                if e.value == value {
                    return false;
                }
                e.value.clear();
                e.value.push_str(value);
            }
            Err(i) => self.entries.insert(
                i,
                Entry {
                    key: name.to_ascii_lowercase(),
                    name: name.to_string(),
                    value: value.to_string(),
                    reported,
                },
            ),
        }
        self.rehash();
        true
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.entries.remove(i);
            self.rehash();
        }
    }

    /// Drops the values we set that the server does not report (after a
    /// reset query they are back to defaults we do not know).
    pub fn forget_unreported(&mut self) {
        self.entries.retain(|e| e.reported);
        self.rehash();
    }

    /// Forgets the unreported values `keep` does not have (they were just
    /// RESET by [`ParamSet::sync_sql`]).
    pub fn drop_unreported_except(&mut self, keep: &ParamSet) {
        self.entries.retain(|e| e.reported || keep.contains(&e.key));
        self.rehash();
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether the server reports `name` (ParameterStatus).
    pub fn is_reported(&self, name: &str) -> bool {
        self.find(name).is_ok_and(|i| self.entries[i].reported)
    }

    /// The values the server reported (ParameterStatus), as it spells them.
    pub fn reported(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(|e| e.reported)
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }

    fn rehash(&mut self) {
        // SipHash with fixed keys: deterministic, so equal sets compare equal
        // across connections.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        for e in &self.entries {
            e.key.hash(&mut h);
            e.value.hash(&mut h);
        }
        // 0 is reserved for "unknown".
        self.fingerprint = h.finish() | 1;
    }

    /// The statements that make a server holding `server` match `self`
    /// (the client's expectations), or None when nothing differs: one
    /// SELECT of `set_config()` per differing value (the value is taken as
    /// a StartupMessage or postgresql.conf would take it, so a list such as
    /// `search_path = 'a, b'` stays a list; each returns the value as the
    /// server normalised it, in the order of the returned names), then a
    /// RESET of each value a previous client set that this one never asked
    /// for.
    pub fn sync_sql(&self, server: &ParamSet) -> Option<(String, Vec<String>)> {
        let mut sql = String::new();
        let mut set = Vec::new();
        for e in &self.entries {
            if server.get(&e.key) != Some(e.value.as_str()) {
                sql.push_str(if set.is_empty() {
                    "SELECT "
                } else {
                    " UNION ALL SELECT "
                });
                sql.push_str("pg_catalog.set_config(");
                causeway_protocol::frontend::quote_literal(&mut sql, &e.key);
                sql.push_str(", ");
                causeway_protocol::frontend::quote_literal(&mut sql, &e.value);
                sql.push_str(", false)");
                set.push(e.name.clone());
            }
        }
        if !set.is_empty() {
            sql.push(';');
        }
        for e in server.entries.iter().filter(|e| !e.reported) {
            if !self.contains(&e.key) {
                sql.push_str("RESET ");
                sql.push_str(&e.key);
                sql.push(';');
            }
        }
        (!sql.is_empty()).then_some((sql, set))
    }
}

fn cmp_ci(stored_lower: &str, name: &str) -> std::cmp::Ordering {
    let a = stored_lower.bytes();
    let b = name.bytes().map(|c| c.to_ascii_lowercase());
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_and_fingerprinted() {
        let mut a = ParamSet::new();
        a.set("DateStyle", "ISO, MDY", true);
        a.set("TimeZone", "UTC", true);
        let mut b = ParamSet::new();
        b.set("timezone", "UTC", true);
        b.set("datestyle", "ISO, MDY", true);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.get("DATESTYLE"), Some("ISO, MDY"));
        assert!(a.sync_sql(&b).is_none());
        assert!(!b.set("TimeZone", "UTC", true));
        assert!(b.set("TimeZone", "Europe/Paris", true));
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn sync_sets_differences_and_resets_leftovers() {
        let mut client = ParamSet::new();
        client.set("TimeZone", "Asia/Tokyo", true);
        client.set("application_name", "it's", true);
        let mut server = ParamSet::new();
        server.set("TimeZone", "UTC", true);
        server.set("application_name", "it's", true);
        server.set("search_path", "other", false);
        assert_eq!(
            client.sync_sql(&server).unwrap(),
            (
                "SELECT pg_catalog.set_config('timezone', 'Asia/Tokyo', false);RESET search_path;"
                    .to_string(),
                vec!["TimeZone".to_string()]
            )
        );
        client.set("search_path", "a, b", false);
        let (sql, set) = client.sync_sql(&server).unwrap();
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('search_path', 'a, b', false) \
             UNION ALL SELECT pg_catalog.set_config('timezone', 'Asia/Tokyo', false);"
        );
        assert_eq!(set, ["search_path", "TimeZone"]);
        server.forget_unreported();
        assert!(!server.contains("search_path"));
    }
}
