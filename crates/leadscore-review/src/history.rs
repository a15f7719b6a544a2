//! One model over one history: the offline scorer's run, kept as data. For
//! each lead, the timeline of its published score (to read its score and
//! grade at any instant), the points each rule awarded it, and when it
//! entered each segment; the points each rule awarded in all; and every
//! lead's final state.

use crate::{Input, ReviewError};
use leadscore_core::decay::decayed;
use leadscore_core::model::Grade;
use leadscore_core::output::{Cause, Direction};
use leadscore_core::{LeadId, LeadState, Millis, Model, Record};
use leadscore_pipeline::offline::{score_steps, Options, Summary};
use leadscore_store::memory::MemoryStore;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// A lead's published score and grade from `at` on (the score then decays).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub at: Millis,
    pub score: f64,
    pub grade: Grade,
}

/// Points a rule awarded a lead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Award {
    pub at: Millis,
    pub rule: u16,
    pub points: f64,
}

/// What one lead went through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    /// In time order (a late event's change is placed at the lead's clock).
    pub changes: Vec<Change>,
    pub awards: Vec<Award>,
    /// `(instant, segment index)` of each entry.
    pub entries: Vec<(Millis, u16)>,
}

/// What a model did with a history.
#[derive(Debug)]
pub struct Scored<'m> {
    pub model: &'m Model,
    /// Per lead (only when timelines were asked for).
    pub tracks: HashMap<LeadId, Track>,
    /// Every lead in state at the end.
    pub finals: BTreeMap<LeadId, LeadState>,
    /// Per rule (the model's order): points awarded in all, and how often.
    pub rule_points: Vec<(f64, u64)>,
    pub summary: Summary,
    /// The end of the history: `until`, or the latest instant a lead saw.
    pub as_of: Millis,
}

/// Scores `input` (in event-time order: see [`crate::input::prepare`]) under
/// `model` in event time, then fires every timer due by `until`.
/// `timelines`: keep each lead's [`Track`] (the review needs them, the replay
/// does not). Progress and rejected lines go to `err`.
pub fn score<'m>(
    model: &'m Model,
    input: &Input,
    until: Option<Millis>,
    timelines: bool,
    err: &mut impl Write,
) -> Result<Scored<'m>, ReviewError> {
    let store = MemoryStore::new();
    let mut tracks: HashMap<LeadId, Track> = HashMap::new();
    let mut rule_points = vec![(0.0, 0u64); model.rules.len()];
    let fresh = LeadState::new(model, 0).grade;
    let options = Options { until, progress: true, ..Options::default() };
    let summary = score_steps(
        &store,
        model,
        input.open()?,
        &options,
        |step| {
            for p in &step.observations.published {
                if let Record::ScoreChange(_) = &p.record {
                    for r in &p.reasons {
                        let total = &mut rule_points[usize::from(r.rule)];
                        total.0 += r.points;
                        total.1 += 1;
                    }
                }
                if !timelines {
                    continue;
                }
                let track = tracks.entry(p.lead.clone()).or_default();
                let clock = track.changes.last().map_or(Millis::MIN, |c| c.at);
                match &p.record {
                    Record::ScoreChange(c) => {
                        let at = c.timestamp.max(clock);
                        track.changes.push(Change { at, score: c.score, grade: c.grade });
                        track.awards.extend(p.reasons.iter().map(|r| Award { at, rule: r.rule, points: r.points }));
                    }
                    Record::Transition(t) if t.cause == Cause::Erase => {
                        // A lead that comes back starts again from nothing.
                        track.changes.push(Change { at: t.timestamp.max(clock), score: 0.0, grade: fresh });
                    }
                    Record::Transition(t) if t.direction == Direction::Entered && t.retired_segment.is_none() => {
                        track.entries.push((t.timestamp, t.segment));
                    }
                    Record::Transition(_) => {}
                }
            }
            Ok(())
        },
        err,
    )?;
    let mut finals = BTreeMap::new();
    for (lead, bytes) in store.leads(0) {
        let state = leadscore_store::decode_state(&bytes, model)
            .map_err(|e| ReviewError::Invalid(format!("state of {lead}: {e}")))?;
        finals.insert(lead, state);
    }
    let as_of = until.unwrap_or_else(|| finals.values().map(|s| s.clock).max().unwrap_or(0));
    Ok(Scored { model, tracks, finals, rule_points, summary, as_of })
}

impl Scored<'_> {
    /// The lead's published score and grade just before `t` (changes at `t`
    /// itself excluded), decayed to `t`; `None` if it had no score yet.
    pub fn at(&self, lead: &str, t: Millis) -> Option<(f64, Grade)> {
        let track = self.tracks.get(lead)?;
        let i = track.changes.partition_point(|c| c.at < t);
        let c = track.changes.get(i.checked_sub(1)?)?;
        Some((decayed(c.score, c.at, t, self.model.score.half_life), c.grade))
    }

    /// The lead's final score at the end of the history, and its grade.
    pub fn final_score(&self, state: &LeadState) -> f64 {
        leadscore_core::engine::score_now(self.model, state, self.as_of)
    }
}
