//! Avro input datums read straight into the contract's view of an event.
//!
//! A datum written with leadscore's own envelope schema (the common case:
//! producers use `schemas/lead-event.avsc`) is read here byte by byte, its
//! strings borrowed from the message, with nothing built in between; any
//! other writer schema is resolved against the envelope by apache-avro and
//! its value tree viewed the same way. Either way the fields go to
//! [`crate::contract::validate`], the rules the JSON decoder uses too.
//!
//! The reader follows apache-avro's decoding of the same schema exactly
//! (variable-length zig-zag longs of at most ten bytes, the block counts of
//! maps and arrays, negative counts followed by a byte size, booleans only
//! 0 or 1, strings UTF-8, lengths and counts at most
//! [`MAX_AVRO_ALLOCATION`](crate::avro::MAX_AVRO_ALLOCATION)), so that what
//! one accepts the other accepts; the tests check that on arbitrary bytes.

use crate::avro::MAX_AVRO_ALLOCATION;
use crate::contract::{Fields, Wire};
use apache_avro::types::Value;
use std::borrow::Cow;

/// A value of the envelope schema (or of its `properties` map).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AvroValue<'a> {
    Null,
    Boolean(bool),
    Long(i64),
    Double(f64),
    Str(&'a str),
    List(Vec<&'a str>),
    Map(Vec<(&'a str, AvroValue<'a>)>),
}

impl<'b, 'a: 'b> Wire<'a> for &'b AvroValue<'a> {
    fn is_null(self) -> bool {
        matches!(self, AvroValue::Null)
    }
    fn type_name(self) -> &'static str {
        match self {
            AvroValue::Null => "null",
            AvroValue::Boolean(_) => "a boolean",
            AvroValue::Long(_) => "a number",
            // JSON has no such numbers; nothing takes one.
            AvroValue::Double(d) if !d.is_finite() => "a non-finite number",
            AvroValue::Double(_) => "a number",
            AvroValue::Str(_) => "a string",
            AvroValue::List(_) => "an array",
            AvroValue::Map(_) => "an object",
        }
    }
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            AvroValue::Str(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }
    fn integer(self) -> Option<i64> {
        match self {
            AvroValue::Long(i) => Some(*i),
            _ => None,
        }
    }
    fn number(self) -> Option<f64> {
        match self {
            AvroValue::Long(i) => Some(*i as f64),
            AvroValue::Double(d) if d.is_finite() => Some(*d),
            _ => None,
        }
    }
    fn boolean(self) -> Option<bool> {
        match self {
            AvroValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }
    fn text_list(self) -> Option<Vec<String>> {
        match self {
            AvroValue::List(items) => Some(items.iter().map(|s| s.to_string()).collect()),
            _ => None,
        }
    }
    fn for_each_member(self, mut each: impl FnMut(&str, Self)) -> bool {
        match self {
            AvroValue::Map(m) => {
                m.iter().for_each(|(k, v)| each(k, v));
                true
            }
            _ => false,
        }
    }
}

/// The five fields of the envelope, in its order.
pub(crate) struct Envelope<'a>([AvroValue<'a>; 5]);

impl<'a> Envelope<'a> {
    pub(crate) fn fields(&self) -> Fields<&AvroValue<'a>> {
        let [event_id, lead_id, kind, timestamp, properties] = &self.0;
        Fields {
            event_id: Some(event_id),
            lead_id: Some(lead_id),
            kind: Some(kind),
            timestamp: Some(timestamp),
            properties: Some(properties),
        }
    }
}

/// A datum of the envelope schema, read directly; `Err` says what is wrong
/// with the bytes.
pub(crate) fn read_envelope(datum: &[u8]) -> Result<Envelope<'_>, String> {
    let mut r = Reader { bytes: datum, pos: 0 };
    let event_id = AvroValue::Str(r.string()?);
    let lead_id = r.optional_string()?;
    let kind = r.optional_string()?;
    let timestamp = match r.union_index(2)? {
        0 => AvroValue::Long(r.long()?),
        _ => AvroValue::Str(r.string()?),
    };
    let mut properties = Vec::new();
    while let Some(n) = r.block()? {
        for _ in 0..n {
            let key = r.string()?;
            let value = match r.union_index(6)? {
                0 => AvroValue::Null,
                1 => AvroValue::Boolean(r.boolean()?),
                2 => AvroValue::Long(r.long()?),
                3 => AvroValue::Double(r.double()?),
                4 => AvroValue::Str(r.string()?),
                _ => {
                    let mut items = Vec::new();
                    while let Some(n) = r.block()? {
                        for _ in 0..n {
                            items.push(r.string()?);
                        }
                    }
                    AvroValue::List(items)
                }
            };
            properties.push((key, value));
        }
    }
    if r.pos != datum.len() {
        return Err(format!("{} bytes after the datum", datum.len() - r.pos));
    }
    Ok(Envelope([event_id, lead_id, kind, timestamp, AvroValue::Map(properties)]))
}

/// A datum of another writer schema, already resolved to the envelope by
/// apache-avro.
pub(crate) fn resolved_envelope(value: &Value) -> Result<Envelope<'_>, String> {
    let Value::Record(fields) = value else {
        return Err("the resolved datum is not a record".into());
    };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| view(v)).unwrap_or(AvroValue::Null);
    Ok(Envelope([get("event_id"), get("lead_id"), get("type"), get("timestamp"), get("properties")]))
}

/// A resolved value of the envelope's types as an [`AvroValue`].
fn view(v: &Value) -> AvroValue<'_> {
    match v {
        Value::Union(_, inner) => view(inner),
        Value::Boolean(b) => AvroValue::Boolean(*b),
        Value::Int(i) => AvroValue::Long(i64::from(*i)),
        Value::Long(i) | Value::TimestampMillis(i) => AvroValue::Long(*i),
        Value::Float(f) => AvroValue::Double(f64::from(*f)),
        Value::Double(d) => AvroValue::Double(*d),
        Value::String(s) => AvroValue::Str(s),
        Value::Array(items) => AvroValue::List(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
        ),
        Value::Map(m) => AvroValue::Map(m.iter().map(|(k, v)| (k.as_str(), view(v))).collect()),
        // Resolution to the envelope leaves no other types.
        _ => AvroValue::Null,
    }
}

/// Reads the Avro binary encoding; see the module documentation.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("the datum ends too soon")?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut z = 0u64;
        for j in 0..10 {
            let b = self.take(1)?[0];
            z |= u64::from(b & 0x7f) << (j * 7);
            if b & 0x80 == 0 {
                return Ok(if z & 1 == 0 { (z >> 1) as i64 } else { !(z >> 1) as i64 });
            }
        }
        Err("a variable-length integer of more than ten bytes".into())
    }

    /// A length or a block count: not negative, and within the allocation limit.
    fn limited(n: i64) -> Result<usize, String> {
        let n = usize::try_from(n).map_err(|_| format!("a negative length {n}"))?;
        if n > MAX_AVRO_ALLOCATION {
            return Err(format!("a length of {n}, more than the {MAX_AVRO_ALLOCATION} allowed"));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<&'a str, String> {
        let n = Self::limited(self.long()?)?;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!("a string that is not UTF-8: {e}"))
    }

    fn union_index(&mut self, variants: i64) -> Result<i64, String> {
        let i = self.long()?;
        if !(0..variants).contains(&i) {
            return Err(format!("union index {i} of a union of {variants}"));
        }
        Ok(i)
    }

    fn optional_string(&mut self) -> Result<AvroValue<'a>, String> {
        Ok(match self.union_index(2)? {
            0 => AvroValue::Null,
            _ => AvroValue::Str(self.string()?),
        })
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("a boolean of {b}")),
        }
    }

    fn double(&mut self) -> Result<f64, String> {
        let b = self.take(8)?;
        Ok(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// The item count of the next block of a map or an array; `None` at the
    /// end of it.
    fn block(&mut self) -> Result<Option<usize>, String> {
        let n = self.long()?;
        let n = match n {
            0 => return Ok(None),
            n if n < 0 => {
                // A negative count is followed by the block's size in bytes.
                self.long()?;
                n.checked_neg().ok_or("a block count that overflows")?
            }
            n => n,
        };
        Self::limited(n).map(Some)
    }
}
