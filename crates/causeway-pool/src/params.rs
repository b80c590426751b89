//! Session parameters (client_encoding, DateStyle, TimeZone, ...) as a small
//! sorted set with a fingerprint, so "is this server already set up the way
//! this client expects?" is one integer compare on the hot path.
//!
//! Every connected client holds one, so the whole set is one byte buffer
//! (one allocation, no spare room) rather than three Strings per entry:
//! records sorted by lower-case name, each
//! `[flags u8][name u16][value length u32][name bytes][value bytes]`, where
//! a well-known name spelled as the server spells it is an index into
//! [`KNOWN`] instead of bytes.

use std::cell::RefCell;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

/// Names the server reports, as it spells them: stored as an index.
const KNOWN: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "scram_iterations",
    "search_path",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// Flag bits of a record.
const REPORTED: u8 = 1;
const KNOWN_NAME: u8 = 2;
const HEAD: usize = 7;

#[derive(Clone, Default)]
pub struct ParamSet {
    /// Shared by clones (copied when one changes): clients with the same
    /// parameters hold one buffer (see [`ParamSet::shared`]).
    buf: Arc<[u8]>,
    fingerprint: u64,
}

/// One record of the buffer.
#[derive(Clone, Copy)]
struct Rec<'a> {
    /// Where it starts and ends in the buffer.
    start: usize,
    end: usize,
    /// Where its value starts.
    value_at: usize,
    /// As the server (or the client) spells it.
    name: &'a str,
    value: &'a str,
    reported: bool,
}

fn text(b: &[u8]) -> &str {
    // Only ever written from &str, so always UTF-8.
    std::str::from_utf8(b).unwrap_or_default()
}

/// Appends a record for `name` = `value`.
fn encode(buf: &mut Vec<u8>, name: &str, value: &str, reported: bool) {
    let known = KNOWN.iter().position(|k| *k == name);
    let mut flags = if reported { REPORTED } else { 0 };
    let name_field = match known {
        Some(i) => {
            flags |= KNOWN_NAME;
            i as u16
        }
        None => name.len().min(u16::MAX as usize) as u16,
    };
    buf.push(flags);
    buf.extend_from_slice(&name_field.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    if known.is_none() {
        buf.extend_from_slice(&name.as_bytes()[..name_field as usize]);
    }
    buf.extend_from_slice(value.as_bytes());
}

fn encoded_len(name: &str, value: &str) -> usize {
    let name_len = match KNOWN.contains(&name) {
        true => 0,
        false => name.len().min(u16::MAX as usize),
    };
    HEAD + name_len + value.len()
}

impl ParamSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn rec_at(&self, start: usize) -> Rec<'_> {
        let b = &self.buf;
        let flags = b[start];
        let name_field = u16::from_le_bytes([b[start + 1], b[start + 2]]) as usize;
        let value_len =
            u32::from_le_bytes([b[start + 3], b[start + 4], b[start + 5], b[start + 6]]) as usize;
        let (name, name_len) = match flags & KNOWN_NAME != 0 {
            true => (KNOWN.get(name_field).copied().unwrap_or_default(), 0),
            false => (
                text(&b[start + HEAD..start + HEAD + name_field]),
                name_field,
            ),
        };
        let value_at = start + HEAD + name_len;
        let end = value_at + value_len;
        Rec {
            start,
            end,
            value_at,
            name,
            value: text(&b[value_at..end]),
            reported: flags & REPORTED != 0,
        }
    }

    fn records(&self) -> impl Iterator<Item = Rec<'_>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.buf.len()).then(|| {
                let r = self.rec_at(at);
                at = r.end;
                r
            })
        })
    }

    /// Ok: the record named `name`; Err: where one would be inserted.
    fn find(&self, name: &str) -> Result<Rec<'_>, usize> {
        for r in self.records() {
            match cmp_ci(r.name, name) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(r),
                std::cmp::Ordering::Greater => return Err(r.start),
            }
        }
        Err(self.buf.len())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|r| r.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name`; returns true if the value changed.
    pub fn set(&mut self, name: &str, value: &str, reported: bool) -> bool {
        match self.find(name) {
            Ok(r) => {
                let (start, end, value_at) = (r.start, r.end, r.value_at);
                let same = r.value == value;
                if reported && self.buf[start] & REPORTED == 0 {
                    self.edit(|b| b[start] |= REPORTED);
                }
                if same {
                    return false;
                }
                let len = (value.len() as u32).to_le_bytes();
                self.edit(|b| {
                    b[start + 3..start + HEAD].copy_from_slice(&len);
                    b.splice(value_at..end, value.as_bytes().iter().copied());
                });
            }
            Err(at) => {
                let mut rec = Vec::with_capacity(encoded_len(name, value));
                encode(&mut rec, name, value, reported);
                self.edit(|b| {
                    b.splice(at..at, rec);
                });
            }
        }
        self.rehash();
        true
    }

    /// Changes the buffer: a copy, edited, becomes this set's own (one
    /// allocation of its exact size; parameters change seldom).
    fn edit(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut b = self.buf.to_vec();
        f(&mut b);
        self.buf = b.into();
    }

    /// The same set, sharing its buffer with the last equal set made
    /// shared on this thread: clients that log in with the same
    /// parameters (most of them) hold one copy.
    pub fn shared(self) -> Self {
        thread_local! {
            static LAST: RefCell<ParamSet> = RefCell::default();
        }
        LAST.try_with(|last| {
            let mut last = last.borrow_mut();
            if last.fingerprint == self.fingerprint && last.buf == self.buf {
                return last.clone();
            }
            *last = self.clone();
            self.clone()
        })
        .unwrap_or(self)
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(r) = self.find(name) {
            let range = r.start..r.end;
            self.edit(|b| {
                b.drain(range);
            });
            self.rehash();
        }
    }

    /// Keeps the records `keep` says yes to.
    fn retain(&mut self, mut keep: impl FnMut(&Rec<'_>) -> bool) {
        let mut out = Vec::new();
        for r in self.records() {
            if keep(&r) {
                out.extend_from_slice(&self.buf[r.start..r.end]);
            }
        }
        if out.len() != self.buf.len() {
            self.buf = out.into();
        }
        self.rehash();
    }

    /// Drops the values we set that the server does not report (after a
    /// reset query they are back to defaults we do not know).
    pub fn forget_unreported(&mut self) {
        self.retain(|r| r.reported);
    }

    /// Forgets the unreported values `keep` does not have (they were just
    /// RESET by [`ParamSet::sync_sql`]).
    pub fn drop_unreported_except(&mut self, keep: &ParamSet) {
        self.retain(|r| r.reported || keep.contains(r.name));
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether the server reports `name` (ParameterStatus).
    pub fn is_reported(&self, name: &str) -> bool {
        self.find(name).is_ok_and(|r| r.reported)
    }

    /// The values the server reported (ParameterStatus), as it spells them.
    pub fn reported(&self) -> impl Iterator<Item = (&str, &str)> {
        self.records()
            .filter(|r| r.reported)
            .map(|r| (r.name, r.value))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.records().map(|r| (r.name, r.value))
    }

    fn rehash(&mut self) {
        // SipHash with fixed keys: deterministic, so equal sets compare equal
        // across connections. The name is hashed lower-cased (as a String
        // hashes: its bytes, then 0xff).
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        for r in self.records() {
            for c in r.name.bytes() {
                h.write_u8(c.to_ascii_lowercase());
            }
            h.write_u8(0xff);
            h.write(r.value.as_bytes());
            h.write_u8(0xff);
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
        for r in self.records() {
            if server.get(r.name) != Some(r.value) {
                sql.push_str(if set.is_empty() {
                    "SELECT "
                } else {
                    " UNION ALL SELECT "
                });
                sql.push_str("pg_catalog.set_config(");
                causeway_protocol::frontend::quote_literal(&mut sql, &r.name.to_ascii_lowercase());
                sql.push_str(", ");
                causeway_protocol::frontend::quote_literal(&mut sql, r.value);
                sql.push_str(", false)");
                set.push(r.name.to_string());
            }
        }
        if !set.is_empty() {
            sql.push(';');
        }
        for r in server.records().filter(|r| !r.reported) {
            if !self.contains(r.name) {
                sql.push_str("RESET ");
                sql.extend(r.name.chars().map(|c| c.to_ascii_lowercase()));
                sql.push(';');
            }
        }
        (!sql.is_empty()).then_some((sql, set))
    }
}

impl fmt::Debug for ParamSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Orders names as their lower-case spellings order.
fn cmp_ci(stored: &str, name: &str) -> std::cmp::Ordering {
    let a = stored.bytes().map(|c| c.to_ascii_lowercase());
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

    #[test]
    fn one_compact_buffer_that_keeps_spellings_and_flags() {
        let mut p = ParamSet::new();
        p.set("TimeZone", "UTC", true);
        p.set("datestyle", "ISO", false);
        p.set("my.custom", "x", false);
        p.set("application_name", "psql", true);
        // Sorted by lower-case name; names as first spelled.
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            [
                ("application_name", "psql"),
                ("datestyle", "ISO"),
                ("my.custom", "x"),
                ("TimeZone", "UTC"),
            ]
        );
        // Clients with the same parameters share one buffer; a change
        // gives the changed one its own.
        let a = p.clone().shared();
        let mut b = p.clone();
        b.set("my.custom", "x", false);
        let b = ParamSet {
            buf: b.buf.to_vec().into(),
            ..b
        }
        .shared();
        assert!(Arc::ptr_eq(&a.buf, &b.buf));
        let mut c = b.clone();
        c.set("my.custom", "y", false);
        assert!(!Arc::ptr_eq(&c.buf, &b.buf) && b.get("my.custom") == Some("x"));
        // A longer and a shorter value, in place.
        assert!(p.set("DATESTYLE", "ISO, MDY, and more", true));
        assert!(p.set("timezone", "", true));
        assert_eq!(p.get("DateStyle"), Some("ISO, MDY, and more"));
        assert_eq!(p.get("TIMEZONE"), Some(""));
        assert!(p.is_reported("datestyle"));
        assert!(!p.is_reported("my.custom"));
        p.remove("MY.CUSTOM");
        assert!(!p.contains("my.custom"));
        assert_eq!(p.reported().count(), 3);
        // Equal sets, built in another order and spelling: equal prints.
        let mut q = ParamSet::new();
        q.set("timezone", "", true);
        q.set("Application_Name", "psql", true);
        q.set("DateStyle", "ISO, MDY, and more", true);
        assert_eq!(p.fingerprint(), q.fingerprint());
        q.set("x", "1", false);
        assert_ne!(p.fingerprint(), q.fingerprint());
        q.drop_unreported_except(&p);
        assert_eq!(p.fingerprint(), q.fingerprint());
    }
}
