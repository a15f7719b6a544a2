//! A lead's expiry floor only skips work that would change nothing: scoring
//! a stream with it gives, record for record and state for state, what
//! scoring with every window's oldest entry looked at on every event gives.

use leadscore_config::seed_model;
use leadscore_core::engine::{advance, apply};
use leadscore_core::{LeadState, Millis, Outputs};
use leadscore_synth::{Generator, Settings};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Scores `events` of the generator; `forget` resets every lead's floor
/// before each event, so that every window is expired at every event.
fn run(settings: &Settings, events: usize, forget: bool) -> (Vec<String>, BTreeMap<String, Option<LeadState>>) {
    let model = seed_model();
    let mut g = Generator::new(settings.clone());
    let mut leads: BTreeMap<String, Option<LeadState>> = BTreeMap::new();
    let (mut out, mut records) = (Outputs::default(), Vec::new());
    for i in 0..events {
        let e = g.next_event();
        let slot = leads.entry(e.lead_id.as_str().to_string()).or_default();
        if let (true, Some(s)) = (forget, slot.as_mut()) {
            s.expiry_floor = Millis::MIN;
        }
        apply(&model, slot, &e, &mut out);
        // Now and then, every timer of every lead up to this instant.
        if i % 500 == 499 {
            for s in leads.values_mut().flatten() {
                if forget {
                    s.expiry_floor = Millis::MIN;
                }
                advance(&model, s, e.timestamp, &mut out);
            }
        }
        records.extend(out.records.iter().map(|r| format!("{r:?}")));
        out.clear();
    }
    for s in leads.values_mut().flatten() {
        s.expiry_floor = Millis::MIN;
    }
    (records, leads)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_floor_changes_no_record_and_no_state(seed in any::<u64>(), leads in 5u64..60, hours in 1i64..12) {
        // Events hours apart: 30- to 90-day windows fill and drain, and the
        // capped page-view rule's day passes.
        let settings = Settings { seed, leads, step: hours * 3_600_000, ..Settings::default() };
        let (records, states) = run(&settings, 3_000, false);
        let (expected, expected_states) = run(&settings, 3_000, true);
        prop_assert!(records.len() > 1_000);
        prop_assert!(records == expected, "the records differ");
        prop_assert!(states == expected_states, "the states differ");
    }
}
