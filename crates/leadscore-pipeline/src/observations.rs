//! What a step saw, aggregated for metrics: events by input topic, kind and
//! outcome, dead letters by error class, transitions by segment, direction and
//! cause, and the instants latency and lag histograms are computed from.
//!
//! Counts are aggregated per step (a few map entries), so that the adapter
//! updates each counter once per step rather than once per event; the instants
//! are kept per message, for the histograms.

use leadscore_core::{Cause, Direction, Kind, LeadId, Millis};
use std::collections::HashMap;

/// What happened to one input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    Applied,
    /// A repeated `event_id`, recognised and dropped.
    Duplicate,
    Erased,
    /// An `erase` for a lead leadscore does not know.
    UnknownLead,
    DeadLettered,
    /// Behind the checkpoint: applied before a restart or handover.
    Skipped,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Erased => "erased",
            EventOutcome::UnknownLead => "unknown_lead",
            EventOutcome::DeadLettered => "dead_lettered",
            EventOutcome::Skipped => "skipped",
        }
    }
}

/// A score change or transition of a lead, as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub lead: LeadId,
    pub json: String,
    /// For a transition: the segment's index in the model and whether the
    /// lead entered it (`None`: a score change).
    pub transition: Option<(u16, bool)>,
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// (input topic index in [`crate::Topics::inputs`] order, kind if decoded,
    /// outcome) -> messages.
    pub events: HashMap<(u16, Option<Kind>, EventOutcome), u64>,
    /// Error class -> dead letters.
    pub dead_letters: HashMap<&'static str, u64>,
    /// (segment index, direction, cause) -> transitions.
    pub transitions: HashMap<(u16, Direction, Cause), u64>,
    /// Event time of each applied event.
    pub event_times: Vec<Millis>,
    /// Broker timestamp of each message processed (not skipped).
    pub broker_times: Vec<Millis>,
    /// For each timer fired on the wall clock: how late, in milliseconds.
    pub timer_delays: Vec<Millis>,
    /// Each score change and transition of the step as JSON text, also when
    /// the published values are Avro: the admin server's recent history and
    /// the demo's view keep these.
    pub published: Vec<Published>,
}
