//! What a processing step saw, aggregated for metrics: events by input topic,
//! kind and outcome, dead letters by error class, transitions by segment,
//! direction and cause, the instants latency and lag histograms are computed
//! from, and the records it published.
//!
//! Counts are aggregated per step (a few map entries), so that each counter is
//! updated once per step rather than once per event; the instants are kept per
//! message, for the histograms.

use crate::history::PublishedRecord;
use leadscore_core::{Cause, Direction, Kind, Millis};
use std::collections::HashMap;

/// A step's counts by key. The keys are the runtime's own small indexes and
/// enums, never input, so a fixed-seed fast hash is safe, and every message
/// and transition updates one: SipHash, a field at a time, was about 2% of
/// the offline scorer's instructions.
pub type Counts<K> = HashMap<K, u64, foldhash::fast::FixedState>;

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

/// Why a message was committed without being applied or dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Behind the partition's checkpoint: applied before a restart or handover.
    AlreadyApplied,
    /// Its `type` is not a kind the model knows, and such events are skipped
    /// (`topics.unknown_kinds = "skip"`).
    UnknownKind,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::AlreadyApplied => "already_applied",
            SkipReason::UnknownKind => "unknown_kind",
        }
    }
}

/// Counts of one step, for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepStats {
    pub applied: u64,
    pub duplicates: u64,
    pub erased: u64,
    pub dead_lettered: u64,
    /// Messages committed without being applied or dead-lettered (see
    /// [`SkipReason`]).
    pub skipped: u64,
    pub score_changes: u64,
    pub transitions: u64,
    pub timer_transitions: u64,
    pub timers_fired: u64,
}

impl StepStats {
    pub fn add(&mut self, o: &StepStats) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.erased += o.erased;
        self.dead_lettered += o.dead_lettered;
        self.skipped += o.skipped;
        self.score_changes += o.score_changes;
        self.transitions += o.transitions;
        self.timer_transitions += o.timer_transitions;
        self.timers_fired += o.timers_fired;
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// (input topic index in the runtime's sorted topic order, kind if
    /// decoded, outcome) -> messages.
    pub events: Counts<(u16, Option<Kind>, EventOutcome)>,
    /// Error class -> dead letters.
    pub dead_letters: Counts<&'static str>,
    /// (input topic index, reason) -> messages skipped.
    pub skipped: Counts<(u16, SkipReason)>,
    /// (segment index, direction, cause) -> transitions.
    pub transitions: Counts<(u16, Direction, Cause)>,
    /// Event time of each applied event.
    pub event_times: Vec<Millis>,
    /// Broker timestamp of each message processed (not skipped).
    pub broker_times: Vec<Millis>,
    /// For each timer fired on the wall clock: how late, in milliseconds.
    pub timer_delays: Vec<Millis>,
    /// Each score change and transition of the step, typed: the admin
    /// server's recent history and the demo's view keep some of them.
    pub published: Vec<PublishedRecord>,
    /// Leads moved to the current model and re-evaluated (once each per
    /// model change).
    pub migrated: u64,
}

impl Observations {
    /// Adds another step's counts (events, dead letters, skips,
    /// transitions, migrations) to these, leaving the instants and records.
    pub fn add_counts(&mut self, o: &Observations) {
        self.migrated += o.migrated;
        add(&mut self.events, &o.events);
        add(&mut self.dead_letters, &o.dead_letters);
        add(&mut self.skipped, &o.skipped);
        add(&mut self.transitions, &o.transitions);
    }

    /// Adds another step's observations to these.
    pub fn merge(&mut self, mut o: Observations) {
        self.add_counts(&o);
        self.event_times.append(&mut o.event_times);
        self.broker_times.append(&mut o.broker_times);
        self.timer_delays.append(&mut o.timer_delays);
        self.published.append(&mut o.published);
    }
}

fn add<K: Copy + Eq + std::hash::Hash>(to: &mut Counts<K>, from: &Counts<K>) {
    for (k, n) in from {
        *to.entry(*k).or_default() += n;
    }
}
