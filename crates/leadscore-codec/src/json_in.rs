//! Decodes one JSON input event (docs/events.md) into a core event.
//!
//! Every top-level field and every known property is taken as a raw JSON value
//! and checked on its own, so that an error can name the exact field and what it
//! should have been. Unknown fields are kept out of the core event and ignored.

use crate::error::{excerpt, DecodeError, ErrorClass};
use leadscore_core::bounds::{MAX_LIST_ITEMS, MAX_LIST_ITEM_BYTES, MAX_OPPORTUNITY_ID_BYTES, MAX_PROFILE_TEXT_BYTES};
use leadscore_core::event::{BounceType, Event, Field, FieldType, Kind, OwnedValue, Properties, Stage};
use leadscore_core::time::{check_range, parse_rfc3339, Millis};
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

impl<'a> RawObject<'a> {
    /// The last value of `key` (JSON objects with repeated keys: last one wins).
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
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

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn invalid(field: impl fmt::Display, expected: &str, raw: &RawValue) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{field}: expected {expected}, got {}", json_type(raw)))
}

fn text<'a>(field: impl fmt::Display, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    // Cow borrows when the string has no escapes.
    let s: Cow<'a, str> = serde_json::from_str(raw.get()).map_err(|_| invalid(field, "a string", raw))?;
    Ok(s)
}

fn required_text<'a>(field: &str, raw: Option<&'a RawValue>, max: usize) -> Result<Cow<'a, str>, DecodeError> {
    let raw = raw
        .filter(|r| !is_null(r))
        .ok_or_else(|| DecodeError::new(ErrorClass::MissingField, format!("{field} is required")))?;
    let s = text(field, raw)?;
    if s.is_empty() {
        return Err(DecodeError::new(ErrorClass::InvalidField, format!("{field}: expected a non-empty string")));
    }
    if s.len() > max {
        return Err(DecodeError::new(
            ErrorClass::InvalidField,
            format!("{field}: {} bytes, at most {max} allowed", s.len()),
        ));
    }
    Ok(s)
}

fn timestamp(raw: Option<&RawValue>) -> Result<Millis, DecodeError> {
    let raw = raw
        .filter(|r| !is_null(r))
        .ok_or_else(|| DecodeError::new(ErrorClass::MissingField, "timestamp is required"))?;
    let bad = |m: String| DecodeError::new(ErrorClass::BadTimestamp, format!("timestamp: {m}"));
    let s = raw.get();
    if s.starts_with('"') {
        let t = text("timestamp", raw)?;
        return parse_rfc3339(&t).map_err(|e| bad(e.to_string()));
    }
    match serde_json::from_str::<i64>(s) {
        Ok(ms) => check_range(ms).map_err(|e| bad(e.to_string())),
        Err(_) => Err(bad(format!(
            "expected an RFC 3339 string or integer epoch milliseconds, got {}",
            if json_type(raw) == "a number" { "a non-integer number" } else { json_type(raw) }
        ))),
    }
}

fn too_long(name: impl fmt::Display, len: usize, max: usize) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{name}: {len} bytes, at most {max} allowed"))
}

/// A profile value: bounded (see [`leadscore_core::bounds`]), since the lead's
/// state keeps it.
fn owned(field: Field, name: PropertyName, raw: &RawValue) -> Result<OwnedValue, DecodeError> {
    Ok(match field.field_type() {
        FieldType::Text => {
            let t = text(name, raw)?;
            if t.len() > MAX_PROFILE_TEXT_BYTES {
                return Err(too_long(name, t.len(), MAX_PROFILE_TEXT_BYTES));
            }
            OwnedValue::Text(t.into())
        }
        FieldType::Integer => {
            OwnedValue::Integer(serde_json::from_str(raw.get()).map_err(|_| invalid(name, "an integer", raw))?)
        }
        FieldType::Number => {
            OwnedValue::Number(serde_json::from_str(raw.get()).map_err(|_| invalid(name, "a number", raw))?)
        }
        FieldType::TextList => {
            let v: Vec<String> =
                serde_json::from_str(raw.get()).map_err(|_| invalid(name, "an array of strings", raw))?;
            if v.len() > MAX_LIST_ITEMS {
                return Err(DecodeError::new(
                    ErrorClass::InvalidField,
                    format!("{name}: {} items, at most {MAX_LIST_ITEMS} allowed", v.len()),
                ));
            }
            if let Some(item) = v.iter().find(|i| i.len() > MAX_LIST_ITEM_BYTES) {
                return Err(too_long(format_args!("{name} item"), item.len(), MAX_LIST_ITEM_BYTES));
            }
            OwnedValue::TextList(v.into_iter().map(String::into_boxed_str).collect())
        }
        FieldType::Boolean => unreachable!("no profile field is boolean"),
    })
}

fn country(name: PropertyName, v: OwnedValue) -> Result<OwnedValue, DecodeError> {
    match v {
        OwnedValue::Text(s) => {
            let t = s.trim();
            if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(OwnedValue::Text(t.to_ascii_uppercase().into()))
            } else {
                Err(DecodeError::new(
                    ErrorClass::InvalidField,
                    format!("{name}: expected an ISO 3166 alpha-2 code such as \"US\", got {}", excerpt(&s)),
                ))
            }
        }
        other => Ok(other),
    }
}

/// `properties.<field>`, as error messages name a property.
#[derive(Clone, Copy)]
struct PropertyName(Field);

impl fmt::Display for PropertyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "properties.{}", self.0.as_str())
    }
}

fn properties(kind: Kind, raw: Option<&RawValue>) -> Result<Properties, DecodeError> {
    let obj = match raw.filter(|r| !is_null(r)) {
        None => RawObject(Vec::new()),
        Some(r) => serde_json::from_str::<RawObject>(r.get()).map_err(|_| invalid("properties", "an object", r))?,
    };
    let mut p = Properties::default();
    for &(field, required) in kind.properties() {
        // Formatted only into an error message, never per event.
        let name = PropertyName(field);
        let value = obj.get(field.as_str());
        if kind == Kind::ProfileUpdate {
            if let Some(raw) = value {
                let v = if is_null(raw) { None } else { Some(owned(field, name, raw)?) };
                let v = match (field, v) {
                    (Field::Country, Some(v)) => Some(country(name, v)?),
                    (_, v) => v,
                };
                p.profile.push((field, v));
            }
            continue;
        }
        let Some(raw) = value.filter(|r| !is_null(r)) else {
            if required {
                return Err(DecodeError::new(
                    ErrorClass::MissingField,
                    format!("{name} is required for {kind} events"),
                ));
            }
            continue;
        };
        match field {
            Field::DurationMs => {
                p.duration_ms = Some(serde_json::from_str(raw.get()).map_err(|_| invalid(name, "an integer", raw))?)
            }
            Field::Amount => {
                p.amount = Some(serde_json::from_str(raw.get()).map_err(|_| invalid(name, "a number", raw))?)
            }
            Field::Attended => {
                p.attended = Some(serde_json::from_str(raw.get()).map_err(|_| invalid(name, "a boolean", raw))?)
            }
            Field::BounceType => {
                let s = text(name, raw)?;
                p.bounce_type = Some(BounceType::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                    DecodeError::new(
                        ErrorClass::InvalidField,
                        format!("{name}: expected \"hard\" or \"soft\", got {}", excerpt(&s)),
                    )
                })?);
            }
            Field::Stage => {
                let s = text(name, raw)?;
                p.stage = Some(Stage::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                    DecodeError::new(
                        ErrorClass::InvalidField,
                        format!("{name}: expected \"open\", \"closed_won\" or \"closed_lost\", got {}", excerpt(&s)),
                    )
                })?);
            }
            _ => {
                let s = text(name, raw)?;
                if required && s.is_empty() {
                    return Err(DecodeError::new(
                        ErrorClass::InvalidField,
                        format!("{name}: expected a non-empty string"),
                    ));
                }
                if field == Field::OpportunityId && s.len() > MAX_OPPORTUNITY_ID_BYTES {
                    return Err(too_long(name, s.len(), MAX_OPPORTUNITY_ID_BYTES));
                }
                p.text.push((field, s.into()));
            }
        }
    }
    if kind == Kind::Webinar && p.attended.is_none() {
        p.attended = Some(true);
    }
    Ok(p)
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
    let event_id = required_text("event_id", raw.event_id, limits.max_event_id_bytes)?;

    let key = match key {
        Some(k) => Some(std::str::from_utf8(k).map_err(|_| {
            DecodeError::new(ErrorClass::InvalidField, "message key: expected the lead id as UTF-8 text")
        })?),
        None => None,
    };
    let lead_id: Cow<str> = match (key, raw.lead_id.filter(|r| !is_null(r))) {
        (Some(k), Some(body)) => {
            let b = required_text("lead_id", Some(body), limits.max_lead_id_bytes)?;
            if b != k {
                return Err(DecodeError::new(
                    ErrorClass::LeadIdMismatch,
                    format!("lead_id {} does not match the message key {}", excerpt(&b), excerpt(k)),
                ));
            }
            b
        }
        (None, body) => required_text("lead_id", body, limits.max_lead_id_bytes)?,
        (Some(k), None) => {
            if k.is_empty() || k.len() > limits.max_lead_id_bytes {
                return Err(DecodeError::new(
                    ErrorClass::InvalidField,
                    format!("message key: expected a lead id of 1 to {} bytes", limits.max_lead_id_bytes),
                ));
            }
            Cow::Borrowed(k)
        }
    };

    let kind = match (raw.kind.filter(|r| !is_null(r)), topic_kind) {
        (None, Some(k)) => k,
        (None, None) => return Err(DecodeError::new(ErrorClass::MissingField, "type is required")),
        (Some(r), topic) => {
            let name = text("type", r)?;
            let k = Kind::parse(&name).ok_or_else(|| {
                DecodeError::new(
                    ErrorClass::UnknownKind,
                    format!(
                        "type {} is not a known kind; expected one of: {}",
                        excerpt(&name),
                        Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            if let Some(t) = topic.filter(|t| *t != k) {
                return Err(DecodeError::new(
                    ErrorClass::InvalidField,
                    format!("type is {k} but this topic carries only {t} events"),
                ));
            }
            k
        }
    };
    let timestamp = timestamp(raw.timestamp)?;
    let properties = properties(kind, raw.properties)?;
    Ok(Event { event_id: event_id.as_ref().into(), lead_id: lead_id.as_ref().into(), kind, timestamp, properties })
}

#[cfg(test)]
mod tests;
