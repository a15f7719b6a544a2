//! The pure lead-scoring core of leadscore.
//!
//! No IO, no clock, no Kafka, no RocksDB: [`engine::apply`] takes a lead's state
//! and an event, [`engine::advance`] takes a lead's state and an instant, and both
//! append the output records of docs/events.md. Every time-driven change is
//! computed as data ([`state::LeadState::next_due`]), which is what makes exact,
//! cheap timers possible in the runtime around it.
//!
//! # Layout
//!
//! - [`bounds`]: what one lead's state may hold.
//! - [`time`]: epoch milliseconds, RFC 3339, durations.
//! - [`ids`]: `LeadId` and `EventId`.
//! - [`event`]: input kinds, fields and typed properties.
//! - [`text`]: case-insensitive and whole-word matching.
//! - [`model`]: rules, grade criteria, tallies and segments as data.
//! - [`decay`]: lazy exponential decay and closed-form threshold crossings.
//! - [`cells`]: a lead's counters (rules, tallies, windows, recent ids) in one buffer.
//! - [`window`]: rolling windows for caps and tallies.
//! - [`dedup`]: the hash of an event id.
//! - [`prefetch`]: cache hints for the lead of an event to come.
//! - [`state`]: one lead's state.
//! - [`layout`]: what a state's slots mean, by name, and moving a state to another model.
//! - [`output`]: score changes and segment transitions.
//! - [`engine`]: `apply` and `advance`.

pub mod bounds;
pub mod cells;
pub mod decay;
pub mod dedup;
pub mod engine;
pub mod event;
pub mod ids;
pub mod layout;
pub mod model;
pub mod output;
pub mod prefetch;
pub mod state;
pub mod text;
pub mod time;
pub mod window;

pub use engine::{advance, apply, Outcome};
pub use event::{Event, Field, Kind, Properties};
pub use ids::{EventId, LeadId};
pub use model::{Grade, Model, ModelSpec};
pub use output::{Cause, Direction, Outputs, Record};
pub use state::LeadState;
pub use time::Millis;
