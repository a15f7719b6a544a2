//! `View::below_peak_due` checks one decay of the score per step of the peak
//! and searches only the step in which the test flips. These tests hold it
//! to the walk it replaced, which searched every step for a crossing: both
//! must name the same instant, to the millisecond.

use super::View;
use crate::decay::{cents, cents_at, crossing};
use crate::model::{Cond, GradeSpec, Measure, Model, ModelSpec, ScoreSpec, Segment, Tally};
use crate::state::LeadState;
use crate::time::{Millis, DAY};
use crate::Grade;
use proptest::prelude::*;

const WIDTH: Millis = 60 * DAY;

fn model(half_life: Millis, by: i64) -> Model {
    Model::new(ModelSpec {
        version: "t".into(),
        description: String::new(),
        score: ScoreSpec { min: -100.0, max: 100.0, half_life },
        rules: Vec::new(),
        grade: GradeSpec { start: 0.0, letters: Vec::new(), lowest: Grade::F, criteria: Vec::new() },
        tallies: vec![Tally {
            name: "peak".into(),
            description: String::new(),
            events: Vec::new(),
            measure: Measure::PeakScore,
            window: Some(WIDTH),
            reset_on_change: None,
        }],
        segments: vec![Segment {
            name: "cooling".into(),
            description: String::new(),
            when: Cond::BelowPeak { tally: 0, by },
        }],
        profile_tests: Vec::new(),
        remember_event_ids: 1,
        bucket: 1,
    })
    .expect("model")
}

/// The walk as it was: a crossing searched for in every step of the peak.
fn searched(model: &Model, state: &LeadState, now: Millis, by: i64) -> Option<Millis> {
    let window = state.cells.window(usize::from(model.tally_windows[0].expect("windowed")));
    let (value, anchor, half_life) = (state.score, state.score_at, model.score.half_life);
    let holds =
        |peak: Option<f64>, t: Millis| peak.is_some_and(|p| cents(p) - cents_at(value, anchor, t, half_life) >= by);
    let entries = window.entries;
    let current = holds(entries.first().map(|e| e.value), now);
    let mut from = now;
    for (i, e) in entries.iter().enumerate() {
        let leaves = e.at.saturating_add(WIDTH);
        if let Some(t) = crossing(value, anchor, from, half_life, cents(e.value) - by + 1) {
            if t < leaves {
                return Some(t);
            }
        }
        if holds(entries.get(i + 1).map(|n| n.value), leaves) != current {
            return Some(leaves);
        }
        from = leaves;
    }
    None
}

fn solved(
    peaks: &[(Millis, f64)],
    score: f64,
    now_after: Millis,
    half_life: Millis,
    by: i64,
) -> (Option<Millis>, Option<Millis>) {
    let model = model(half_life, by);
    let mut state = LeadState::new(&model, 0);
    let w = usize::from(model.tally_windows[0].expect("windowed"));
    let mut at = 0;
    for &(gap, peak) in peaks {
        at += gap;
        state.cells.add_max(w, at, peak, 1);
    }
    state.score = score;
    state.score_at = at;
    let now = at + now_after;
    state.clock = now;
    state.cells.expire_all(&model.tally_window_widths, now);
    let score_cents = cents(state.score_at_time(&model, now));
    let view = View { model: &model, state: &state, now, score_cents };
    (view.below_peak_due(0, by), searched(&model, &state, now, by))
}

#[test]
fn a_decaying_score_falls_below_a_stepping_peak() {
    // Peaks 90 then 70, the score 60 and decaying: 15 below the peak at once,
    // then the peak steps down to 70 and the score is still 15 below it.
    let (fast, slow) = solved(&[(0, 90.0), (DAY, 70.0)], 60.0, 0, 30 * DAY, 1500);
    assert!(fast.is_some());
    assert_eq!(fast, slow);
}

proptest! {
    #[test]
    fn one_decay_per_step_names_the_instant_the_search_names(
        peaks in proptest::collection::vec((0i64..20 * DAY, -20.0f64..100.0), 1..8),
        score in -50.0f64..100.0,
        now_after in 0i64..30 * DAY,
        half_life in prop_oneof![Just(0i64), 1i64..90 * DAY],
        by in 0i64..4000,
    ) {
        let (fast, slow) = solved(&peaks, score, now_after, half_life, by);
        prop_assert_eq!(fast, slow);
    }
}
