//! The input contract's rules (docs/events.md), whatever the wire format.
//!
//! JSON and Avro differ in how a message is framed and how a value is read,
//! not in what an event is: both decoders hand their fields to
//! [`validate`] through the [`Wire`] view of a value, so that the two formats
//! accept and reject exactly the same events, with the same error classes and
//! the same messages. Everything here is generic (monomorphised per format),
//! so neither format pays for the other.

use crate::error::{excerpt, DecodeError, ErrorClass};
use crate::json_in::Limits;
use leadscore_core::bounds::{MAX_LIST_ITEMS, MAX_LIST_ITEM_BYTES, MAX_OPPORTUNITY_ID_BYTES, MAX_PROFILE_TEXT_BYTES};
use leadscore_core::event::{BounceType, Event, Field, FieldType, Kind, OwnedValue, Properties, Stage};
use leadscore_core::time::{check_range, parse_rfc3339, Millis};
use std::borrow::Cow;
use std::fmt;

/// One value of an input event as a wire format holds it. Each accessor
/// answers `None` when the value is not of that type, exactly as a JSON
/// value of another type would not deserialise into it.
pub(crate) trait Wire<'a>: Copy {
    fn is_null(self) -> bool;
    /// "a string", "a number", ...: what error messages say was there.
    fn type_name(self) -> &'static str;
    fn text(self) -> Option<Cow<'a, str>>;
    /// An integer that fits `i64` (not `1.0`, not `1e3`).
    fn integer(self) -> Option<i64>;
    fn number(self) -> Option<f64>;
    fn boolean(self) -> Option<bool>;
    /// An array of strings only.
    fn text_list(self) -> Option<Vec<String>>;
    /// Calls `each` with every member of an object (a map), in order;
    /// `false` (without a call) if the value is not one.
    fn for_each_member(self, each: impl FnMut(&str, Self)) -> bool;
}

/// The top-level fields of an event, as found (absent fields `None`).
pub(crate) struct Fields<V> {
    pub event_id: Option<V>,
    pub lead_id: Option<V>,
    pub kind: Option<V>,
    pub timestamp: Option<V>,
    pub properties: Option<V>,
}

fn invalid<'a>(field: impl fmt::Display, expected: &str, v: impl Wire<'a>) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{field}: expected {expected}, got {}", v.type_name()))
}

fn text<'a, V: Wire<'a>>(field: impl fmt::Display, v: V) -> Result<Cow<'a, str>, DecodeError> {
    v.text().ok_or_else(|| invalid(field, "a string", v))
}

fn required_text<'a, V: Wire<'a>>(field: &str, v: Option<V>, max: usize) -> Result<Cow<'a, str>, DecodeError> {
    let v = v
        .filter(|v| !v.is_null())
        .ok_or_else(|| DecodeError::new(ErrorClass::MissingField, format!("{field} is required")))?;
    let s = text(field, v)?;
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

fn timestamp<'a, V: Wire<'a>>(v: Option<V>) -> Result<Millis, DecodeError> {
    let v = v
        .filter(|v| !v.is_null())
        .ok_or_else(|| DecodeError::new(ErrorClass::MissingField, "timestamp is required"))?;
    let bad = |m: String| DecodeError::new(ErrorClass::BadTimestamp, format!("timestamp: {m}"));
    if let Some(t) = v.text() {
        return parse_rfc3339(&t).map_err(|e| bad(e.to_string()));
    }
    match v.integer() {
        Some(ms) => check_range(ms).map_err(|e| bad(e.to_string())),
        None => Err(bad(format!(
            "expected an RFC 3339 string or integer epoch milliseconds, got {}",
            match v.type_name() {
                "a number" => "a non-integer number",
                other => other,
            }
        ))),
    }
}

fn too_long(name: impl fmt::Display, len: usize, max: usize) -> DecodeError {
    DecodeError::new(ErrorClass::InvalidField, format!("{name}: {len} bytes, at most {max} allowed"))
}

/// A profile value: bounded (see [`leadscore_core::bounds`]), since the lead's
/// state keeps it.
fn owned<'a, V: Wire<'a>>(field: Field, name: PropertyName, v: V) -> Result<OwnedValue, DecodeError> {
    Ok(match field.field_type() {
        FieldType::Text => {
            let t = text(name, v)?;
            if t.len() > MAX_PROFILE_TEXT_BYTES {
                return Err(too_long(name, t.len(), MAX_PROFILE_TEXT_BYTES));
            }
            OwnedValue::Text(t.into())
        }
        FieldType::Integer => OwnedValue::Integer(v.integer().ok_or_else(|| invalid(name, "an integer", v))?),
        FieldType::Number => OwnedValue::Number(v.number().ok_or_else(|| invalid(name, "a number", v))?),
        FieldType::TextList => {
            let list = v.text_list().ok_or_else(|| invalid(name, "an array of strings", v))?;
            if list.len() > MAX_LIST_ITEMS {
                return Err(DecodeError::new(
                    ErrorClass::InvalidField,
                    format!("{name}: {} items, at most {MAX_LIST_ITEMS} allowed", list.len()),
                ));
            }
            if let Some(item) = list.iter().find(|i| i.len() > MAX_LIST_ITEM_BYTES) {
                return Err(too_long(format_args!("{name} item"), item.len(), MAX_LIST_ITEM_BYTES));
            }
            OwnedValue::TextList(list.into_iter().map(String::into_boxed_str).collect())
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

/// No kind has more properties than there are fields.
const MAX_PROPERTIES_OF_A_KIND: usize = Field::ALL.len();

/// `properties.<field>`, as error messages name a property.
#[derive(Clone, Copy)]
struct PropertyName(Field);

impl fmt::Display for PropertyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "properties.{}", self.0.as_str())
    }
}

/// A string naming one of a few values, in any case.
fn one_of<'a, T, V: Wire<'a>>(
    name: PropertyName,
    v: V,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<T, DecodeError> {
    let s = text(name, v)?;
    parse(&s.to_ascii_lowercase()).ok_or_else(|| {
        DecodeError::new(ErrorClass::InvalidField, format!("{name}: expected {expected}, got {}", excerpt(&s)))
    })
}

fn properties<'a, V: Wire<'a>>(kind: Kind, v: Option<V>) -> Result<Properties, DecodeError> {
    let wanted = kind.properties();
    // The value of each property of the kind, by its place in `wanted`.
    let mut found = [None; MAX_PROPERTIES_OF_A_KIND];
    if let Some(v) = v.filter(|v| !v.is_null()) {
        // Repeated keys: the last one wins, as in a JSON object.
        let object = v.for_each_member(|key, value| {
            if let Some(at) = wanted.iter().position(|(f, _)| f.as_str() == key) {
                found[at] = Some(value);
            }
        });
        if !object {
            return Err(invalid("properties", "an object", v));
        }
    }
    let mut p = Properties::default();
    for (&(field, required), &value) in wanted.iter().zip(&found) {
        // Formatted only into an error message, never per event.
        let name = PropertyName(field);
        if kind == Kind::ProfileUpdate {
            if let Some(v) = value {
                let v = if v.is_null() { None } else { Some(owned(field, name, v)?) };
                let v = match (field, v) {
                    (Field::Country, Some(v)) => Some(country(name, v)?),
                    (_, v) => v,
                };
                p.profile.push((field, v));
            }
            continue;
        }
        let Some(v) = value.filter(|v| !v.is_null()) else {
            if required {
                return Err(DecodeError::new(
                    ErrorClass::MissingField,
                    format!("{name} is required for {kind} events"),
                ));
            }
            continue;
        };
        match field {
            Field::DurationMs => p.duration_ms = Some(v.integer().ok_or_else(|| invalid(name, "an integer", v))?),
            Field::Amount => p.amount = Some(v.number().ok_or_else(|| invalid(name, "a number", v))?),
            Field::Attended => p.attended = Some(v.boolean().ok_or_else(|| invalid(name, "a boolean", v))?),
            Field::BounceType => p.bounce_type = Some(one_of(name, v, BounceType::parse, "\"hard\" or \"soft\"")?),
            Field::Stage => {
                p.stage = Some(one_of(name, v, Stage::parse, "\"open\", \"closed_won\" or \"closed_lost\"")?)
            }
            _ => {
                let s = text(name, v)?;
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

/// The event `fields` describe, checked field by field in the contract's
/// order (so that the first problem found is the same in every format).
/// `key` is the message key (the lead id, when present); `topic_kind` is the
/// kind the source topic is mapped to, if any, which makes `type` optional.
pub(crate) fn validate<'a, V: Wire<'a>>(
    fields: Fields<V>,
    key: Option<&[u8]>,
    topic_kind: Option<Kind>,
    limits: &Limits,
) -> Result<Event, DecodeError> {
    let event_id = required_text("event_id", fields.event_id, limits.max_event_id_bytes)?;
    let key = match key {
        Some(k) => Some(std::str::from_utf8(k).map_err(|_| {
            DecodeError::new(ErrorClass::InvalidField, "message key: expected the lead id as UTF-8 text")
        })?),
        None => None,
    };
    let lead_id: Cow<str> = match (key, fields.lead_id.filter(|v| !v.is_null())) {
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
    let kind = match (fields.kind.filter(|v| !v.is_null()), topic_kind) {
        (None, Some(k)) => k,
        (None, None) => return Err(DecodeError::new(ErrorClass::MissingField, "type is required")),
        (Some(v), topic) => {
            let name = text("type", v)?;
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
    let timestamp = timestamp(fields.timestamp)?;
    let properties = properties(kind, fields.properties)?;
    Ok(Event { event_id: event_id.as_ref().into(), lead_id: lead_id.as_ref().into(), kind, timestamp, properties })
}
