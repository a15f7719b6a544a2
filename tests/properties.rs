//! Property tests of the scoring core with the seed model, over random streams of
//! realistic events: ranges, determinism, duplicates, exclusive tiers, exact
//! timer deadlines, and timers that compose.

use leadscore_suite::config::seed_model;
use leadscore_suite::core::engine::{advance, apply, Outcome};
use leadscore_suite::core::event::{Field, OwnedValue};
use leadscore_suite::core::output::{Cause, Direction, Record};
use leadscore_suite::core::time::{format_rfc3339, DAY, HOUR, MINUTE};
use leadscore_suite::core::{Event, Kind, LeadState, Model, Outputs};
use leadscore_suite::pipeline::offline::{score, Options};
use proptest::prelude::*;
use std::collections::HashMap;

/// One generated step: which lead, how much time passes, what happens.
#[derive(Debug, Clone)]
struct Step {
    lead: usize,
    gap: i64,
    what: u8,
    variant: u8,
}

fn step() -> impl Strategy<Value = Step> {
    let gap = prop_oneof![
        3 => Just(0i64),
        4 => 0..2 * HOUR,
        3 => 0..5 * DAY,
        1 => 0..70 * DAY,
        1 => -(3 * DAY)..0i64, // out of order
    ];
    (0..4usize, gap, 0..16u8, 0..8u8).prop_map(|(lead, gap, what, variant)| Step { lead, gap, what, variant })
}

fn text(e: &mut Event, f: Field, v: &str) {
    e.properties.set_text(f, v);
}

/// Builds a realistic event from a step.
fn event(i: usize, s: &Step, t: i64) -> Event {
    let id = format!("e-{i}");
    let lead = format!("L-{}", s.lead);
    let v = s.variant as usize;
    let urls = [
        "https://x.io/pricing",
        "https://x.io/blog/a",
        "https://x.io/docs",
        "https://x.io/analytics",
        "https://x.io/BLOG/b",
    ];
    let kind = match s.what {
        0..=3 => Kind::PageView,
        4 => Kind::EmailClick,
        5 => Kind::Download,
        6 => Kind::FormSubmit,
        7 => Kind::Search,
        8 => Kind::Webinar,
        9 => Kind::EmailBounce,
        10 => Kind::EmailSend,
        11 => Kind::EmailOpen,
        12 => Kind::ProfileUpdate,
        13 => Kind::OpportunityUpdate,
        14 => Kind::Unsubscribe,
        _ => {
            if v == 0 {
                Kind::Erase
            } else {
                Kind::ProfileUpdate
            }
        }
    };
    let mut e = Event::new(id.as_str(), lead.as_str(), kind, t);
    match kind {
        Kind::PageView => text(&mut e, Field::Url, urls[v % urls.len()]),
        Kind::EmailClick => text(&mut e, Field::LinkUrl, urls[(v + 3) % urls.len()]),
        Kind::Download => text(&mut e, Field::Asset, ["automation.pdf", "guide.pdf"][v % 2]),
        Kind::FormSubmit => text(&mut e, Field::Form, "demo"),
        Kind::Search => text(&mut e, Field::Term, ["analytics", "price"][v % 2]),
        Kind::Webinar => {
            text(&mut e, Field::Webinar, "w");
            e.properties.attended = Some(!v.is_multiple_of(3));
        }
        Kind::EmailBounce => {
            e.properties.bounce_type = Some(if v.is_multiple_of(4) {
                leadscore_suite::core::event::BounceType::Hard
            } else {
                leadscore_suite::core::event::BounceType::Soft
            })
        }
        Kind::ProfileUpdate => {
            let p = &mut e.properties.profile;
            let t = |s: &str| Some(OwnedValue::Text(s.into()));
            match v {
                0 => p.push((Field::JobTitle, t("VP of Sales"))),
                1 => p.push((Field::JobTitle, t("Marketing Intern"))),
                2 => p.push((Field::Email, t("a@gmail.com"))),
                3 => p.push((Field::Email, t("a@corp.io"))),
                4 => p.push((Field::CompanySize, Some(OwnedValue::Integer(1500)))),
                5 => p.push((Field::Email, None)),
                6 => p.push((Field::JobTitle, t("Research Analyst"))),
                _ => p.push((Field::Industry, t("Software"))),
            }
        }
        Kind::OpportunityUpdate => {
            text(&mut e, Field::OpportunityId, ["o1", "o2"][v % 2]);
            e.properties.stage = Some(
                [
                    leadscore_suite::core::event::Stage::Open,
                    leadscore_suite::core::event::Stage::ClosedWon,
                    leadscore_suite::core::event::Stage::ClosedLost,
                ][v % 3],
            );
        }
        _ => {}
    }
    e
}

fn events(steps: &[Step]) -> Vec<Event> {
    let mut t = 1_767_225_600_000; // 2026-01-01
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            t += s.gap;
            event(i, s, t)
        })
        .collect()
}

fn to_jsonl(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        let mut props = serde_json::Map::new();
        for kind_field in e.kind.properties() {
            let f = kind_field.0;
            if let Some(v) = e.properties.get(f) {
                use leadscore_suite::core::event::Value;
                let j = match v {
                    Value::Text(t) => serde_json::json!(t),
                    Value::Integer(i) => serde_json::json!(i),
                    Value::Number(n) => serde_json::json!(n),
                    Value::Boolean(b) => serde_json::json!(b),
                    Value::TextList(l) => {
                        serde_json::json!(l.iter().map(|x| x.to_string()).collect::<Vec<_>>())
                    }
                };
                props.insert(f.as_str().into(), j);
            }
        }
        for (f, v) in &e.properties.profile {
            if v.is_none() {
                props.insert(f.as_str().into(), serde_json::Value::Null);
            }
        }
        let j = serde_json::json!({
            "event_id": e.event_id.as_str(), "lead_id": e.lead_id.as_str(), "type": e.kind.as_str(),
            "timestamp": format_rfc3339(e.timestamp), "properties": props,
        });
        s.push_str(&j.to_string());
        s.push('\n');
    }
    s
}

fn tier_count(model: &Model, s: &LeadState) -> usize {
    ["score-low", "score-medium", "score-high"]
        .iter()
        .filter(|n| s.in_segment(model.segment_index(n).expect("tier")))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn scores_stay_in_range_and_tiers_are_exclusive(steps in proptest::collection::vec(step(), 1..120)) {
        let model = seed_model();
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let mut out = Outputs::default();
        let sales_ready = model.segment_index("sales-ready").expect("segment");
        let high = model.segment_index("score-high").expect("segment");
        for e in events(&steps) {
            let slot = leads.entry(e.lead_id.to_string()).or_default();
            apply(&model, slot, &e, &mut out);
            for r in &out.records {
                let score = match r { Record::ScoreChange(c) => c.score, Record::Transition(t) => t.score };
                prop_assert!((0.0..=100.0).contains(&score), "{r:?}");
            }
            out.clear();
            if let Some(s) = slot {
                let now = s.clock;
                let score = s.score_at_time(&model, now);
                prop_assert!((0.0..=100.0).contains(&score));
                prop_assert_eq!(tier_count(&model, s), 1, "exactly one tier: {:?}", s.segments);
                prop_assert!(!s.in_segment(sales_ready) || s.in_segment(high));
            }
        }
    }

    #[test]
    fn the_same_input_gives_the_same_output(steps in proptest::collection::vec(step(), 1..80)) {
        let model = seed_model();
        let input = to_jsonl(&events(&steps));
        let until = Some(1_767_225_600_000 + 400 * DAY);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let sa = score(&model, input.as_bytes(), &Options { until, ..Options::default() }, &mut a, &mut std::io::sink()).expect("io");
        let sb = score(&model, input.as_bytes(), &Options { until, ..Options::default() }, &mut b, &mut std::io::sink()).expect("io");
        prop_assert_eq!(sa.rejected, 0);
        prop_assert_eq!(sa, sb);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn replaying_a_duplicate_changes_nothing(steps in proptest::collection::vec(step(), 2..80), pick in 0usize..1000) {
        let model = seed_model();
        let evs = events(&steps);
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let mut out = Outputs::default();
        for e in &evs {
            apply(&model, leads.entry(e.lead_id.to_string()).or_default(), e, &mut out);
        }
        // Redeliver one of the last events of some lead (within the remembered ids),
        // with a later timestamp, as an at-least-once upstream would.
        let at = evs.len() - 1 - pick % evs.len().min(5);
        let last = &evs[at];
        // An erase forgets everything, the ids seen included (docs/events.md): after
        // one, the same event applies again by design.
        let erased_since = evs[at..].iter().any(|e| e.lead_id == last.lead_id && e.kind == Kind::Erase);
        let slot = leads.entry(last.lead_id.to_string()).or_default();
        if slot.is_some() && last.kind != Kind::Erase && !erased_since {
            let before = slot.clone();
            let mut again = last.clone();
            again.timestamp += 10 * DAY;
            out.clear();
            let outcome = apply(&model, slot, &again, &mut out);
            prop_assert_eq!(outcome, Outcome::Duplicate);
            prop_assert!(out.is_empty());
            prop_assert_eq!(&*slot, &before);
        }
    }

    #[test]
    fn timers_fire_exactly_at_their_deadline(steps in proptest::collection::vec(step(), 1..80)) {
        let model = seed_model();
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let mut out = Outputs::default();
        for e in events(&steps) {
            let slot = leads.entry(e.lead_id.to_string()).or_default();
            apply(&model, slot, &e, &mut out);
            out.clear();
            let Some(state) = slot.as_ref() else { continue };
            let Some(due) = state.next_due else { continue };
            // Just before the deadline nothing changes...
            let mut before = state.clone();
            advance(&model, &mut before, due - 1, &mut out);
            prop_assert!(out.is_empty(), "changed before its deadline: {:?}", out.records);
            prop_assert_eq!(&before.segments, &state.segments);
            // ...and at it a segment changes, stamped with the deadline.
            let mut at = state.clone();
            advance(&model, &mut at, due, &mut out);
            prop_assert!(!out.is_empty(), "nothing changed at the deadline {due}");
            for r in &out.records {
                match r {
                    Record::Transition(t) => {
                        prop_assert_eq!(t.timestamp, due);
                        prop_assert_eq!(t.cause, Cause::Timer);
                    }
                    Record::ScoreChange(_) => prop_assert!(false, "timers never change the score"),
                }
            }
            out.clear();
        }
    }

    #[test]
    fn advancing_in_steps_equals_advancing_at_once(
        steps in proptest::collection::vec(step(), 1..60), a in 0i64..200 * DAY, b in 0i64..200 * DAY,
    ) {
        let model = seed_model();
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let mut out = Outputs::default();
        for e in events(&steps) {
            apply(&model, leads.entry(e.lead_id.to_string()).or_default(), &e, &mut out);
        }
        for state in leads.values().flatten() {
            let start = state.clock;
            let (mut once, mut twice) = (state.clone(), state.clone());
            let (mut o1, mut o2) = (Outputs::default(), Outputs::default());
            advance(&model, &mut once, start + a + b, &mut o1);
            advance(&model, &mut twice, start + a, &mut o2);
            advance(&model, &mut twice, start + a + b, &mut o2);
            prop_assert_eq!(&o1, &o2);
            prop_assert_eq!(&once, &twice);
        }
    }

    #[test]
    fn versions_count_records_and_outputs_are_ordered(steps in proptest::collection::vec(step(), 1..100)) {
        let model = seed_model();
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut out = Outputs::default();
        for e in events(&steps) {
            let slot = leads.entry(e.lead_id.to_string()).or_default();
            if slot.is_none() {
                versions.remove(e.lead_id.as_str());
            }
            apply(&model, slot, &e, &mut out);
            // Order within one event: timer transitions, the score change, exits, entries.
            let rank = |r: &Record| match r {
                Record::Transition(t) if t.cause == Cause::Timer => 0,
                Record::ScoreChange(_) => 1,
                Record::Transition(t) if t.direction == Direction::Exited => 2,
                Record::Transition(_) => 3,
            };
            let mut last_timer_stamp = i64::MIN;
            for w in out.records.windows(2) {
                prop_assert!(rank(&w[0]) <= rank(&w[1]), "{:?}", out.records);
            }
            for r in &out.records {
                let v = versions.entry(e.lead_id.to_string()).or_insert(0);
                *v += 1;
                prop_assert_eq!(r.version(), *v);
                if let Record::Transition(t) = r {
                    if t.cause == Cause::Timer {
                        prop_assert!(t.timestamp >= last_timer_stamp);
                        last_timer_stamp = t.timestamp;
                    }
                }
            }
            out.clear();
        }
    }
}

#[test]
fn a_one_minute_cadence_of_page_views_is_capped_at_ten_points_a_day() {
    let model = seed_model();
    let mut slot = None;
    let mut out = Outputs::default();
    let mut awarded = 0.0;
    for i in 0..(3 * 24 * 60) {
        let mut e = Event::new(format!("e-{i}").as_str(), "L", Kind::PageView, i as i64 * MINUTE);
        e.properties.set_text(Field::Url, "/docs");
        apply(&model, &mut slot, &e, &mut out);
        for r in &out.records {
            if let Record::ScoreChange(c) = r {
                awarded += out.reasons_of(c).iter().map(|r| r.points).sum::<f64>();
            }
        }
        out.clear();
    }
    assert_eq!(awarded, 30.0, "10 points in each of three days");
}
