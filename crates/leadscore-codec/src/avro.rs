//! Avro with the Confluent wire format (magic byte 0, 4-byte big-endian schema
//! id, Avro binary datum), for input events and output records.
//!
//! Input: the writer schema comes from a local id -> `.avsc` mapping or, for
//! ids not in it, from a schema registry, through a [`SchemaCache`] that
//! never blocks the caller: while the registry is being asked (or is down)
//! decoding says to wait ([`AvroError::Wait`]) rather than fail;
//! the datum is resolved against leadscore's envelope schema
//! (`schemas/lead-event.avsc`) and then validated by exactly the rules of the
//! JSON contract, so that both formats accept and reject the same events with
//! the same error classes. Anything Avro-specific that is wrong (no magic
//! byte, unknown schema id, a datum that does not decode or resolve) is
//! `invalid_avro`.
//!
//! apache-avro reserves room for a block of a map or an array from the count
//! the datum declares, before reading an item: eleven bytes declaring a map
//! of billions of entries made it ask for 43 GB and abort the process (found
//! by the fuzzer). Its allocation limit is global and compared with the item
//! count, not the bytes reserved, so it is set to [`MAX_AVRO_ALLOCATION`]:
//! a string, bytes or a block of more than that many items is `invalid_avro`,
//! and a hostile count reserves at most a few tens of MB, freed at once.
//!
//! Input datums of leadscore's own envelope schema are read directly
//! (`avro_in`); those of other writer schemas are resolved to the
//! envelope by apache-avro first.
//!
//! Output: the fields of the JSON record, written directly
//! ([`crate::avro_out`]) in the layout of `schemas/score-change.avsc` or
//! `schemas/segment-transition.avsc`, framed with the schema ids configured
//! for them.

use crate::avro_in::{read_envelope, resolved_envelope};
use crate::avro_out::encode_avro;
use crate::contract::validate;
use crate::error::{DecodeError, ErrorClass};
use crate::json_in::{decode_json, Limits};
use crate::json_out::RecordContext;
use crate::registry::{RegistryClient, RegistrySettings};
use crate::schemas::{Lookup, SchemaCache, Writer};
use apache_avro::types::Value;
use apache_avro::Schema;
use leadscore_core::output::{Reason, Record};
use leadscore_core::{Event, Kind};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// The schemas shipped in the repository (`schemas/`).
pub const LEAD_EVENT_AVSC: &str = include_str!("../../../schemas/lead-event.avsc");
pub const SCORE_CHANGE_AVSC: &str = include_str!("../../../schemas/score-change.avsc");
pub const SEGMENT_TRANSITION_AVSC: &str = include_str!("../../../schemas/segment-transition.avsc");

/// The largest string, bytes or collection block an Avro input may hold
/// (bytes or items); see the module documentation.
pub const MAX_AVRO_ALLOCATION: usize = 256 * 1024;

/// Where Avro schemas come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvroSettings {
    /// Writer schemas of input messages, by Confluent schema id.
    pub schema_files: BTreeMap<u32, PathBuf>,
    /// The schema registry for ids not in `schema_files`.
    pub registry: Option<RegistrySettings>,
    /// Schema ids written in the header of Avro outputs.
    pub score_change_id: u32,
    pub transition_id: u32,
}

/// See the module documentation.
pub struct AvroCodec {
    envelope: Schema,
    score_change: Schema,
    transition: Schema,
    writers: SchemaCache,
    settings: AvroSettings,
}

/// Why an Avro input message was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvroError {
    /// Bad input.
    Bad(DecodeError),
    /// Its writer schema is not known yet (the registry is being asked, or
    /// is down): the message is to be decoded again later, not dead-lettered.
    Wait { schema_id: u32, why: String },
}

impl From<DecodeError> for AvroError {
    fn from(e: DecodeError) -> AvroError {
        AvroError::Bad(e)
    }
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn parse(name: &str, text: &str) -> Result<Schema, String> {
    Schema::parse_str(text).map_err(|e| format!("{name}: not a valid Avro schema: {e}"))
}

impl AvroCodec {
    /// Loads the local writer schemas (errors name the file) and starts the
    /// registry's fetch thread, if there is a registry.
    pub fn new(settings: AvroSettings) -> Result<AvroCodec, String> {
        // The first call sets the process-wide limit; nothing else in
        // leadscore sets it.
        let limit = apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        if limit > MAX_AVRO_ALLOCATION {
            return Err(format!(
                "apache-avro's allocation limit is already {limit} bytes, above {MAX_AVRO_ALLOCATION}"
            ));
        }
        let mut writers = HashMap::new();
        for (id, path) in &settings.schema_files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("schema id {id}: cannot read {}: {e}", path.display()))?;
            writers.insert(*id, Arc::new(Writer::new(parse(&path.display().to_string(), &text)?)));
        }
        let registry = settings.registry.clone().map(RegistryClient::new).transpose()?;
        Ok(AvroCodec {
            envelope: parse("lead-event.avsc", LEAD_EVENT_AVSC)?,
            score_change: parse("score-change.avsc", SCORE_CHANGE_AVSC)?,
            transition: parse("segment-transition.avsc", SEGMENT_TRANSITION_AVSC)?,
            writers: SchemaCache::new(writers, registry),
            settings,
        })
    }

    /// Decodes one Confluent-framed Avro event; see the module documentation.
    pub fn decode(
        &self,
        bytes: &[u8],
        key: Option<&[u8]>,
        topic_kind: Option<Kind>,
        limits: &Limits,
    ) -> Result<Event, AvroError> {
        let (id, writer, datum) = self.framed(bytes, limits)?;
        let invalid_datum =
            |e: String| AvroError::Bad(DecodeError::new(ErrorClass::InvalidAvro, format!("schema id {id}: {e}")));
        if writer.is_envelope {
            let envelope = read_envelope(datum).map_err(invalid_datum)?;
            return Ok(validate(envelope.fields(), key, topic_kind, limits)?);
        }
        let value = self.resolve(&writer.schema, datum).map_err(invalid_datum)?;
        let envelope = resolved_envelope(&value).map_err(invalid_datum)?;
        Ok(validate(envelope.fields(), key, topic_kind, limits)?)
    }

    /// The size check, the Confluent framing and the writer schema of a
    /// message: its schema id, the schema, and the datum.
    fn framed<'b>(&self, bytes: &'b [u8], limits: &Limits) -> Result<(u32, Arc<Writer>, &'b [u8]), AvroError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(DecodeError::new(
                ErrorClass::Oversize,
                format!("message of {} bytes exceeds the limit of {} bytes", bytes.len(), limits.max_message_bytes),
            )
            .into());
        }
        let invalid = |m: String| AvroError::Bad(DecodeError::new(ErrorClass::InvalidAvro, m));
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(invalid("not in the Confluent wire format (magic byte 0, 4-byte schema id, datum)".into()));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        match self.writers.lookup(id) {
            Lookup::Known(writer) => Ok((id, writer, &bytes[5..])),
            Lookup::Unknown(why) => Err(invalid(why)),
            Lookup::Wait(why) => Err(AvroError::Wait { schema_id: id, why }),
        }
    }

    /// A datum of another writer schema, resolved to the envelope.
    fn resolve(&self, writer: &Schema, mut datum: &[u8]) -> Result<Value, String> {
        let value =
            apache_avro::from_avro_datum(writer, &mut datum, Some(&self.envelope)).map_err(|e| e.to_string())?;
        if !datum.is_empty() {
            return Err(format!("{} bytes after the datum", datum.len()));
        }
        Ok(value)
    }

    /// The decoder before direct reading: apache-avro's value tree, written
    /// out as JSON and decoded by the JSON decoder. Kept as the independent
    /// reference the direct reader is checked against (tests, fuzzing).
    #[doc(hidden)]
    pub fn decode_through_json(
        &self,
        bytes: &[u8],
        key: Option<&[u8]>,
        topic_kind: Option<Kind>,
        limits: &Limits,
    ) -> Result<Event, AvroError> {
        let invalid = |m: String| DecodeError::new(ErrorClass::InvalidAvro, m);
        let (id, writer, datum) = self.framed(bytes, limits)?;
        let value = self.resolve(&writer.schema, datum).map_err(|e| invalid(format!("schema id {id}: {e}")))?;
        let text = serde_json::to_vec(&to_json(value)).map_err(|e| invalid(e.to_string()))?;
        Ok(decode_json(&text, key, topic_kind, limits)?)
    }

    /// Appends an output record as a Confluent-framed Avro datum, written
    /// directly ([`crate::avro_out`]) with the schema id configured for its kind.
    pub fn encode_record(&self, buf: &mut Vec<u8>, ctx: &RecordContext, record: &Record, reasons: &[Reason]) {
        let id = match record {
            Record::ScoreChange(_) => self.settings.score_change_id,
            Record::Transition(_) => self.settings.transition_id,
        };
        encode_avro(buf, ctx, record, reasons, id);
    }

    /// Encodes an output record (its JSON) as a Confluent-framed Avro datum
    /// through apache-avro: the independent reference [`Self::encode_record`]
    /// is checked against, and a tool for records from elsewhere.
    pub fn encode_output(&self, json: &[u8], transition: bool) -> Result<Vec<u8>, String> {
        let (schema, id) = if transition {
            (&self.transition, self.settings.transition_id)
        } else {
            (&self.score_change, self.settings.score_change_id)
        };
        let json: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let value =
            Value::from(json).resolve(schema).map_err(|e| format!("output record does not fit its schema: {e}"))?;
        let datum = apache_avro::to_avro_datum(schema, value).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(5 + datum.len());
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes an output record back to JSON (for tests and tools).
    pub fn decode_output(&self, bytes: &[u8], transition: bool) -> Result<serde_json::Value, String> {
        let schema = if transition { &self.transition } else { &self.score_change };
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err("not in the Confluent wire format".into());
        }
        let value = apache_avro::from_avro_datum(schema, &mut &bytes[5..], None).map_err(|e| e.to_string())?;
        Ok(to_json(value))
    }

    /// Encodes a JSON input event with the envelope schema and `id` (for
    /// generators and tests).
    pub fn encode_event(&self, json: &serde_json::Value, id: u32) -> Result<Vec<u8>, String> {
        let value = Value::from(json.clone()).resolve(&self.envelope).map_err(|e| e.to_string())?;
        let datum = apache_avro::to_avro_datum(&self.envelope, value).map_err(|e| e.to_string())?;
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }
}

/// An Avro value as the JSON value it stands for.
fn to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => J::from(i),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i) => J::from(i),
        Value::Float(f) => J::from(f64::from(f)),
        Value::Double(f) => J::from(f),
        Value::String(s) | Value::Enum(_, s) => J::String(s),
        Value::Bytes(b) | Value::Fixed(_, b) => J::String(String::from_utf8_lossy(&b).into_owned()),
        Value::Union(_, inner) => to_json(*inner),
        Value::Array(items) => J::Array(items.into_iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Value::Record(fields) => J::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        other => J::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests;
