//! A one-pass reader of the JSON events nearly every producer writes: an
//! object of plain values whose strings have no escapes.
//!
//! It answers `None` for anything else, and for anything it is not sure
//! serde_json accepts (escapes, control characters, invalid UTF-8, deep
//! nesting, duplicate event fields, any syntax error); the decoder then
//! takes serde_json's path, which names the problem exactly as before. So it
//! only ever accepts what serde_json accepts, and hands [`validate`] the same
//! values: the contract's rules and messages are shared, not copied. What it
//! saves is serde_json's second parse of the properties and of every value.
//!
//! [`validate`]: crate::contract::validate

use crate::contract::{Fields, Wire};
use crate::json_bytes::first_special;
use std::borrow::Cow;

/// Containers nested deeper than this are left to serde_json.
const MAX_DEPTH: usize = 32;

/// One value of an event, already checked to be valid JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tok<'a> {
    Null,
    Bool(bool),
    /// A string's contents (it has no escapes).
    Str(&'a str),
    /// A number as written.
    Number(&'a str),
    /// An array as written, brackets included.
    Array(&'a str),
    /// An object as written, braces included.
    Object(&'a str),
    /// An object's members, found while checking it.
    Members(&'a [(&'a str, Tok<'a>)]),
}

/// Objects of at most this many members (an event's properties) are read
/// once; larger ones are read again when asked for their members.
const KEPT_MEMBERS: usize = 16;

/// The members of an event's properties, as [`event`] found them.
pub(crate) struct Members<'a> {
    kept: [(&'a str, Tok<'a>); KEPT_MEMBERS],
    len: usize,
}

impl<'a> Members<'a> {
    pub(crate) fn new() -> Members<'a> {
        Members { kept: [("", Tok::Null); KEPT_MEMBERS], len: 0 }
    }

    /// Points `properties` at the kept members, when it is the object they came from.
    pub(crate) fn attach<'b>(&'b self, fields: &mut Fields<Tok<'b>>) {
        if let Some(Tok::Object(_)) = fields.properties {
            if self.len <= KEPT_MEMBERS {
                fields.properties = Some(Tok::Members(&self.kept[..self.len]));
            }
        }
    }
}

/// The fields of `bytes`, if it is an event this reader takes on; the
/// members of its properties go to `members` (see [`Members::attach`]).
pub(crate) fn event<'a>(bytes: &'a [u8], members: &mut Members<'a>) -> Option<Fields<Tok<'a>>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { text, s: bytes, i: 0 };
    let mut f = Fields { event_id: None, lead_id: None, kind: None, timestamp: None, properties: None };
    s.ws();
    s.members(|s, key| {
        let value = match (key, s.peek()?) {
            ("properties", b'{') => s.object(members)?,
            _ => s.value()?,
        };
        let slot = match key {
            "event_id" => Some(&mut f.event_id),
            "lead_id" => Some(&mut f.lead_id),
            "type" => Some(&mut f.kind),
            "timestamp" => Some(&mut f.timestamp),
            "properties" => Some(&mut f.properties),
            _ => None,
        };
        // serde refuses a repeated field of a struct: its message is wanted.
        match slot.map(|slot| slot.replace(value)) {
            Some(Some(_)) => None,
            _ => Some(()),
        }
    })?;
    s.ws();
    (s.i == bytes.len()).then_some(f)
}

struct Scanner<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// JSON's whitespace (not form feed, which `is_ascii_whitespace` allows).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string's contents, the cursor on its opening quote.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        self.i = first_special(self.s, self.i);
        if self.peek()? != b'"' {
            return None;
        }
        // A quote is never inside a multi-byte character: both ends are
        // character boundaries of the validated text.
        let contents = &self.text[start..self.i];
        self.i += 1;
        Some(contents)
    }

    /// An object member's key and the colon after it (and whitespace).
    fn key(&mut self) -> Option<&'a str> {
        let k = self.string()?;
        self.ws();
        self.expect(b':')?;
        self.ws();
        Some(k)
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Some(&self.text[start..self.i])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.s[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// A value that is not an array or an object.
    fn scalar(&mut self) -> Option<Tok<'a>> {
        Some(match self.peek()? {
            b'"' => Tok::Str(self.string()?),
            b'-' | b'0'..=b'9' => Tok::Number(self.number()?),
            b't' => self.literal(b"true").map(|()| Tok::Bool(true))?,
            b'f' => self.literal(b"false").map(|()| Tok::Bool(false))?,
            b'n' => self.literal(b"null").map(|()| Tok::Null)?,
            _ => return None,
        })
    }

    /// Any value, the cursor on its first byte.
    fn value(&mut self) -> Option<Tok<'a>> {
        let start = self.i;
        match self.peek()? {
            b'{' => self.container().map(|()| Tok::Object(&self.text[start..self.i])),
            b'[' => self.container().map(|()| Tok::Array(&self.text[start..self.i])),
            _ => self.scalar(),
        }
    }

    /// Walks an object, the cursor on its `{`: `each` gets each member's
    /// key with the cursor on its value, and moves past the value.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            each(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object, its members kept in `members` (up to [`KEPT_MEMBERS`]).
    fn object(&mut self, members: &mut Members<'a>) -> Option<Tok<'a>> {
        let start = self.i;
        members.len = 0;
        self.members(|s, key| {
            let value = s.value()?;
            if let Some(slot) = members.kept.get_mut(members.len) {
                *slot = (key, value);
            }
            members.len += 1;
            Some(())
        })?;
        Some(Tok::Object(&self.text[start..self.i]))
    }

    /// Checks an array or an object and everything in it, without recursion.
    fn container(&mut self) -> Option<()> {
        let mut open = [0u8; MAX_DEPTH];
        let mut depth = 0;
        'value: loop {
            match self.peek()? {
                b @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    if self.peek()? == b + 2 {
                        // `{` + 2 is `}`, `[` + 2 is `]`: an empty container.
                        self.i += 1;
                    } else {
                        open[depth] = b;
                        depth += 1;
                        if b == b'{' {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                _ => {
                    self.scalar()?;
                }
            }
            // After a value: close containers until one goes on.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                let top = open[depth - 1];
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if top == b'{' {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    b if b == top + 2 => {
                        self.i += 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// Calls `each` with the members of an object [`event`] has checked
/// (so never `false` in practice: a value that is not an object is refused
/// before anyone asks for its members).
fn for_each_member<'a>(object: &'a str, mut each: impl FnMut(&str, Tok<'a>)) -> bool {
    let mut s = Scanner { text: object, s: object.as_bytes(), i: 0 };
    s.members(|s, key| {
        each(key, s.value()?);
        Some(())
    })
    .is_some()
}

/// Small integers without serde_json; anything else as serde_json reads it.
fn integer(raw: &str) -> Option<i64> {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, raw),
    };
    // serde_json reads `-0` as a float (negative zero), not as an integer.
    let negative_zero = negative && digits.starts_with('0');
    if negative_zero || digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return serde_json::from_str(raw).ok();
    }
    let n = digits.bytes().fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
    Some(if negative { -n } else { n })
}

/// Each accessor answers as the raw JSON value's does (`json_in`), so that
/// both paths decode an event the same.
impl<'a> Wire<'a> for Tok<'a> {
    fn is_null(self) -> bool {
        self == Tok::Null
    }
    fn type_name(self) -> &'static str {
        match self {
            Tok::Null => "null",
            Tok::Bool(_) => "a boolean",
            Tok::Str(_) => "a string",
            Tok::Number(_) => "a number",
            Tok::Array(_) => "an array",
            Tok::Object(_) | Tok::Members(_) => "an object",
        }
    }
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Tok::Str(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }
    fn integer(self) -> Option<i64> {
        match self {
            Tok::Number(raw) => integer(raw),
            _ => None,
        }
    }
    fn number(self) -> Option<f64> {
        match self {
            Tok::Number(raw) => serde_json::from_str(raw).ok(),
            _ => None,
        }
    }
    fn boolean(self) -> Option<bool> {
        match self {
            Tok::Bool(b) => Some(b),
            _ => None,
        }
    }
    fn text_list(self) -> Option<Vec<String>> {
        match self {
            Tok::Array(raw) => serde_json::from_str(raw).ok(),
            _ => None,
        }
    }
    fn for_each_member(self, mut each: impl FnMut(&str, Self)) -> bool {
        match self {
            Tok::Object(raw) => for_each_member(raw, each),
            Tok::Members(kept) => {
                kept.iter().for_each(|&(k, v)| each(k, v));
                true
            }
            _ => false,
        }
    }
}
