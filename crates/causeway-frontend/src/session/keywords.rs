//! Which of the few words the pooler cares about a client's query text
//! contains anywhere (any case): the session-state hints (state.rs) and
//! the SQL prepared statements test (sql_prepared.rs). Every Query and
//! Parse is looked at, so this is on the hot path: positions whose first
//! two letters start no word are skipped 16 at a time (SSE2 on x86_64),
//! and only the rare rest is compared in full.

/// The words, as bits of the mask [`find`] returns.
pub const SEARCH_PATH: u16 = 1 << 0;
pub const ROLE: u16 = 1 << 1;
pub const RESET: u16 = 1 << 2;
pub const DISCARD: u16 = 1 << 3;
pub const AUTHORIZATION: u16 = 1 << 4;
pub const ADVISORY: u16 = 1 << 5;
pub const TEMP: u16 = 1 << 6;
pub const PREPARE: u16 = 1 << 7;
pub const EXECUTE: u16 = 1 << 8;
pub const DEALLOC: u16 = 1 << 9;
/// All of them.
pub const ALL: u16 = (1 << 10) - 1;

/// Each word (lower case) and its bit.
static WORDS: [(&[u8], u16); 10] = [
    (b"search_path", SEARCH_PATH),
    (b"role", ROLE),
    (b"reset", RESET),
    (b"discard", DISCARD),
    (b"authorization", AUTHORIZATION),
    (b"advisory", ADVISORY),
    (b"temp", TEMP),
    (b"prepare", PREPARE),
    (b"execute", EXECUTE),
    (b"dealloc", DEALLOC),
];

/// The words of `want` that `text` contains (as substrings, any case).
/// Stops looking once all of them are found.
pub fn find(text: &[u8], want: u16) -> u16 {
    let mut found = 0;
    let mut check = |at: usize| {
        let rest = &text[at..];
        let (a, b) = (rest[0] | 0x20, rest.get(1).map_or(0, |b| b | 0x20));
        for &(word, bit) in WORDS.iter() {
            if word[0] == a && word[1] == b && want & bit != 0 && starts_ci(rest, word) {
                found |= bit;
            }
        }
        found & want == want
    };
    candidates(text, &mut check);
    found & want
}

fn starts_ci(b: &[u8], word: &[u8]) -> bool {
    b.get(..word.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(word))
}

/// Calls `check` with each position where some word's first two letters
/// are (and maybe others), in order, until it returns true.
fn candidates(text: &[u8], check: &mut impl FnMut(usize) -> bool) {
    #[cfg(target_arch = "x86_64")]
    sse2::candidates(text, check);
    #[cfg(not(target_arch = "x86_64"))]
    scalar_candidates(text, 0, check);
}

/// Whether lower-cased `a`, `b` start a word.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn starts_word(a: u8, b: u8) -> bool {
    WORDS
        .iter()
        .any(|(w, _)| w[0] == a | 0x20 && w[1] == b | 0x20)
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn scalar_candidates(text: &[u8], from: usize, check: &mut impl FnMut(usize) -> bool) {
    for i in from..text.len().saturating_sub(1) {
        if starts_word(text[i], text[i + 1]) && check(i) {
            return;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Bit j of the result: lower-cased `p[j]`, `p[j + 1]` may start a
    /// word (the pairs of `WORDS`, spelled out so that each letter is
    /// compared once; the tests hold them to `WORDS`). `p` must have 17
    /// readable bytes.
    #[inline(always)]
    unsafe fn block(p: *const u8) -> u32 {
        // SAFETY (whole fn): the caller guarantees 17 readable bytes;
        // SSE2 is part of x86_64.
        let case = _mm_set1_epi8(0x20);
        let v0 = _mm_or_si128(_mm_loadu_si128(p as *const __m128i), case);
        let v1 = _mm_or_si128(_mm_loadu_si128(p.add(1) as *const __m128i), case);
        let first = |c: u8| _mm_cmpeq_epi8(v0, _mm_set1_epi8(c as i8));
        let second = |c: u8| _mm_cmpeq_epi8(v1, _mm_set1_epi8(c as i8));
        let (and, or) = (|a, b| _mm_and_si128(a, b), |a, b| _mm_or_si128(a, b));
        let (r, d, a, e) = (first(b'r'), first(b'd'), first(b'a'), first(b'e'));
        // se, re, te, de
        let mut hit = and(or(or(first(b's'), r), or(first(b't'), d)), second(b'e'));
        hit = or(hit, and(r, second(b'o'))); // ro
        hit = or(hit, and(d, second(b'i'))); // di
        hit = or(hit, and(a, or(second(b'u'), second(b'd')))); // au, ad
        hit = or(hit, and(first(b'p'), second(b'r'))); // pr
        hit = or(hit, and(e, second(b'x'))); // ex
        _mm_movemask_epi8(hit) as u32
    }

    pub fn candidates(text: &[u8], check: &mut impl FnMut(usize) -> bool) {
        let mut i = 0;
        while i + 17 <= text.len() {
            // SAFETY: i + 17 <= len.
            let mut m = unsafe { block(text.as_ptr().add(i)) };
            while m != 0 {
                if check(i + m.trailing_zeros() as usize) {
                    return;
                }
                m &= m - 1;
            }
            i += 16;
        }
        if i + 1 >= text.len() {
            return;
        }
        let mut m = if text.len() >= 17 {
            // The last 17 bytes, less the positions seen already.
            let at = text.len() - 17;
            // SAFETY: at + 17 == len.
            let m = unsafe { block(text.as_ptr().add(at)) };
            (m >> (i - at)) & 0xffff
        } else {
            // A short text, padded with NULs (no word starts with one).
            let mut pad = [0u8; 17];
            pad[..text.len()].copy_from_slice(text);
            // SAFETY: pad has 17 bytes.
            unsafe { block(pad.as_ptr()) }
        };
        // A position's second letter must be in the text.
        m &= (1u32 << (text.len() - 1 - i)) - 1;
        while m != 0 {
            if check(i + m.trailing_zeros() as usize) {
                return;
            }
            m &= m - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: each word anywhere, any case.
    fn naive(text: &[u8], want: u16) -> u16 {
        let mut found = 0;
        for (word, bit) in WORDS {
            if want & bit != 0
                && text
                    .windows(word.len())
                    .any(|w| w.eq_ignore_ascii_case(word))
            {
                found |= bit;
            }
        }
        found
    }

    #[test]
    fn finds_each_word_anywhere_in_any_case() {
        let all = (1 << WORDS.len()) - 1;
        for (word, bit) in WORDS {
            for pad in 0..40 {
                let mut t = vec![b'x'; pad];
                t.extend(word.iter().map(|b| b.to_ascii_uppercase()));
                assert_eq!(find(&t, all), bit, "{:?}", String::from_utf8_lossy(&t));
                t.extend_from_slice(b" tail");
                assert_eq!(find(&t, all), bit);
                // Cut short by one letter: not found.
                let cut = &t[..pad + word.len() - 1];
                assert_eq!(find(cut, all), 0);
            }
        }
        assert_eq!(find(b"SELECT pg_advisory_lock(1)", all), ADVISORY);
        assert_eq!(
            find(b"select abalance from pgbench_accounts where aid = $1", all),
            0
        );
        assert_eq!(find(b"", all), 0);
        assert_eq!(find(b"r", all), 0);
        assert_eq!(find(b"Role", ROLE | TEMP), ROLE);
        assert_eq!(find(b"Role", TEMP), 0);
    }

    #[test]
    fn agrees_with_the_plain_definition() {
        // Pseudo-random texts over an alphabet dense in the words' letters.
        let alphabet = b"sEarch_PtHoLdiScAuzvyTmPxcuGl \0\x80";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let all = (1 << WORDS.len()) - 1;
        for n in 0..3000 {
            let len = n % 90;
            let mut t = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            // Plant a word now and then.
            if n % 3 == 0 && len > 14 {
                let (w, _) = WORDS[(x % 10) as usize];
                let at = (x as usize >> 8) % (len - w.len());
                t[at..at + w.len()].copy_from_slice(w);
            }
            for want in [all, ADVISORY | TEMP, PREPARE | EXECUTE | DEALLOC] {
                let mut scalar = 0;
                scalar_candidates(&t, 0, &mut |at| {
                    for (word, bit) in WORDS {
                        if want & bit != 0 && starts_ci(&t[at..], word) {
                            scalar |= bit;
                        }
                    }
                    false
                });
                assert_eq!(scalar, naive(&t, want));
                assert_eq!(
                    find(&t, want),
                    naive(&t, want),
                    "{:?}",
                    String::from_utf8_lossy(&t)
                );
            }
        }
    }
}
