//! Wire formats of leadscore.
//!
//! Input: one event per message, JSON per docs/events.md, decoded into a core
//! [`leadscore_core::Event`]; anything wrong becomes a [`DecodeError`] whose
//! [`ErrorClass`] is the dead-letter `leadscore.error.class` header and whose
//! message names the field. Output: score changes and segment transitions as the
//! JSON of docs/events.md. Both also in Avro (Confluent wire format), with the
//! same fields, values and error classes.
//!
//! # Layout
//!
//! - [`error`]: error classes and the decode error.
//! - [`avro`]: Avro input events and output records, Confluent wire format.
//! - `avro_in`: Avro input datums read directly (private).
//! - [`avro_out`]: Avro output records written directly.
//! - `contract`: the input contract's rules, shared by JSON and Avro (private).
//! - [`registry`]: the schema registry's HTTP client.
//! - [`schemas`]: writer schemas by id, cached, fetched off the processing thread.
//! - [`json_in`]: JSON input events.
//! - [`json_event`]: JSON input events written out, for generators.
//! - [`json_out`]: JSON output records.

pub mod avro;
mod avro_in;
pub mod avro_out;
mod contract;
pub mod error;
mod json_bytes;
pub mod json_event;
pub mod json_in;
pub mod json_out;
pub mod registry;
pub mod schemas;

pub use avro::{AvroCodec, AvroError, AvroSettings, SCORE_CHANGE_AVSC, SEGMENT_TRANSITION_AVSC};
pub use error::{excerpt, DecodeError, ErrorClass};
pub use json_event::encode_event_json;
pub use json_in::{decode_json, Limits, DEFAULT_MAX_MESSAGE_BYTES};
pub use json_out::{encode_json, RecordContext};
pub use registry::{RegistryAuth, RegistryClient, RegistrySettings};
