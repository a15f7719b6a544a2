//! The engine evaluates segments from flat lists of tests prepared once per
//! model; these tests check that after every event and every timer, a lead is
//! in exactly the segments whose conditions, walked as the model states them
//! (`engine::held_by_conditions`), hold. Beyond the seed model's simple
//! segments, a model with every kind of condition nested in `all`, `any` and
//! `not`, and tallies with and without windows.

use leadscore_config::parse_model;
use leadscore_core::engine::{advance, apply, held_by_conditions};
use leadscore_core::{LeadState, Model, Outputs};
use leadscore_synth::{Generator, Settings};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Segments of every kind of condition, nested, on top of the seed model.
const EXTRA: &str = r#"
[[tallies]]
name = "peak-ever"
description = "The highest score ever."
measure = "peak_score"

[[tallies]]
name = "form-fills"
description = "Form fills, for ever."
events = [{ on = "form_submit" }]

[[segments]]
name = "x-any"
description = "Any of three, one negated."
when = [{ any = [{ score = { gte = 20 } }, { grade = ["A"] }, { not = { tally = "form-fills", lt = 2 } }] }]

[[segments]]
name = "x-nested"
description = "All nested in all, any inside."
when = [
  { all = [
    { since = "activity", at_least = "1d", less_than = "20d" },
    { all = [{ tally = "peak-ever", gte = 30 }, { not = { opportunity_in = "open" } }] },
  ] },
  { any = [{ criterion = "title-exec" }, { tally = "points-30d", gt = 5, lte = 40 }] },
]

[[segments]]
name = "x-peak"
description = "Windowed peak, below it, and a tally for ever."
when = [
  { tally = "peak-score-60d", gte = 25 },
  { not = { below_peak = "peak-score-60d", by = 5 } },
  { tally = "points-earned", lt = 60 },
]

[[segments]]
name = "x-profile"
description = "A profile test or a stage ever reached, and an interest."
when = [
  { any = [
    { profile = { field = "job_title", words = ["analyst", "engineer"] } },
    { opportunity_reached = "closed_won" },
  ] },
  { tally = "blog-views-30d", gte = 1, lt = 5 },
  { score = { lt = 90 } },
]
"#;

fn models() -> Vec<Model> {
    let seed = include_str!("../../../config/seed-model.toml");
    let extended = parse_model(&format!("{seed}\n{EXTRA}")).expect("the extended model is valid");
    assert!(extended.segments.len() > parse_model(seed).expect("seed").segments.len());
    vec![parse_model(seed).expect("seed"), extended]
}

/// Scores `events` of the generator and checks every lead it touched after
/// each event, and every lead after each sweep of timers; returns how many
/// memberships it saw, so that a vacuous run shows.
fn check(model: &Model, settings: Settings, events: usize) -> Result<usize, TestCaseError> {
    let mut g = Generator::new(settings);
    let mut leads: BTreeMap<String, Option<LeadState>> = BTreeMap::new();
    let mut out = Outputs::default();
    let mut seen = 0;
    let agree = |s: &LeadState| -> Result<usize, TestCaseError> {
        let expected = held_by_conditions(model, s, s.clock);
        prop_assert_eq!(s.member, expected, "segments at {}: {:?}", s.clock, s.segments);
        Ok(s.member.count_ones() as usize)
    };
    for i in 0..events {
        let e = g.next_event();
        let slot = leads.entry(e.lead_id.as_str().to_string()).or_default();
        apply(model, slot, &e, &mut out);
        if let Some(s) = slot.as_ref() {
            seen += agree(s)?;
        }
        if i % 300 == 299 {
            for s in leads.values_mut().flatten() {
                advance(model, s, e.timestamp, &mut out);
                seen += agree(s)?;
            }
        }
        out.clear();
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn a_lead_is_in_the_segments_whose_conditions_hold(seed in any::<u64>(), leads in 5u64..50, minutes in 1i64..1440) {
        // From a minute to a day apart: windows fill and drain, inactivity
        // starts and ends, scores decay across thresholds and peaks.
        for model in models() {
            let settings = Settings { seed, leads, step: minutes * 60_000, ..Settings::default() };
            prop_assert!(check(&model, settings, 2_000)? > 0);
        }
    }
}

/// A stored state's membership bits beyond the model's segments (only a
/// corrupt state has them) are dropped without an exit record.
#[test]
fn membership_bits_beyond_the_model_are_dropped_without_an_exit() {
    let model = models().remove(0);
    let mut g = Generator::new(Settings { seed: 7, leads: 1, ..Settings::default() });
    let mut slot = None;
    let mut out = Outputs::default();
    apply(&model, &mut slot, &g.next_event(), &mut out);
    let state = slot.as_mut().expect("a lead");
    let stray = 1u128 << 127;
    assert!(model.segments.len() < 127);
    state.member |= stray;
    out.clear();
    let mut event = g.next_event();
    event.timestamp = state.clock + 90 * 24 * 3_600_000;
    apply(&model, &mut slot, &event, &mut out);
    let state = slot.as_ref().expect("a lead");
    assert_eq!(state.member & stray, 0, "the stray bit is gone");
    for r in &out.records {
        if let leadscore_core::output::Record::Transition(t) = r {
            assert!(usize::from(t.segment) < model.segments.len(), "{r:?}");
        }
    }
}

/// Every extra segment is entered by some lead in some run: the test above
/// is not checking conditions that never hold.
#[test]
fn every_extra_segment_is_entered() {
    let model = models().pop().expect("extended");
    let mut entered = 0u128;
    for (seed, minutes) in [(1, 5), (2, 60), (3, 600), (4, 1440)] {
        let mut g = Generator::new(Settings { seed, leads: 30, step: minutes * 60_000, ..Settings::default() });
        let mut leads: BTreeMap<String, Option<LeadState>> = BTreeMap::new();
        let mut out = Outputs::default();
        for _ in 0..3_000 {
            let e = g.next_event();
            let slot = leads.entry(e.lead_id.as_str().to_string()).or_default();
            apply(&model, slot, &e, &mut out);
            if let Some(s) = slot.as_ref() {
                entered |= s.member;
            }
            out.clear();
        }
    }
    for name in ["x-any", "x-nested", "x-peak", "x-profile"] {
        let i = model.segment_index(name).expect("segment");
        assert!(entered & (1 << i) != 0, "no lead entered {name}");
    }
}
