//! Output records (docs/events.md) as the engine produces them: plain values that
//! the codec turns into JSON or Avro. Names (rules, segments, the model version,
//! the event id) are looked up at encoding time, so producing a record allocates
//! nothing in the steady state.

use crate::model::Grade;
use crate::time::Millis;

/// Why a segment transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    Event,
    Timer,
    ModelChange,
    Erase,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Event => "event",
            Cause::Timer => "timer",
            Cause::ModelChange => "model_change",
            Cause::Erase => "erase",
        }
    }

    /// Whether the record carries the id of the event that caused it.
    pub fn has_event(self) -> bool {
        matches!(self, Cause::Event | Cause::Erase)
    }
}

/// Entered or exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Entered,
    Exited,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Entered => "entered",
            Direction::Exited => "exited",
        }
    }
}

/// A rule that awarded points, and how many (before clamping).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    pub rule: u16,
    pub points: f64,
}

/// `lead-score-changes`: an event awarded points or changed the grade.
/// Scores are already rounded to two decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChange {
    pub version: u64,
    /// The event's own timestamp.
    pub timestamp: Millis,
    pub score: f64,
    pub previous_score: f64,
    pub delta: f64,
    pub grade: Grade,
    pub previous_grade: Grade,
    /// Indices into [`Outputs::reasons`].
    pub reasons: std::ops::Range<u32>,
}

/// `lead-segment-transitions`: the lead entered or left a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub version: u64,
    pub segment: u16,
    pub direction: Direction,
    /// The event's timestamp, or for a timer the instant the condition changed.
    pub timestamp: Millis,
    pub cause: Cause,
    pub score: f64,
    pub grade: Grade,
    /// The name of a segment the model no longer has (an exit with cause
    /// `model_change`); `segment` is then meaningless.
    pub retired_segment: Option<Box<str>>,
}

/// One output record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    ScoreChange(ScoreChange),
    Transition(Transition),
}

impl Record {
    pub fn version(&self) -> u64 {
        match self {
            Record::ScoreChange(s) => s.version,
            Record::Transition(t) => t.version,
        }
    }
}

/// A reusable buffer of records, cleared by the caller between uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub records: Vec<Record>,
    pub reasons: Vec<Reason>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.records.clear();
        self.reasons.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn reasons_of(&self, change: &ScoreChange) -> &[Reason] {
        &self.reasons[change.reasons.start as usize..change.reasons.end as usize]
    }
}
