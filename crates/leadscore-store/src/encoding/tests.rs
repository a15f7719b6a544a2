//! Tests of the encoding module.

use super::*;
use leadscore_config::seed_model;
use leadscore_core::engine::apply;
use leadscore_core::Outputs;
use leadscore_synth::{Generator, Settings};
use std::collections::HashMap;

fn states(n_events: usize, seed: u64) -> Vec<LeadState> {
    let model = seed_model();
    let mut g = Generator::new(Settings { seed, leads: 20, step: 3_600_000, erase_share: 0.01, ..Settings::default() });
    let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
    let mut out = Outputs::default();
    for _ in 0..n_events {
        let e = g.next_event();
        apply(&model, leads.entry(e.lead_id.to_string()).or_default(), &e, &mut out);
        out.clear();
    }
    leads.into_values().flatten().collect()
}

#[test]
fn the_largest_state_a_model_allows_fits_its_bound() {
    use leadscore_core::bounds::*;
    use leadscore_core::event::{FieldType, Kind as K, OwnedValue};
    use leadscore_core::{Event, Field};
    let model = seed_model();
    let (bound, parts) = max_state_bytes(&model);
    // The seed model's leads always fit librdkafka's default message size.
    assert!(bound < 900_000, "{bound}: {parts:?}");
    let mut slot = None;
    let mut out = Outputs::default();
    let t0 = 1_767_225_600_000;
    let mut profile = Event::new("p", "L", K::ProfileUpdate, t0);
    for (field, _) in K::ProfileUpdate.properties() {
        let value = match field.field_type() {
            FieldType::Text => OwnedValue::Text("x".repeat(MAX_PROFILE_TEXT_BYTES).into()),
            FieldType::TextList => OwnedValue::TextList(
                (0..MAX_LIST_ITEMS).map(|i| format!("{i:0>width$}", width = MAX_LIST_ITEM_BYTES).into()).collect(),
            ),
            FieldType::Integer => OwnedValue::Integer(i64::MAX),
            _ => OwnedValue::Number(f64::MAX),
        };
        profile.properties.profile.push((*field, Some(value)));
    }
    apply(&model, &mut slot, &profile, &mut out);
    for i in 0..MAX_OPPORTUNITIES + 50 {
        let mut e = Event::new(format!("o{i}").as_str(), "L", K::OpportunityUpdate, t0 + i as i64);
        e.properties.set_text(Field::OpportunityId, format!("{i:0>width$}", width = MAX_OPPORTUNITY_ID_BYTES));
        apply(&model, &mut slot, &e, &mut out);
    }
    // Every kind of activity every few minutes for months fills every window.
    let kinds = [K::PageView, K::EmailClick, K::Download, K::FormSubmit, K::Search, K::Webinar, K::EmailOpen];
    for i in 0..40_000i64 {
        let kind = kinds[i as usize % kinds.len()];
        let mut e = Event::new(format!("e{i}").as_str(), "L", kind, t0 + 1000 + i * 7 * 60_000);
        for (f, _) in kind.properties() {
            e.properties.set_text(*f, "https://example.com/pricing");
        }
        apply(&model, &mut slot, &e, &mut out);
        out.clear();
    }
    let state = slot.expect("the lead");
    assert_eq!(state.opportunities.len(), MAX_OPPORTUNITIES);
    let mut buf = Vec::new();
    encode_state(&state, &model, &mut buf);
    assert!(buf.len() as u64 <= bound, "{} > {bound}: {parts:?}", buf.len());
    assert!(buf.len() as u64 > bound / 4, "the bound is not wildly loose: {} vs {bound}", buf.len());
}

fn without_cache(mut s: LeadState) -> LeadState {
    s.deadlines = Deadlines::default();
    s.expiry_floor = leadscore_core::Millis::MIN;
    s
}

#[test]
fn round_trips_real_states() {
    let model = seed_model();
    let all = states(3000, 7);
    assert!(all.len() > 10);
    for s in all {
        let mut buf = Vec::new();
        encode_state(&s, &model, &mut buf);
        let back = decode_state(&buf, &model).expect("decodes");
        assert_eq!(back, without_cache(s));
    }
}

#[test]
fn truncated_or_corrupt_values_are_errors_not_panics() {
    let model = seed_model();
    let s = states(500, 3).into_iter().next().expect("a state");
    let mut buf = Vec::new();
    encode_state(&s, &model, &mut buf);
    for cut in 0..buf.len() {
        assert!(decode_state(&buf[..cut], &model).is_err(), "cut at {cut}");
    }
    let mut bad = buf.clone();
    bad[0] = 9;
    assert_eq!(decode_state(&bad, &model), Err(DecodeStateError::UnknownFormat(9)));
    let mut longer = buf.clone();
    longer.push(0);
    assert!(matches!(decode_state(&longer, &model), Err(DecodeStateError::Corrupt(_))));
}

#[test]
fn the_timer_is_read_without_decoding_and_format_1_is_still_read() {
    let model = seed_model();
    for s in states(2000, 11) {
        let mut buf = Vec::new();
        encode_state(&s, &model, &mut buf);
        assert_eq!(peek_next_due(&buf), Ok(s.next_due));
        assert_eq!(state_model(&buf), Ok(Some(model.fingerprint())));
        // Format 1: the same body without the fingerprint.
        let mut v1 = vec![FORMAT_V1];
        v1.extend_from_slice(&buf[9..]);
        assert_eq!(state_model(&v1), Ok(None));
        assert_eq!(decode_state(&v1, &model), Ok(without_cache(s.clone())));
        assert_eq!(peek_next_due(&v1), Ok(s.next_due));
    }
}

#[test]
fn a_state_of_another_model_is_recognised_and_migrated_by_name() {
    let seed = seed_model();
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/seed-model.toml"))
        .expect("the seed model");
    // The same slots in another order, under a new version: nothing is lost.
    let other =
        leadscore_config::parse_model(&toml.replace("version = \"seed-1\"", "version = \"seed-2\"")).expect("a model");
    assert_ne!(other.fingerprint(), seed.fingerprint());
    for s in states(1500, 5) {
        let mut buf = Vec::new();
        encode_state(&s, &seed, &mut buf);
        assert_eq!(decode_state(&buf, &other), Err(DecodeStateError::UnknownModel(seed.fingerprint())));
        assert_eq!(
            decode_migrating(&buf, &other, &[]).map(|_| ()),
            Err(DecodeStateError::UnknownModel(seed.fingerprint()))
        );
        let known = [crate::ModelLayout::of(&seed)];
        let (back, retired) = decode_migrating(&buf, &other, &known).expect("migrates");
        assert_eq!(retired, Some(Vec::new()), "the same segments");
        assert_eq!(back, without_cache(s.clone()));
        // Under its own model, nothing to migrate.
        assert_eq!(decode_migrating(&buf, &seed, &known), Ok((without_cache(s), None)));
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = decode_state(&bytes, &seed_model());
    }
}
