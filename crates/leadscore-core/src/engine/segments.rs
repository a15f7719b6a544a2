//! Segment evaluation for the engine: which segments a lead is in at an
//! instant (and the transitions that publishes), and the next instant at
//! which time alone could change one, solved in closed form per condition.

use crate::decay::{cents, cents_at, crossing, round2};
use crate::model::{BitSet, Cond, Measure, Model, SegmentTest};
use crate::output::{Cause, Direction, Outputs, Record, Transition};
use crate::state::{LeadState, Membership, NEVER};
use crate::time::{Millis, MAX_MILLIS};

/// What segment conditions read, at one instant.
struct View<'a> {
    model: &'a Model,
    state: &'a LeadState,
    now: Millis,
    score_cents: i64,
}

impl View<'_> {
    fn tally_value(&self, tally: usize) -> Option<f64> {
        let spec = &self.model.tallies[tally];
        match (self.model.tally_windows[tally], spec.measure) {
            (Some(w), Measure::PeakScore) => self.state.cells.window(usize::from(w)).max(),
            (Some(w), _) => Some(self.state.cells.window_sum(usize::from(w))),
            (None, Measure::PeakScore) => self.state.cells.tally(tally).total,
            (None, _) => Some(self.state.cells.tally(tally).total.unwrap_or(0.0)),
        }
    }

    fn holds(&self, cond: &Cond) -> bool {
        match cond {
            Cond::All(c) => c.iter().all(|c| self.holds(c)),
            Cond::Any(c) => c.iter().any(|c| self.holds(c)),
            Cond::Not(c) => !self.holds(c),
            Cond::Score { at_least, below } => {
                at_least.is_none_or(|c| self.score_cents >= c) && below.is_none_or(|c| self.score_cents < c)
            }
            Cond::Grade(mask) => mask & (1 << self.state.grade as u8) != 0,
            Cond::Tally { tally, range } => self.tally_value(*tally).is_some_and(|v| range.contains(v)),
            Cond::Since { tally, at_least, less_than } => self.state.cells.tally(*tally).last.is_some_and(|last| {
                let elapsed = self.now - last;
                at_least.is_none_or(|a| elapsed >= a) && less_than.is_none_or(|b| elapsed < b)
            }),
            Cond::BelowPeak { tally, by } => {
                self.tally_value(*tally).is_some_and(|peak| cents(peak) - self.score_cents >= *by)
            }
            Cond::Profile(i) => self.state.profile_tests & (1 << i) != 0,
            Cond::Criterion(i) => self.state.criteria & (1 << i) != 0,
            Cond::OpportunityIn(stage) => self.state.stages_now & (1 << (*stage as u8)) != 0,
            Cond::OpportunityReached(stage) => self.state.stages_reached & (1 << (*stage as u8)) != 0,
        }
    }

    /// The earliest instant after `now` at which this condition could change with
    /// no new event, ignoring score thresholds (handled once for all segments).
    fn due(&self, cond: &Cond) -> Option<Millis> {
        match cond {
            Cond::All(c) | Cond::Any(c) => c.iter().filter_map(|c| self.due(c)).min(),
            Cond::Not(c) => self.due(c),
            Cond::Tally { tally, range } => {
                let spec = &self.model.tallies[*tally];
                let width = spec.window?;
                let window = self.state.cells.window(usize::from(self.model.tally_windows[*tally]?));
                if spec.measure == Measure::PeakScore {
                    window.max_flip(width, |v| v.is_some_and(|v| range.contains(v)))
                } else {
                    window.sum_flip(width, range)
                }
            }
            Cond::Since { tally, at_least, less_than } => {
                let last = self.state.cells.tally(*tally).last?;
                [*at_least, *less_than]
                    .into_iter()
                    .flatten()
                    .map(|d| last.saturating_add(d))
                    .filter(|&d| d > self.now)
                    .min()
            }
            Cond::BelowPeak { tally, by } => self.below_peak_due(*tally, *by),
            _ => None,
        }
    }
}

impl View<'_> {
    fn held_by_conditions(&self) -> u128 {
        let held = self.model.segments.iter().enumerate().filter(|(_, s)| self.holds(&s.when));
        held.fold(0, |member, (i, _)| member | 1 << i)
    }

    /// [`View::holds`] for one flat test of the model's segments.
    #[inline]
    fn passes(&self, test: &SegmentTest) -> bool {
        let cells = &self.state.cells;
        match *test {
            SegmentTest::Score { at_least, below } => self.score_cents >= at_least && self.score_cents < below,
            SegmentTest::Grade(mask) => mask & (1 << self.state.grade as u8) != 0,
            SegmentTest::WindowSum { window, range } => range.contains(cells.window_sum(usize::from(window))),
            SegmentTest::WindowMax { window, range } => {
                cells.window(usize::from(window)).max().is_some_and(|v| range.contains(v))
            }
            SegmentTest::Total { tally, range } => range.contains(cells.tally(tally).total.unwrap_or(0.0)),
            SegmentTest::Peak { tally, range } => cells.tally(tally).total.is_some_and(|v| range.contains(v)),
            SegmentTest::Since { tally, at_least, less_than } => cells.tally(tally).last.is_some_and(|last| {
                let elapsed = self.now - last;
                elapsed >= at_least && elapsed < less_than
            }),
            SegmentTest::BelowPeak { window, by } => {
                cells.window(usize::from(window)).max().is_some_and(|peak| cents(peak) - self.score_cents >= by)
            }
            SegmentTest::Bits { set, mask } => {
                let bits = match set {
                    BitSet::ProfileTests => self.state.profile_tests,
                    BitSet::Criteria => self.state.criteria,
                    BitSet::StagesNow => u64::from(self.state.stages_now),
                    BitSet::StagesReached => u64::from(self.state.stages_reached),
                };
                bits & mask != 0
            }
            SegmentTest::Tree(i) => self.holds(&self.model.segment_tests.trees[i]),
        }
    }

    /// When "score at least `by` cents below the peak" next changes: the score
    /// decays continuously while the peak steps down as its entries leave the
    /// window, so walk the peak's steps and solve the crossing within each.
    ///
    /// Decay is monotone, so within one step the test flips at most once: it
    /// flips in `(from, leaves]` exactly when it differs at `leaves`, and only
    /// then is the crossing searched for. Each step costs one decay of the
    /// score (at `leaves`, which the next step's test reads too) instead of a
    /// search.
    fn below_peak_due(&self, tally: usize, by: i64) -> Option<Millis> {
        let width = self.model.tallies[tally].window?;
        let window = self.state.cells.window(usize::from(self.model.tally_windows[tally]?));
        let (value, anchor, half_life) = (self.state.score, self.state.score_at, self.model.score.half_life);
        let holds = |peak: Option<f64>, score_cents: i64| peak.is_some_and(|p| cents(p) - score_cents >= by);
        let entries = window.entries;
        let current = holds(entries.first().map(|e| e.value), self.score_cents);
        let mut from = self.now;
        for (i, e) in entries.iter().enumerate() {
            let leaves = e.at.saturating_add(width);
            let score_then = cents_at(value, anchor, leaves, half_life);
            // Invariant: the test holds as `current` at `from` with this entry
            // as the peak (at `now` by definition, later because the last step
            // did not flip it).
            if holds(Some(e.value), score_then) != current {
                // While this entry is the peak, the test flips when the score crosses
                // peak - by (in cents: "score >= peak - by + 1" stops or starts holding).
                let t = crossing(value, anchor, from, half_life, cents(e.value) - by + 1);
                // `crossing` looks no further than the last instant, so an entry
                // leaving after it may flip the test where no search finds it.
                debug_assert!(
                    leaves <= from || leaves > MAX_MILLIS || t.is_some_and(|t| t <= leaves),
                    "a flip by {leaves} is found"
                );
                if let Some(t) = t.filter(|&t| t < leaves) {
                    return Some(t);
                }
            }
            if holds(entries.get(i + 1).map(|n| n.value), score_then) != current {
                return Some(leaves);
            }
            from = leaves;
        }
        None
    }
}

/// The segments (bit `i`: segment `i`) whose conditions hold for `state` at
/// `now` (not before its clock), each condition walked as the model states
/// it: what the engine's flat tests of the segments must agree with.
pub fn held_by_conditions(model: &Model, state: &LeadState, now: Millis) -> u128 {
    let now = now.max(state.clock);
    let score_cents = cents(state.score_at_time(model, now));
    View { model, state, now, score_cents }.held_by_conditions()
}

/// Re-evaluates every segment at `now`, when the lead's score is `score`
/// (unrounded: callers have it at hand, and decaying it again costs an
/// `exp2`), and publishes the transitions stamped `stamp`.
pub(super) fn update_segments(
    model: &Model,
    state: &mut LeadState,
    (now, score): (Millis, f64),
    cause: Cause,
    stamp: Millis,
    out: &mut Outputs,
) {
    debug_assert_eq!(score.to_bits(), state.score_at_time(model, now).to_bits());
    let view = View { model, state, now, score_cents: cents(score) };
    let mut member: u128 = 0;
    let flat = &model.segment_tests;
    let mut start = 0;
    for (i, &end) in flat.ends.iter().enumerate() {
        if flat.tests[start..end].iter().all(|t| view.passes(t)) {
            member |= 1 << i;
        }
        start = end;
    }
    debug_assert_eq!(member, view.held_by_conditions(), "the flat tests agree with the conditions");
    let was = state.member;
    if member == was {
        return;
    }
    let (score, grade) = (round2(score), state.grade);
    let mut emit = |state: &mut LeadState, segment: usize, direction| {
        state.version += 1;
        out.records.push(Record::Transition(Transition {
            version: state.version,
            segment: segment as u16,
            direction,
            timestamp: stamp,
            cause,
            score,
            grade,
            retired_segment: None,
        }));
    };
    // Only the model's segments: a stored state's bits beyond them (which
    // only a corrupt state has) are dropped without an exit, as before.
    // (Model::new allows at most 128 segments.)
    let known = u128::MAX.checked_shr(128 - model.segments.len() as u32).unwrap_or(0);
    let (exited, entered) = (was & !member & known, member & !was);
    for i in bits(exited) {
        emit(state, i, Direction::Exited);
    }
    for i in bits(entered) {
        emit(state, i, Direction::Entered);
    }
    state.segments.retain(|m| member & (1 << m.segment) != 0);
    for i in bits(entered) {
        state.segments.push(Membership { segment: i as u16, since: now });
    }
    state.segments.sort_unstable_by_key(|m| m.segment);
    state.member = member;
}

/// The next instant after `now` at which a segment could change by time alone:
/// the earliest of the score's next threshold crossing and of every timed
/// condition's next change. Each is the first instant after `now` at which
/// its truth differs from its truth at `now`, so while its inputs stay the
/// same, the instant solved at an earlier `now` is still the answer until it
/// passes: those are kept in [`LeadState::deadlines`] and solved again only
/// when the score, or the window they read, changed.
///
/// `score` is the lead's score at `now`, as for [`update_segments`].
pub(super) fn next_due(model: &Model, state: &mut LeadState, (now, score): (Millis, f64)) -> Option<Millis> {
    debug_assert_eq!(score.to_bits(), state.score_at_time(model, now).to_bits());
    let changed = state.cells.take_changed();
    let half_life = model.score.half_life;
    let (value, anchor) = (state.score, state.score_at);
    let score_cents = cents(score);
    let mut kept = state.deadlines;

    if kept.score != Some((value.to_bits(), anchor)) {
        kept.score = None;
        kept.kept &= !model.timed_score_slots;
    }
    // Decay moves the score towards zero, so the only static thresholds it can
    // cross next are the nearest at or below the score (falling) and the nearest
    // above it (rising, for negative scores).
    if kept.score.is_none() || kept.threshold.is_some_and(|d| d <= now) {
        let th = &model.score_thresholds;
        let split = th.partition_point(|&c| c <= score_cents);
        kept.threshold = [split.checked_sub(1).map(|i| th[i]), th.get(split).copied()]
            .into_iter()
            .flatten()
            .filter_map(|c| crossing(value, anchor, now, half_life, c))
            .min();
        kept.score = Some((value.to_bits(), anchor));
    }

    let view = View { model, state, now, score_cents };
    let mut due = kept.threshold;
    for t in &model.timed {
        let next = match t.slot {
            None => view.due(&t.cond),
            Some(slot) => {
                let bit = 1u8 << slot;
                let at = kept.conds[usize::from(slot)];
                if kept.kept & bit != 0 && changed & t.window == 0 && at > now {
                    (at != NEVER).then_some(at)
                } else {
                    let next = view.due(&t.cond);
                    kept.conds[usize::from(slot)] = next.unwrap_or(NEVER);
                    kept.kept |= bit;
                    next
                }
            }
        };
        due = min_opt(due, next);
    }
    state.deadlines = kept;
    debug_assert!(due.is_none_or(|d| d > now));
    due
}

/// The indexes of the set bits, lowest first.
fn bits(mut set: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = set.trailing_zeros();
        set &= set.checked_sub(1)?;
        Some(i as usize)
    })
}

fn min_opt(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod below_peak_tests;
