//! A PostgreSQL lexer that is just careful enough to classify statements.
//!
//! It follows `src/backend/parser/scan.l` for everything that decides where a
//! token starts and ends (comments, every string flavour, quoted identifiers,
//! dollar quoting, parameters, operators), and nothing else: it does not
//! decode escapes, check numbers or know keywords. Tokens are spans into the
//! input; lexing never allocates.

/// What a token is. Keywords are plain [`Kind::Ident`]s: the classifier
/// compares their text case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Unquoted identifier or keyword.
    Ident,
    /// `"..."`: the span includes the quotes.
    QuotedIdent,
    /// `U&"..."`: the span includes `U&` and the quotes.
    UnicodeIdent,
    /// Any string constant: `'..'`, `E'..'`, `N'..'`, `U&'..'`, `B'..'`,
    /// `X'..'`, `$tag$..$tag$`.
    String,
    Number,
    /// `$1`
    Param,
    /// A run of operator characters, or `::`.
    Op,
    LParen,
    RParen,
    Comma,
    Semicolon,
    Dot,
    /// `[`, `]`, `:` and bytes PostgreSQL would reject.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: u32,
    pub end: u32,
}

/// The input cannot be a valid statement: an unterminated string, quoted
/// identifier, dollar quote or block comment, or a zero-length `""`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LexError;

pub(crate) struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    /// `standard_conforming_strings = off`: backslash escapes in `'...'` too.
    backslash_quotes: bool,
    /// A plain `'...'` string contained a backslash: its extent depends on
    /// `standard_conforming_strings`.
    pub saw_backslash_in_plain_string: bool,
}

#[inline]
fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

#[inline]
fn is_ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

#[inline]
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

#[inline]
fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// Skips a `/* */` comment (nested) starting at `pos`; returns the position
/// after it.
pub(crate) fn skip_block_comment(b: &[u8], mut pos: usize) -> Result<usize, LexError> {
    debug_assert!(b[pos..].starts_with(b"/*"));
    pos += 2;
    let mut depth = 1usize;
    while pos + 1 < b.len() {
        match (b[pos], b[pos + 1]) {
            (b'/', b'*') => {
                depth += 1;
                pos += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                pos += 2;
                if depth == 0 {
                    return Ok(pos);
                }
            }
            _ => pos += 1,
        }
    }
    Err(LexError)
}

/// Skips a `--` comment; returns the position of the newline (or the end).
pub(crate) fn skip_line_comment(b: &[u8], pos: usize) -> usize {
    b[pos..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(b.len(), |n| pos + n)
}

/// The end of a numeric literal starting at `start` (scan.l's decinteger,
/// hex/octal/binary integers, numeric and real). Anything glued to it
/// (`1FOR`) is left for the next token: PostgreSQL before 15 lexed it that
/// way, 15+ rejects it, so seeing the keyword is the safe reading.
fn number_end(b: &[u8], start: usize) -> usize {
    let digits = |mut i: usize, ok: fn(u8) -> bool| {
        while i < b.len() && (ok(b[i]) || (b[i] == b'_' && b.get(i + 1).is_some_and(|&d| ok(d)))) {
            i += 1;
        }
        i
    };
    let dec = |d: u8| d.is_ascii_digit();
    if b[start] == b'0' {
        let radix: Option<fn(u8) -> bool> = match b.get(start + 1) {
            Some(b'x' | b'X') => Some(|d| d.is_ascii_hexdigit()),
            Some(b'o' | b'O') => Some(|d| (b'0'..=b'7').contains(&d)),
            Some(b'b' | b'B') => Some(|d| d == b'0' || d == b'1'),
            _ => None,
        };
        if let Some(ok) = radix {
            let s = start + 2;
            let s = if b.get(s) == Some(&b'_') { s + 1 } else { s };
            if b.get(s).is_some_and(|&d| ok(d)) {
                return digits(s, ok);
            }
        }
    }
    let mut i = digits(start, dec);
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i = digits(i + 1, dec);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let s = if matches!(b.get(i + 1), Some(b'+' | b'-')) {
            i + 2
        } else {
            i + 1
        };
        if b.get(s).is_some_and(|d| d.is_ascii_digit()) {
            i = digits(s, dec);
        }
    }
    i
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str, backslash_quotes: bool) -> Self {
        Lexer {
            b: sql.as_bytes(),
            pos: 0,
            backslash_quotes,
            saw_backslash_in_plain_string: false,
        }
    }

    /// Skips whitespace and comments.
    #[inline(always)]
    fn skip_trivia(&mut self) -> Result<(), LexError> {
        let b = self.b;
        loop {
            while self.pos < b.len() && is_space(b[self.pos]) {
                self.pos += 1;
            }
            match (b.get(self.pos), b.get(self.pos + 1)) {
                (Some(b'-'), Some(b'-')) => self.pos = skip_line_comment(b, self.pos),
                (Some(b'/'), Some(b'*')) => self.pos = skip_block_comment(b, self.pos)?,
                _ => return Ok(()),
            }
        }
    }

    /// A quoted string whose opening quote is at `open`. `backslash`: a
    /// backslash escapes the next byte. `doubled`: `''` stands for a quote.
    fn quoted(&mut self, open: usize, backslash: bool, doubled: bool) -> Result<usize, LexError> {
        let b = self.b;
        let mut i = open + 1;
        while i < b.len() {
            match b[i] {
                b'\\' if backslash => i += 2,
                b'\'' | b'"' if b[i] == b[open] => {
                    if doubled && b.get(i + 1) == Some(&b[open]) {
                        i += 2;
                    } else {
                        return Ok(i + 1);
                    }
                }
                _ => i += 1,
            }
        }
        Err(LexError)
    }

    /// A plain `'...'` (also `N'...'`): escapes depend on the mode.
    fn plain_string(&mut self, open: usize) -> Result<usize, LexError> {
        let end = self.quoted(open, self.backslash_quotes, true)?;
        if !self.saw_backslash_in_plain_string && self.b[open..end].contains(&b'\\') {
            self.saw_backslash_in_plain_string = true;
        }
        Ok(end)
    }

    #[inline(always)]
    fn ident_end(&self, start: usize) -> usize {
        let b = self.b;
        let mut i = start + 1;
        while i < b.len() && is_ident_cont(b[i]) {
            i += 1;
        }
        i
    }

    /// `$tag$` at `pos`, if one starts there: returns the tag length
    /// including both dollars.
    fn dollar_tag(&self, pos: usize) -> Option<usize> {
        let b = self.b;
        let mut i = pos + 1;
        if i < b.len() && b[i] == b'$' {
            return Some(2);
        }
        if i >= b.len() || !(b[i].is_ascii_alphabetic() || b[i] == b'_' || b[i] >= 0x80) {
            return None;
        }
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
            i += 1;
        }
        (i < b.len() && b[i] == b'$').then(|| i + 1 - pos)
    }

    #[inline(always)]
    pub fn next_token(&mut self) -> Option<Result<Token, LexError>> {
        if let Err(e) = self.skip_trivia() {
            self.pos = self.b.len();
            return Some(Err(e));
        }
        let b = self.b;
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let c = b[start];
        let next = b.get(start + 1).copied();
        let res: Result<(Kind, usize), LexError> = match c {
            b'\'' => self.plain_string(start).map(|e| (Kind::String, e)),
            b'"' => match self.quoted(start, false, true) {
                Ok(e) if e == start + 2 => Err(LexError),
                r => r.map(|e| (Kind::QuotedIdent, e)),
            },
            b'e' | b'E' if next == Some(b'\'') => self
                .quoted(start + 1, true, true)
                .map(|e| (Kind::String, e)),
            b'n' | b'N' if next == Some(b'\'') => {
                self.plain_string(start + 1).map(|e| (Kind::String, e))
            }
            // Bit strings take no `''` (scan.l's xb/xh states).
            b'b' | b'B' | b'x' | b'X' if next == Some(b'\'') => self
                .quoted(start + 1, false, false)
                .map(|e| (Kind::String, e)),
            b'u' | b'U' if next == Some(b'&') && matches!(b.get(start + 2), Some(b'\'' | b'"')) => {
                let quote = b[start + 2];
                match self.quoted(start + 2, false, true) {
                    Ok(e) if quote == b'"' && e == start + 4 => Err(LexError),
                    Ok(e) if quote == b'"' => Ok((Kind::UnicodeIdent, e)),
                    r => r.map(|e| (Kind::String, e)),
                }
            }
            b'$' => {
                if next.is_some_and(|d| d.is_ascii_digit()) {
                    let mut i = start + 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    Ok((Kind::Param, i))
                } else if let Some(n) = self.dollar_tag(start) {
                    let tag = &b[start..start + n];
                    let body = start + n;
                    match b[body..].windows(n).position(|w| w == tag) {
                        Some(p) => Ok((Kind::String, body + p + n)),
                        None => Err(LexError),
                    }
                } else {
                    Ok((Kind::Other, start + 1))
                }
            }
            c if is_ident_start(c) => Ok((Kind::Ident, self.ident_end(start))),
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|d| d.is_ascii_digit())) => {
                Ok((Kind::Number, number_end(b, start)))
            }
            b'(' => Ok((Kind::LParen, start + 1)),
            b')' => Ok((Kind::RParen, start + 1)),
            b',' => Ok((Kind::Comma, start + 1)),
            b';' => Ok((Kind::Semicolon, start + 1)),
            b'.' => Ok((Kind::Dot, start + 1)),
            b':' if next == Some(b':') => Ok((Kind::Op, start + 2)),
            c if is_op_char(c) => {
                // An operator ends where a comment starts.
                let mut i = start + 1;
                while i < b.len()
                    && is_op_char(b[i])
                    && !matches!(
                        (b[i], b.get(i + 1)),
                        (b'-', Some(b'-')) | (b'/', Some(b'*'))
                    )
                {
                    i += 1;
                }
                // scan.l: a multi-char operator cannot end in + or - unless
                // it contains one of ~!@#^&|`?% (`a+-1` is `a + -1`).
                let op = &b[start..i];
                if op.len() > 1
                    && matches!(op[op.len() - 1], b'+' | b'-')
                    && !op.iter().any(|c| b"~!@#^&|`?%".contains(c))
                {
                    while i > start + 1 && matches!(b[i - 1], b'+' | b'-') {
                        i -= 1;
                    }
                }
                Ok((Kind::Op, i))
            }
            // `[`, `]`, `:`, stray ASCII bytes (bytes >= 0x80 start
            // identifiers, so spans stay on char boundaries).
            _ => Ok((Kind::Other, start + 1)),
        };
        match res {
            Ok((kind, end)) => {
                self.pos = end;
                Some(Ok(Token {
                    kind,
                    start: start as u32,
                    end: end as u32,
                }))
            }
            Err(e) => {
                self.pos = b.len();
                Some(Err(e))
            }
        }
    }
}
