//! The pure transitions of a lead: [`apply`] an event, [`advance`] time, and
//! [`remodel`] after a model change.
//!
//! Both take the instant as data and append output records to an [`Outputs`]
//! buffer. After either, [`LeadState::next_due`] is the next instant at which
//! time alone could change a segment, computed in closed form, so a runtime only
//! needs a timer index keyed by that instant.
//!
//! Segment membership and the closed-form deadlines are in `segments`.
//!
//! Order of outputs for one event: timer transitions that were due strictly
//! before it, then the score change, then exits, then entries (docs/events.md).

use crate::decay::{decayed, round2};
use crate::dedup::id_hash;
use crate::event::{Event, Field, Kind};
use crate::layout::Retired;
use crate::model::{Measure, Model};
use crate::output::{Cause, Direction, Outputs, Reason, Record, ScoreChange, Transition};
use crate::state::LeadState;
use crate::time::{bounded, Millis};

mod segments;

pub use segments::held_by_conditions;
use segments::{next_due, update_segments};

/// What [`apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the lead (it may still have produced no output).
    Applied,
    /// The lead had already applied an event with this id; nothing changed.
    Duplicate,
    /// The lead was erased; the slot is now empty.
    Erased,
    /// An `erase` for a lead that does not exist; nothing to do.
    UnknownLead,
}

/// Applies `event` to the lead in `slot` (creating it if empty). Timers of the
/// lead due strictly before the event's effective time fire first.
///
/// The effective time is the later of the event's timestamp and the lead's
/// clock: decay and windows never run backwards, but outputs keep the event's
/// own timestamp.
pub fn apply(model: &Model, slot: &mut Option<LeadState>, event: &Event, out: &mut Outputs) -> Outcome {
    let ts = bounded(event.timestamp);
    if event.kind == Kind::Erase {
        let Some(state) = slot.as_mut() else {
            return Outcome::UnknownLead;
        };
        if state.cells.has_id(id_hash(event.event_id.as_str())) {
            return Outcome::Duplicate;
        }
        let t = ts.max(state.clock);
        advance_before(model, state, t, out);
        let score = round2(state.score_at_time(model, t));
        state.member = 0;
        for m in std::mem::take(&mut state.segments) {
            state.version += 1;
            out.records.push(Record::Transition(Transition {
                version: state.version,
                segment: m.segment,
                direction: Direction::Exited,
                timestamp: ts,
                cause: Cause::Erase,
                score,
                grade: state.grade,
                retired_segment: None,
            }));
        }
        *slot = None;
        return Outcome::Erased;
    }

    let state = slot.get_or_insert_with(|| LeadState::new(model, ts));
    let hash = id_hash(event.event_id.as_str());
    if state.cells.has_id(hash) {
        return Outcome::Duplicate;
    }
    let t = ts.max(state.clock);
    advance_before(model, state, t, out);
    state.cells.note_id(hash, model.remember_event_ids);
    state.clock = t;

    let previous = state.score_at_time(model, t);
    let previous_grade = state.grade;
    // Before the floor, no window has an entry to expire: their oldest
    // entries (a cache miss each) are left unread.
    let expiring = t >= state.expiry_floor;

    // Rules.
    let reasons_start = out.reasons.len() as u32;
    let (mut total, mut positive) = (0.0, 0.0);
    for (i, rule) in model.rules.iter().enumerate() {
        if !rule.on.matches(event) {
            continue;
        }
        let mut points = rule.points;
        if let Some(slot) = model.rule_slots[i] {
            let slot = usize::from(slot);
            let matches = state.cells.rule_matches(slot).saturating_add(1);
            state.cells.set_rule_matches(slot, matches);
            if let Some(e) = rule.escalate.filter(|e| matches > e.after) {
                points = e.points;
            }
            if let Some(cap) = rule.cap {
                let w = usize::from(model.rule_windows[i].expect("a capped rule has a window"));
                if expiring {
                    state.cells.expire(w, t, cap.window);
                }
                let used = state.cells.window_sum(w);
                points = if used < cap.points { points.min(cap.points - used) } else { 0.0 };
                if points != 0.0 {
                    // Caps are exact to the millisecond (a cap is what a marketer
                    // checks by hand); the model bounds their entries by cap / points.
                    state.cells.add(w, t, points, 1);
                    state.expiry_floor = state.expiry_floor.min(t.saturating_add(cap.window));
                }
            }
        }
        if points != 0.0 {
            out.reasons.push(Reason { rule: i as u16, points });
            total += points;
            if points > 0.0 {
                positive += points;
            }
        }
    }
    let scored = out.reasons.len() as u32 > reasons_start;
    let score = if scored {
        // Model::new refuses min >= max, so the bounds are in order.
        let s = (previous + total).clamp(model.score.min, model.score.max);
        state.score = s;
        state.score_at = t;
        s
    } else {
        previous
    };

    // Profile and opportunities.
    let mut changed_loosely: u64 = 0;
    if event.kind == Kind::ProfileUpdate {
        let mut changed = false;
        for (field, value) in &event.properties.profile {
            let (c, loose) = state.set_profile(*field, value.clone());
            changed |= c;
            if loose {
                changed_loosely |= 1 << (*field as u64);
            }
        }
        if changed {
            state.regrade(model);
        }
    }
    if event.kind == Kind::OpportunityUpdate {
        if let Some(crate::event::Value::Text(id)) = event.properties.get(Field::OpportunityId) {
            state.update_opportunity(id, event.properties.stage);
        }
    }

    // Tallies.
    if expiring {
        state.cells.expire_all(&model.tally_window_widths, t);
    }
    for (i, tally) in model.tallies.iter().enumerate() {
        let window = model.tally_windows[i].map(usize::from);
        let mut ts = state.cells.tally(i);
        if tally.reset_on_change.is_some_and(|f| changed_loosely & (1 << (f as u64)) != 0) {
            ts = Default::default();
            state.cells.set_tally(i, ts);
            if let Some(w) = window {
                state.cells.clear(w);
            }
        }
        if !tally.matches(event) {
            continue;
        }
        if let Some(width) = tally.window {
            state.expiry_floor = state.expiry_floor.min(t.saturating_add(width));
        }
        ts.last = Some(t);
        let value = match tally.measure {
            Measure::Count => 1.0,
            Measure::Points => total,
            Measure::PositivePoints => positive,
            Measure::PeakScore => score,
        };
        match (window, tally.measure) {
            (Some(w), Measure::PeakScore) => state.cells.add_max(w, t, value, model.bucket),
            (Some(w), _) if value != 0.0 => state.cells.add(w, t, value, model.bucket),
            (Some(_), _) => {}
            (None, Measure::PeakScore) => ts.total = Some(ts.total.map_or(value, |p| p.max(value))),
            (None, _) => ts.total = Some(ts.total.unwrap_or(0.0) + value),
        }
        state.cells.set_tally(i, ts);
    }
    if expiring {
        state.expiry_floor = expiry_floor(model, state);
    }

    if scored || state.grade != previous_grade {
        let shown = (round2(score), round2(previous));
        push_score_change(state, out, ts, shown, previous_grade, reasons_start);
    }

    update_segments(model, state, (t, score), Cause::Event, ts, out);
    state.next_due = next_due(model, state, (t, score));
    Outcome::Applied
}

/// Re-evaluates a lead that [`crate::layout::migrate`] moved to `model`, at
/// `at` (or the lead's clock if later): the grade and the score's bounds
/// first (a score change without an event if either changes what outputs
/// show), then exits from the `retired` segments, then every segment, all
/// with cause `model_change`. Timers the old model had due before `at` are
/// not fired under it: their effect shows in these transitions.
pub fn remodel(model: &Model, state: &mut LeadState, at: Millis, retired: Vec<Retired>, out: &mut Outputs) {
    let t = bounded(at).max(state.clock);
    state.clock = t;
    expire_windows(model, state, t);
    let previous = state.score_at_time(model, t);
    let previous_grade = state.grade;
    state.regrade(model);
    let score = previous.clamp(model.score.min, model.score.max);
    if score != previous {
        state.score = score;
        state.score_at = t;
    }
    let (score, previous) = (round2(score), round2(previous));
    if score != previous || state.grade != previous_grade {
        // No reasons: no rule awarded points.
        let none = out.reasons.len() as u32;
        push_score_change(state, out, t, (score, previous), previous_grade, none);
    }
    for r in retired {
        state.version += 1;
        out.records.push(Record::Transition(Transition {
            version: state.version,
            segment: u16::MAX,
            direction: Direction::Exited,
            timestamp: t,
            cause: Cause::ModelChange,
            score,
            grade: state.grade,
            retired_segment: Some(r.segment.into()),
        }));
    }
    let score = state.score_at_time(model, t);
    update_segments(model, state, (t, score), Cause::ModelChange, t, out);
    state.next_due = next_due(model, state, (t, score));
}

/// Fires every timer of the lead due at or before `now`, in order, each at its
/// own instant.
pub fn advance(model: &Model, state: &mut LeadState, now: Millis, out: &mut Outputs) {
    let now = bounded(now);
    while let Some(due) = state.next_due.filter(|&d| d <= now) {
        fire(model, state, due, out);
    }
}

/// Fires the timers due strictly before `limit` (those due at `limit` are
/// subsumed by the event applied at `limit`).
fn advance_before(model: &Model, state: &mut LeadState, limit: Millis, out: &mut Outputs) {
    while let Some(due) = state.next_due.filter(|&d| d < limit) {
        fire(model, state, due, out);
    }
}

fn fire(model: &Model, state: &mut LeadState, due: Millis, out: &mut Outputs) {
    debug_assert!(due >= state.clock, "timers never fire in the past");
    let due = due.max(state.clock);
    state.clock = due;
    expire_windows(model, state, due);
    let score = state.score_at_time(model, due);
    update_segments(model, state, (due, score), Cause::Timer, due, out);
    state.next_due = next_due(model, state, (due, score));
    debug_assert!(state.next_due.is_none_or(|d| d > due), "timers always move forward");
}

fn expire_windows(model: &Model, state: &mut LeadState, now: Millis) {
    if now < state.expiry_floor {
        return;
    }
    state.cells.expire_all(&model.tally_window_widths, now);
    // Capped rules' windows expire only when their rule applies: their
    // oldest entries may be behind `now`, which keeps the floor a lower bound.
    state.expiry_floor = expiry_floor(model, state);
}

/// The instant the oldest entry of some window leaves it (`Millis::MAX`:
/// every window is empty).
fn expiry_floor(model: &Model, state: &LeadState) -> Millis {
    state.cells.next_expiry(&model.window_widths)
}

/// Publishes the next version as a score change from `previous` to `score`
/// (both as outputs show them), its reasons those `out` got since
/// `reasons_start`.
fn push_score_change(
    state: &mut LeadState,
    out: &mut Outputs,
    timestamp: Millis,
    (score, previous): (f64, f64),
    previous_grade: crate::Grade,
    reasons_start: u32,
) {
    state.version += 1;
    out.records.push(Record::ScoreChange(ScoreChange {
        version: state.version,
        timestamp,
        score,
        previous_score: previous,
        delta: round2(score - previous),
        grade: state.grade,
        previous_grade,
        reasons: reasons_start..out.reasons.len() as u32,
    }));
}

/// The score a lead has at `now`, as outputs show it (two decimals).
pub fn score_now(model: &Model, state: &LeadState, now: Millis) -> f64 {
    round2(decayed(state.score, state.score_at, now.max(state.clock), model.score.half_life))
}
