//! Decodes one JSON input event (docs/events.md) into a core event.
//!
//! Every top-level field and every known property is taken as a raw JSON value
//! and checked on its own by the contract's rules (`contract`), so
//! that an error can name the exact field and what it should have been.
//! Unknown fields are kept out of the core event and ignored.
//!
//! Two readers find those values: a one-pass scanner (`scan`) for the plain
//! events nearly every producer writes, and serde_json for everything else,
//! including every message that is not valid JSON.

use crate::contract::{validate, Fields, Wire};
use crate::error::{DecodeError, ErrorClass};
use leadscore_core::event::{Event, Kind};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Size limits of input messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message (key and value) decoded; a larger one is a dead
    /// letter of class `oversize` with a truncated copy of its value.
    pub max_message_bytes: usize,
    pub max_event_id_bytes: usize,
    pub max_lead_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES, max_event_id_bytes: 128, max_lead_id_bytes: 256 }
    }
}

/// The default of [`Limits::max_message_bytes`]: with the dead-letter headers
/// a dead letter stays below librdkafka's default `message.max.bytes`
/// (1,000,000) and Kafka's default `max.message.bytes` (1,048,588).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 900_000;

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lead_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

/// The members of a JSON object, in order, values left raw.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<RawObject<'a>, M::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<Cow<'a, str>, &'a RawValue>()? {
                    v.push((k, val));
                }
                Ok(RawObject(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON value is of a type when it deserialises into it.
impl<'a> Wire<'a> for &'a RawValue {
    fn is_null(self) -> bool {
        self.get() == "null"
    }
    fn type_name(self) -> &'static str {
        json_type(self)
    }
    fn text(self) -> Option<Cow<'a, str>> {
        let s = self.get();
        if !s.starts_with('"') {
            return None;
        }
        // A raw value is valid JSON: a string without a backslash has no
        // escapes, and is its own text between the quotes.
        if !s.contains('\\') {
            return Some(Cow::Borrowed(&s[1..s.len() - 1]));
        }
        serde_json::from_str(s).ok()
    }
    // A value of another type is told by its first byte, without building
    // serde_json's error (an allocation) to find out.
    fn integer(self) -> Option<i64> {
        self.type_name().eq("a number").then(|| serde_json::from_str(self.get()).ok()).flatten()
    }
    fn number(self) -> Option<f64> {
        self.type_name().eq("a number").then(|| serde_json::from_str(self.get()).ok()).flatten()
    }
    fn boolean(self) -> Option<bool> {
        match self.get() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn text_list(self) -> Option<Vec<String>> {
        serde_json::from_str(self.get()).ok()
    }
    fn for_each_member(self, mut each: impl FnMut(&str, Self)) -> bool {
        match serde_json::from_str::<RawObject>(self.get()) {
            Ok(o) => {
                o.0.into_iter().for_each(|(k, v)| each(&k, v));
                true
            }
            Err(_) => false,
        }
    }
}

/// Decodes a JSON event. `key` is the message key (the lead id, when present);
/// `topic_kind` is the kind the source topic is mapped to, if any, which makes
/// `type` optional.
pub fn decode_json(
    bytes: &[u8],
    key: Option<&[u8]>,
    topic_kind: Option<Kind>,
    limits: &Limits,
) -> Result<Event, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::new(
            ErrorClass::Oversize,
            format!("message of {} bytes exceeds the limit of {} bytes", bytes.len(), limits.max_message_bytes),
        ));
    }
    let mut members = scan::Members::new();
    match scan::event(bytes, &mut members) {
        Some(mut fields) => {
            members.attach(&mut fields);
            validate(fields, key, topic_kind, limits)
        }
        None => decode_with_serde(bytes, key, topic_kind, limits),
    }
}

/// [`decode_json`] of what the one-pass reader (`scan`) leaves: escapes,
/// unusual nesting, and every message that is not valid JSON, which serde_json's
/// error then describes.
fn decode_with_serde(
    bytes: &[u8],
    key: Option<&[u8]>,
    topic_kind: Option<Kind>,
    limits: &Limits,
) -> Result<Event, DecodeError> {
    // serde would also accept a struct written as an array; an event is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        let what = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => "expected a JSON object".to_string(),
            Err(e) => format!("not valid JSON: {e}"),
        };
        return Err(DecodeError::new(ErrorClass::NotJson, what));
    }
    let raw: RawEvent = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "expected a JSON object".to_string(),
            _ => format!("not valid JSON: {e}"),
        };
        DecodeError::new(ErrorClass::NotJson, what)
    })?;
    let fields = Fields {
        event_id: raw.event_id,
        lead_id: raw.lead_id,
        kind: raw.kind,
        timestamp: raw.timestamp,
        properties: raw.properties,
    };
    validate(fields, key, topic_kind, limits)
}

mod scan;
#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod tests;
