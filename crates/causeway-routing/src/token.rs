//! Read-your-writes tokens: a WAL position tagged with the cluster and
//! timeline it belongs to.
//!
//! A token is portable: any Causeway in front of the same cluster accepts
//! another's (it names the cluster by `system_identifier`, not by anything
//! local). Text form, versioned and opaque to applications:
//! `cw1-<system id, 16 hex>-<timeline, 8 hex>-<lsn, 16 hex>`.

use std::fmt;

use crate::lsn::Lsn;

/// Which WAL history an LSN belongs to. LSNs keep rising across a
/// promotion, but the WAL they name on the old timeline may be lost, so a
/// position is only comparable within one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    /// `pg_control_system().system_identifier` (0 when it could not be read).
    pub system_id: u64,
    pub timeline: u32,
}

impl Generation {
    /// The same WAL history: same timeline, and the same cluster when both
    /// system identifiers are known (0 = could not be read).
    pub fn matches(self, other: Generation) -> bool {
        self.timeline == other.timeline
            && (self.system_id == other.system_id || self.system_id == 0 || other.system_id == 0)
    }

    /// `self`, with `other`'s system identifier if `self` lacks one.
    fn fill(self, other: Generation) -> Generation {
        Generation {
            system_id: if self.system_id == 0 {
                other.system_id
            } else {
                self.system_id
            },
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub generation: Generation,
    pub lsn: Lsn,
}

const PREFIX: &str = "cw1-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub &'static str);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid causeway token: {}", self.0)
    }
}

impl std::error::Error for TokenError {}

impl Token {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{:016x}-{:08x}-{:016x}",
            self.generation.system_id, self.generation.timeline, self.lsn.0
        )
    }

    /// Parses a token; never panics, whatever the input.
    pub fn decode(s: &str) -> Result<Token, TokenError> {
        let s = s.trim();
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or(TokenError("expected a token starting with \"cw1-\""))?;
        let mut parts = rest.split('-');
        let (Some(sys), Some(tli), Some(lsn), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError("expected cw1-<system>-<timeline>-<lsn>"));
        };
        let hex = |p: &str, width: usize, what: &'static str| -> Result<u64, TokenError> {
            if p.len() != width || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TokenError(what));
            }
            u64::from_str_radix(p, 16).map_err(|_| TokenError(what))
        };
        let system_id = hex(sys, 16, "bad system identifier")?;
        let timeline = hex(tli, 8, "bad timeline")? as u32;
        let lsn = hex(lsn, 16, "bad WAL position")?;
        if timeline == 0 {
            return Err(TokenError("timeline 0"));
        }
        Ok(Token {
            generation: Generation {
                system_id,
                timeline,
            },
            lsn: Lsn(lsn),
        })
    }

    /// Folds `new` into `old` so that the result never goes backwards:
    /// within one generation the higher position wins; a token of the
    /// `current` generation replaces one of another (an older timeline's
    /// position says nothing about the new one).
    pub fn merge(old: Option<Token>, new: Token, current: Option<Generation>) -> Token {
        let Some(old) = old else { return new };
        if old.generation.matches(new.generation) {
            let generation = old.generation.fill(new.generation);
            let lsn = old.lsn.max(new.lsn);
            return Token { generation, lsn };
        }
        match current {
            Some(c) if new.generation.matches(c) => new,
            Some(c) if old.generation.matches(c) => old,
            // Neither is current: the later timeline of the same cluster.
            _ if new.generation.system_id == old.generation.system_id
                && new.generation.timeline > old.generation.timeline =>
            {
                new
            }
            _ => old,
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tli: u32, lsn: u64) -> Token {
        Token {
            generation: Generation {
                system_id: 0x7300_0000_0000_0001,
                timeline: tli,
            },
            lsn: Lsn(lsn),
        }
    }

    #[test]
    fn round_trips_and_is_versioned() {
        let a = t(3, 0x1_0300_0060);
        let s = a.encode();
        assert_eq!(s, "cw1-7300000000000001-00000003-0000000103000060");
        assert_eq!(Token::decode(&s), Ok(a));
        assert_eq!(Token::decode(&format!("  {s}\n")), Ok(a));
    }

    #[test]
    fn bad_tokens_are_clear_errors() {
        for bad in [
            "",
            "cw1-",
            "cw2-7300000000000001-00000003-0000000103000060",
            "cw1-7300000000000001-00000003",
            "cw1-7300000000000001-00000003-0000000103000060-00",
            "cw1-73000000000001-00000003-0000000103000060",
            "cw1-730000000000000z-00000003-0000000103000060",
            "cw1-7300000000000001-00000000-0000000103000060",
            "cw1-+300000000000001-00000003-0000000103000060",
            "0/3000060",
            "cw1-7300000000000001-0000000é-0000000103000060",
        ] {
            let e = Token::decode(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid causeway token"), "{e}");
        }
    }

    #[test]
    fn merging_never_goes_backwards() {
        let cur = Some(t(3, 0).generation);
        assert_eq!(Token::merge(None, t(3, 5), cur), t(3, 5));
        assert_eq!(Token::merge(Some(t(3, 9)), t(3, 5), cur), t(3, 9));
        assert_eq!(Token::merge(Some(t(3, 5)), t(3, 9), cur), t(3, 9));
        // A new generation replaces an old one whatever the positions.
        assert_eq!(Token::merge(Some(t(2, 900)), t(3, 5), cur), t(3, 5));
        // An old-generation token never replaces a current one.
        assert_eq!(Token::merge(Some(t(3, 5)), t(2, 900), cur), t(3, 5));
        // No current generation known: the later timeline.
        assert_eq!(Token::merge(Some(t(2, 900)), t(3, 5), None), t(3, 5));
        assert_eq!(Token::merge(Some(t(3, 5)), t(2, 900), None), t(3, 5));
        // An unknown system identifier (0) matches, and is filled in.
        let mut unknown = t(3, 50);
        unknown.generation.system_id = 0;
        assert_eq!(Token::merge(Some(t(3, 5)), unknown, cur), t(3, 50));
        assert_eq!(Token::merge(Some(unknown), t(3, 5), cur), t(3, 50));
        assert!(unknown.generation.matches(t(3, 0).generation));
        assert!(!unknown.generation.matches(t(2, 0).generation));
    }
}
