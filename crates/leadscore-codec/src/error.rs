//! Why an input message is bad input. The class is a stable, machine-readable
//! name (the dead-letter header and a metric label); the message is for people.

use std::fmt;

/// The class of a bad input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Not parseable as JSON, or not a JSON object.
    NotJson,
    /// Not a valid Avro datum for the schema.
    InvalidAvro,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// `type` is not one of the kinds.
    UnknownKind,
    /// The message exceeds the configured size limit.
    Oversize,
    /// The timestamp is neither RFC 3339 nor epoch milliseconds in range.
    BadTimestamp,
    /// The message key and the body's `lead_id` disagree.
    LeadIdMismatch,
    /// The timestamp is valid but implausible: before the configured floor,
    /// or further ahead of the clock (or the partition's event time) than
    /// the configured maximum.
    OutOfRangeTimestamp,
}

impl ErrorClass {
    pub const ALL: &'static [ErrorClass] = &[
        ErrorClass::NotJson,
        ErrorClass::InvalidAvro,
        ErrorClass::MissingField,
        ErrorClass::InvalidField,
        ErrorClass::UnknownKind,
        ErrorClass::Oversize,
        ErrorClass::BadTimestamp,
        ErrorClass::LeadIdMismatch,
        ErrorClass::OutOfRangeTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotJson => "not_json",
            ErrorClass::InvalidAvro => "invalid_avro",
            ErrorClass::MissingField => "missing_field",
            ErrorClass::InvalidField => "invalid_field",
            ErrorClass::UnknownKind => "unknown_kind",
            ErrorClass::Oversize => "oversize",
            ErrorClass::BadTimestamp => "bad_timestamp",
            ErrorClass::LeadIdMismatch => "lead_id_mismatch",
            ErrorClass::OutOfRangeTimestamp => "out_of_range_timestamp",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bad input message: its class and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct DecodeError {
    pub class: ErrorClass,
    pub message: String,
}

impl DecodeError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> DecodeError {
        DecodeError { class, message: message.into() }
    }
}

/// A value from the input quoted in an error message (defined in the core,
/// whose timestamp parser quotes its input too).
pub use leadscore_core::text::excerpt;
