//! What a lead keeps only to skip work (its expiry floor, its solved
//! deadlines) changes nothing: scoring a stream with it gives, record for
//! record and state for state, what scoring with it forgotten before every
//! event and timer gives (every window's oldest entry looked at, every
//! deadline solved afresh).

use leadscore_config::seed_model;
use leadscore_core::engine::{advance, apply};
use leadscore_core::event::KindSet;
use leadscore_core::model::{EventMatcher, Measure};
use leadscore_core::state::Deadlines;
use leadscore_core::{Kind, LeadState, Millis, Model, Outputs};
use leadscore_synth::{Generator, Settings};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Forget = fn(&mut LeadState);

fn forget_floor(s: &mut LeadState) {
    s.expiry_floor = Millis::MIN;
}

fn forget_deadlines(s: &mut LeadState) {
    s.deadlines = Deadlines::default();
}

fn forget_nothing(_: &mut LeadState) {}

/// Scores `events` of the generator, calling `forget` on every lead before
/// each event and each sweep of timers.
fn run(
    model: &Model,
    settings: &Settings,
    events: usize,
    forget: Forget,
) -> (Vec<String>, BTreeMap<String, Option<LeadState>>) {
    let mut g = Generator::new(settings.clone());
    let mut leads: BTreeMap<String, Option<LeadState>> = BTreeMap::new();
    let (mut out, mut records) = (Outputs::default(), Vec::new());
    for i in 0..events {
        let e = g.next_event();
        let slot = leads.entry(e.lead_id.as_str().to_string()).or_default();
        if let Some(s) = slot.as_mut() {
            forget(s);
        }
        apply(model, slot, &e, &mut out);
        // Now and then, every timer of every lead up to this instant.
        if i % 500 == 499 {
            for s in leads.values_mut().flatten() {
                forget(s);
                advance(model, s, e.timestamp, &mut out);
            }
        }
        records.extend(out.records.iter().map(|r| format!("{r:?}")));
        out.clear();
    }
    for s in leads.values_mut().flatten() {
        forget_floor(s);
        forget_deadlines(s);
    }
    (records, leads)
}

/// The seed model with its peak-score tally counting form fills only.
fn peak_of_form_fills() -> Model {
    let mut spec = seed_model().spec().clone();
    let peak = spec.tallies.iter_mut().find(|t| t.measure == Measure::PeakScore).expect("the seed model has a peak");
    peak.events = vec![EventMatcher { kinds: KindSet::of(&[Kind::FormSubmit]), when: Vec::new() }];
    Model::new(spec).expect("still a valid model")
}

fn agrees(model: &Model, settings: &Settings, forget: Forget) -> Result<(), TestCaseError> {
    let (records, states) = run(model, settings, 3_000, forget_nothing);
    let (expected, expected_states) = run(model, settings, 3_000, forget);
    prop_assert!(records.len() > 1_000);
    prop_assert!(records == expected, "the records differ");
    prop_assert!(states == expected_states, "the states differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_floor_changes_no_record_and_no_state(seed in any::<u64>(), leads in 5u64..60, hours in 1i64..12) {
        // Events hours apart: 30- to 90-day windows fill and drain, and the
        // capped page-view rule's day passes.
        let settings = Settings { seed, leads, step: hours * 3_600_000, ..Settings::default() };
        agrees(&seed_model(), &settings, forget_floor)?;
    }

    #[test]
    fn kept_deadlines_change_no_record_and_no_state(seed in any::<u64>(), leads in 5u64..60, minutes in 1i64..720) {
        // From minutes to half a day apart: windows change within one
        // deadline's life and past it, scores cross thresholds and peaks.
        let settings = Settings { seed, leads, step: minutes * 60_000, ..Settings::default() };
        agrees(&seed_model(), &settings, forget_deadlines)?;
        // In the seed model every scored event also moves the peak's window;
        // a peak of form fills only lets the score move under a kept peak.
        agrees(&peak_of_form_fills(), &settings, forget_deadlines)?;
    }
}
