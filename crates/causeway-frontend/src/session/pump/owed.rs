//! The ReadyForQuery messages the server still owes, oldest first: what
//! request each answers (a simple Query or FunctionCall, or a Sync ending
//! extended-protocol requests), and whether the client already ended the
//! COPY that request may start (asyncpg sends COPY, its data and CopyDone
//! without waiting for CopyInResponse).
//!
//! A fixed ring, so no allocation per request. Cap: the first [`CAP`]
//! owed replies are described; past that they are only counted, and each
//! is taken for a Sync with no early COPY end when it moves into the ring
//! (a pipeline that deep that also uses COPY is not something clients do).

/// Owed replies described one by one; the rest are counted.
pub const CAP: usize = 128;

/// The request a ReadyForQuery answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A simple Query or a FunctionCall.
    Query,
    /// A Sync (the end of extended-protocol requests).
    Sync,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    request: Request,
    /// The client sent CopyDone/CopyFail for this request's COPY before
    /// the server's CopyInResponse.
    copy_ended: bool,
}

const SYNC: Entry = Entry {
    request: Request::Sync,
    copy_ended: false,
};

pub struct Owed {
    ring: [Entry; CAP],
    /// Index of the oldest described entry.
    head: usize,
    /// Entries in the ring.
    described: usize,
    /// Owed past the ring (see the module comment).
    counted: u32,
    /// The client ended a COPY of the extended unit it is still sending
    /// (its Sync not sent yet): the entry that Sync pushes carries it.
    next_copy_ended: bool,
}

impl Default for Owed {
    fn default() -> Self {
        Owed {
            ring: [SYNC; CAP],
            head: 0,
            described: 0,
            counted: 0,
            next_copy_ended: false,
        }
    }
}

impl Owed {
    /// ReadyForQuery messages owed.
    pub fn len(&self) -> u32 {
        self.described as u32 + self.counted
    }

    pub fn is_empty(&self) -> bool {
        self.described == 0
    }

    /// A request that owes a ReadyForQuery went out.
    pub fn push(&mut self, request: Request) {
        if self.described == CAP {
            self.counted += 1;
            return;
        }
        let copy_ended = std::mem::take(&mut self.next_copy_ended);
        let at = (self.head + self.described) % CAP;
        self.ring[at] = Entry {
            request,
            copy_ended,
        };
        self.described += 1;
    }

    /// A ReadyForQuery arrived: the oldest is paid. One nobody was owed
    /// (there is none) drops a pending early COPY end, as the oldest
    /// would have carried it.
    pub fn pop(&mut self) -> Option<Request> {
        if self.described == 0 {
            self.next_copy_ended = false;
            return None;
        }
        let e = self.ring[self.head];
        self.head = (self.head + 1) % CAP;
        self.described -= 1;
        if self.counted > 0 {
            self.counted -= 1;
            self.push_described(SYNC);
        }
        Some(e.request)
    }

    fn push_described(&mut self, e: Entry) {
        let at = (self.head + self.described) % CAP;
        self.ring[at] = e;
        self.described += 1;
    }

    /// The request the oldest owed reply answers.
    pub fn front(&self) -> Option<Request> {
        (self.described > 0).then(|| self.ring[self.head].request)
    }

    /// Takes the early COPY end of the oldest owed request (or, if none is
    /// owed, of the unit being sent): true if the client had ended it.
    pub fn take_front_copy_end(&mut self) -> bool {
        if self.described == 0 {
            return std::mem::take(&mut self.next_copy_ended);
        }
        std::mem::take(&mut self.ring[self.head].copy_ended)
    }

    /// CopyDone/CopyFail before the CopyInResponse: it ends the COPY of
    /// the last simple Query sent, or else of the extended unit being sent.
    pub fn mark_copy_end(&mut self) {
        if self.counted > 0 {
            return; // past the ring: not described
        }
        if self.described > 0 {
            let last = (self.head + self.described - 1) % CAP;
            if self.ring[last].request == Request::Query {
                self.ring[last].copy_ended = true;
                return;
            }
        }
        if self.described < CAP {
            self.next_copy_ended = true;
        }
    }

    /// COPY FROM STDIN began: the server ignores every Sync until the
    /// client's CopyDone/CopyFail, so Syncs already sent are owed nothing.
    /// If a simple Query started it, only that Query is still answered.
    pub fn copy_started(&mut self) {
        let query = self.front() == Some(Request::Query);
        self.clear();
        if query {
            self.push(Request::Query);
        }
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.described = 0;
        self.counted = 0;
        self.next_copy_ended = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Request::{Query, Sync};

    #[test]
    fn paid_in_order() {
        let mut o = Owed::default();
        o.push(Query);
        o.push(Sync);
        o.push(Sync);
        assert_eq!(o.len(), 3);
        assert_eq!(o.pop(), Some(Query));
        assert_eq!(o.pop(), Some(Sync));
        assert_eq!(o.pop(), Some(Sync));
        assert_eq!(o.pop(), None);
        assert!(o.is_empty());
    }

    #[test]
    fn wraps_around_the_ring() {
        let mut o = Owed::default();
        for round in 0..3 * CAP {
            let r = if round % 3 == 0 { Query } else { Sync };
            o.push(r);
            o.push(Sync);
            assert_eq!(o.pop(), Some(r));
            assert_eq!(o.pop(), Some(Sync));
        }
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn past_the_cap_replies_are_counted_and_taken_for_syncs() {
        let mut o = Owed::default();
        for _ in 0..CAP {
            o.push(Sync);
        }
        o.push(Query); // the 129th: counted only
        o.push(Query);
        assert_eq!(o.len(), CAP as u32 + 2);
        for _ in 0..CAP {
            assert_eq!(o.pop(), Some(Sync));
        }
        // They moved into the ring as Syncs.
        assert_eq!(o.pop(), Some(Sync));
        assert_eq!(o.pop(), Some(Sync));
        assert_eq!(o.pop(), None);
    }

    #[test]
    fn early_copy_end_of_a_simple_query() {
        let mut o = Owed::default();
        o.push(Sync);
        o.push(Query);
        o.mark_copy_end();
        // The Sync's reply comes first: it carries no COPY end.
        assert!(!o.take_front_copy_end());
        assert_eq!(o.pop(), Some(Sync));
        assert!(o.take_front_copy_end());
        assert!(!o.take_front_copy_end(), "taken once");
    }

    #[test]
    fn early_copy_end_of_the_unit_being_sent_goes_with_its_sync() {
        let mut o = Owed::default();
        o.push(Sync);
        o.mark_copy_end(); // Parse/Bind/Execute COPY, CopyDone, no Sync yet
        assert_eq!(o.pop(), Some(Sync));
        // Nothing owed: the pending end is the front.
        o.mark_copy_end();
        o.push(Sync);
        assert!(o.take_front_copy_end());
    }

    #[test]
    fn a_reply_nobody_was_owed_drops_the_pending_end() {
        let mut o = Owed::default();
        o.mark_copy_end();
        assert_eq!(o.pop(), None);
        o.push(Sync);
        assert!(!o.take_front_copy_end());
    }

    #[test]
    fn copy_start_keeps_only_the_query_that_started_it() {
        let mut o = Owed::default();
        o.push(Query);
        o.push(Sync);
        o.push(Query);
        o.copy_started();
        assert_eq!(o.len(), 1);
        assert_eq!(o.pop(), Some(Query));

        o.push(Sync);
        o.push(Sync);
        o.mark_copy_end();
        o.copy_started();
        assert_eq!(o.len(), 0, "Syncs sent during COPY are owed nothing");
        o.push(Sync);
        assert!(!o.take_front_copy_end(), "the pending end is cleared too");
    }

    #[test]
    fn no_early_end_is_noted_past_the_cap() {
        let mut o = Owed::default();
        for _ in 0..CAP {
            o.push(Sync);
        }
        o.mark_copy_end();
        for _ in 0..CAP {
            assert!(!o.take_front_copy_end());
            o.pop();
        }
        assert!(!o.take_front_copy_end());
    }
}
