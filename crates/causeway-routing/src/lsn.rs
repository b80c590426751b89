//! PostgreSQL write-ahead-log positions (`pg_lsn`).
//!
//! The text form is `%X/%X`: the high and low 32 bits in upper-case hex,
//! each 1 to 8 digits (PostgreSQL 19 zero-pads to 8, older servers do not:
//! `0/3000060` and `0/03000060` are the same position). The value is
//! `hi << 32 | lo` and positions compare as plain `u64`s. (Pgpool-II's
//! pre-9.3 formula, which skips the last segment of each 4 GiB, is wrong.)

use std::fmt;
use std::str::FromStr;

/// A WAL position. `Lsn(0)` (`0/0`) is PostgreSQL's `InvalidXLogRecPtr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`.
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes from `earlier` to `self`; 0 when `earlier` is ahead.
    pub fn saturating_sub(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The high (`xlogid`) half.
    pub fn hi(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The low (`xrecoff`) half.
    pub fn lo(self) -> u32 {
        self.0 as u32
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> u64 {
        l.0
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLsnError(String);

impl fmt::Display for ParseLsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid LSN {:?}: expected %X/%X", self.0)
    }
}

impl std::error::Error for ParseLsnError {}

fn parse_half(s: &str) -> Option<u32> {
    // from_str_radix would accept a leading '+'; only hex digits are allowed.
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Lsn, ParseLsnError> {
        let err = || ParseLsnError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let hi = parse_half(hi).ok_or_else(err)?;
        let lo = parse_half(lo).ok_or_else(err)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    /// PostgreSQL's own (unpadded, pre-19) form, e.g. `16/B374D848`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.hi(), self.lo())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Lsn, ParseLsnError> {
        s.parse()
    }

    #[test]
    fn parses_padded_and_unpadded() {
        assert_eq!(p("0/3000060"), Ok(Lsn(0x3000060)));
        assert_eq!(p("0/03000060"), Ok(Lsn(0x3000060)));
        assert_eq!(p("00000000/03000060"), Ok(Lsn(0x3000060)));
        assert_eq!(p("16/B374D848"), Ok(Lsn(0x16_B374_D848)));
        assert_eq!(p("16/b374d848"), Ok(Lsn(0x16_B374_D848)));
        assert_eq!(p("0/0"), Ok(Lsn::ZERO));
        assert_eq!(p("FFFFFFFF/FFFFFFFF"), Ok(Lsn(u64::MAX)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            " 0/1",
            "0/1 ",
            "0 /1",
            "0/ 1",
            "0/\t1",
            "0/1\n",
            "100000000/0",
            "0/100000000",
            "000000000/0",
            "0/G",
            "0x1/0",
            "+1/0",
            "0/-1",
            "0/+1",
            "١/0",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_is_postgres_form_and_round_trips() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0x3000060).to_string(), "0/3000060");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        for v in [
            0u64,
            1,
            0xFFFF_FFFF,
            0x1_0000_0000,
            u64::MAX,
            0xDEAD_BEEF_0000_0001,
        ] {
            assert_eq!(p(&Lsn(v).to_string()), Ok(Lsn(v)));
        }
    }

    #[test]
    fn orders_across_the_4gib_boundary() {
        // 0/FFFFFFFF < 1/0: the high half dominates.
        let below = p("0/FFFFFFFF").unwrap();
        let above = p("1/0").unwrap();
        assert!(below < above);
        assert_eq!(above.saturating_sub(below), 1);
        assert_eq!(below.saturating_sub(above), 0);
        assert!(p("2/0").unwrap() > p("1/FFFFFFFF").unwrap());
    }

    #[test]
    fn saturating_sub_is_bytes() {
        let a = p("0/3000000").unwrap();
        let b = p("0/3000060").unwrap();
        assert_eq!(b.saturating_sub(a), 0x60);
        assert_eq!(a.saturating_sub(b), 0);
        assert_eq!(a.saturating_sub(a), 0);
    }
}
