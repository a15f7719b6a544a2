//! Decodes one JSON input event (domain.md §2) into a core event.
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

fn invalid(field: &str, expected: &str, raw: &RawValue) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{field}: expected {expected}, got {}", json_type(raw)))
}

fn text<'a>(field: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
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

fn too_long(name: &str, len: usize, max: usize) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{name}: {len} bytes, at most {max} allowed"))
}

/// A profile value: bounded (see [`leadscore_core::bounds`]), since the lead's
/// state keeps it.
fn owned(field: Field, name: &str, raw: &RawValue) -> Result<OwnedValue, DecodeError> {
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
                return Err(too_long(&format!("{name} item"), item.len(), MAX_LIST_ITEM_BYTES));
            }
            OwnedValue::TextList(v.into_iter().map(String::into_boxed_str).collect())
        }
        FieldType::Boolean => unreachable!("no profile field is boolean"),
    })
}

fn country(name: &str, v: OwnedValue) -> Result<OwnedValue, DecodeError> {
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

fn properties(kind: Kind, raw: Option<&RawValue>) -> Result<Properties, DecodeError> {
    let obj = match raw.filter(|r| !is_null(r)) {
        None => RawObject(Vec::new()),
        Some(r) => serde_json::from_str::<RawObject>(r.get()).map_err(|_| invalid("properties", "an object", r))?,
    };
    let mut p = Properties::default();
    for &(field, required) in kind.properties() {
        let name_owned;
        let name = {
            name_owned = format!("properties.{}", field.as_str());
            name_owned.as_str()
        };
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
mod tests {
    use super::*;
    use leadscore_core::event::Value;

    fn dec(s: &str) -> Result<Event, DecodeError> {
        decode_json(s.as_bytes(), None, None, &Limits::default())
    }

    fn class(s: &str) -> ErrorClass {
        dec(s).unwrap_err().class
    }

    #[test]
    fn decodes_the_contract_example() {
        let e = dec(r#"{"event_id":"e-000123","lead_id":"L-42","type":"page_view","timestamp":"2026-11-25T16:00:00.000Z","properties":{"url":"https://example.com/pricing","extra":1}}"#).unwrap();
        assert_eq!(e.event_id.as_str(), "e-000123");
        assert_eq!(e.lead_id.as_str(), "L-42");
        assert_eq!(e.kind, Kind::PageView);
        assert_eq!(e.timestamp, 1_795_622_400_000);
        assert_eq!(e.properties.get(Field::Url), Some(Value::Text("https://example.com/pricing")));
    }

    #[test]
    fn deep_nesting_is_ignored_where_unknown_and_refused_where_it_matters() {
        // serde_json skips a raw value without recursion: an unknown property
        // nested a million deep neither overflows the stack nor fails.
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let unknown = format!(
            r#"{{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{{"url":"/","x":{deep}}},"y":{deep}}}"#
        );
        assert_eq!(dec(&unknown).unwrap().kind, Kind::PageView);
        let known = format!(
            r#"{{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{{"url":{deep}}}}}"#
        );
        assert_eq!(class(&known), ErrorClass::InvalidField);
        assert_eq!(class(&deep), ErrorClass::NotJson);
        let unclosed = format!(r#"{{"event_id":"e","properties":{{"x":{}}}}}"#, "[".repeat(200_000));
        assert_eq!(class(&unclosed), ErrorClass::NotJson);
    }

    #[test]
    fn epoch_millis_and_key() {
        let e = decode_json(
            br#"{"event_id":"e","timestamp":5,"properties":{"url":"/"}}"#,
            Some(b"L-1"),
            Some(Kind::PageView),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((e.lead_id.as_str(), e.kind, e.timestamp), ("L-1", Kind::PageView, 5));
    }

    #[test]
    fn every_class_of_bad_input() {
        assert_eq!(class("not json"), ErrorClass::NotJson);
        assert_eq!(class("[1,2]"), ErrorClass::NotJson);
        assert_eq!(
            class(r#"{"lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#),
            ErrorClass::MissingField
        );
        assert_eq!(
            class(r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{}}"#),
            ErrorClass::MissingField
        );
        assert_eq!(class(r#"{"event_id":"e","lead_id":"L","type":"fax","timestamp":1}"#), ErrorClass::UnknownKind);
        assert_eq!(
            class(
                r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":"yesterday","properties":{"term":"x"}}"#
            ),
            ErrorClass::BadTimestamp
        );
        assert_eq!(
            class(r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1.5,"properties":{"term":"x"}}"#),
            ErrorClass::BadTimestamp
        );
        assert_eq!(
            class(
                r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}"#
            ),
            ErrorClass::InvalidField
        );
        assert_eq!(
            class(
                r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":1,"properties":{"webinar":"w","attended":"yes"}}"#
            ),
            ErrorClass::InvalidField
        );
        assert_eq!(
            class(r#"{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{"url":7}}"#),
            ErrorClass::InvalidField
        );
        assert_eq!(
            class(
                r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"technologies":"salesforce"}}"#
            ),
            ErrorClass::InvalidField
        );
        assert_eq!(class(r#"{"event_id":"","lead_id":"L","type":"erase","timestamp":1}"#), ErrorClass::InvalidField);
        let mismatch = decode_json(
            br#"{"event_id":"e","lead_id":"L-2","type":"erase","timestamp":1}"#,
            Some(b"L-1"),
            None,
            &Limits::default(),
        );
        assert_eq!(mismatch.unwrap_err().class, ErrorClass::LeadIdMismatch);
        let big = format!(
            r#"{{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{{"term":"{}"}}}}"#,
            "x".repeat(2000)
        );
        let small = Limits { max_message_bytes: 1000, ..Limits::default() };
        assert_eq!(decode_json(big.as_bytes(), None, None, &small).unwrap_err().class, ErrorClass::Oversize);
    }

    #[test]
    fn values_a_lead_keeps_are_bounded() {
        let profile = |props: String| {
            dec(&format!(
                r#"{{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{props}}}"#
            ))
        };
        let long = "x".repeat(MAX_PROFILE_TEXT_BYTES + 1);
        let e = profile(format!(r#"{{"company":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.message, "properties.company: 4097 bytes, at most 4096 allowed");
        assert!(profile(format!(r#"{{"company":"{}"}}"#, &long[1..])).is_ok());
        let many: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| format!("\"t{i}\"")).collect();
        let e = profile(format!(r#"{{"technologies":[{}]}}"#, many.join(","))).unwrap_err();
        assert_eq!(e.message, "properties.technologies: 101 items, at most 100 allowed");
        let e = profile(format!(r#"{{"technologies":["{}"]}}"#, "t".repeat(300))).unwrap_err();
        assert_eq!(e.message, "properties.technologies item: 300 bytes, at most 256 allowed");
        let e = dec(&format!(
            r#"{{"event_id":"e","lead_id":"L","type":"opportunity_update","timestamp":1,"properties":{{"opportunity_id":"{}"}}}}"#,
            "o".repeat(257)
        ))
        .unwrap_err();
        assert_eq!(e.message, "properties.opportunity_id: 257 bytes, at most 256 allowed");
    }

    #[test]
    fn messages_name_the_field() {
        let e = dec(r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}"#).unwrap_err();
        assert_eq!(e.message, "properties.company_size: expected an integer, got a string");
        let e =
            dec(r#"{"event_id":"e","lead_id":"L","type":"download","timestamp":1,"properties":{"asset_type":"pdf"}}"#)
                .unwrap_err();
        assert_eq!(e.message, "properties.asset is required for download events");
    }

    #[test]
    fn null_deletes_in_profile_updates_and_is_absent_elsewhere() {
        let e = dec(r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"email":null,"country":"us","job_title":"CEO"}}"#).unwrap();
        assert_eq!(e.properties.profile.len(), 3);
        assert_eq!(e.properties.get(Field::Country), Some(Value::Text("US")));
        assert_eq!(e.properties.get(Field::Email), None);
        let e = dec(
            r#"{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{"url":"/","title":null}}"#,
        )
        .unwrap();
        assert_eq!(e.properties.get(Field::Title), None);
    }

    #[test]
    fn bounce_type_is_case_insensitive_and_attended_defaults_to_true() {
        let e = dec(
            r#"{"event_id":"e","lead_id":"L","type":"email_bounce","timestamp":1,"properties":{"bounce_type":"HARD"}}"#,
        )
        .unwrap();
        assert_eq!(e.properties.bounce_type, Some(BounceType::Hard));
        let e = dec(r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":1,"properties":{"webinar":"w"}}"#)
            .unwrap();
        assert_eq!(e.properties.attended, Some(true));
    }

    #[test]
    fn topic_kind_must_agree_with_type() {
        let r = decode_json(
            br#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#,
            None,
            Some(Kind::PageView),
            &Limits::default(),
        );
        assert_eq!(r.unwrap_err().class, ErrorClass::InvalidField);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode_json(&bytes, None, None, &Limits::default());
        }
    }
}
