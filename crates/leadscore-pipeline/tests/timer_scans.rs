//! Stored timers read ahead of event time: a step that covers weeks of
//! history reads the store's timers further ahead with every scan, and
//! queues none due after its latest event, and must publish exactly what the
//! same messages publish one step each (where every scan reads only a minute
//! ahead), in the same order, each timer before the first event at or after
//! its instant. Timers due at one instant fire in lead id order.

use leadscore_config::seed_model;
use leadscore_core::time::{format_rfc3339, parse_rfc3339, HOUR};
use leadscore_pipeline::{InputMessage, Processor, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;

mod common;
use common::{messages, published};

fn line(id: &str, lead: &str, kind: &str, at: i64) -> String {
    let at = format_rfc3339(at);
    let props = if kind == "search" { r#","properties":{"term":"x"}"# } else { "" };
    format!(r#"{{"event_id":"{id}","lead_id":"{lead}","type":"{kind}","timestamp":"{at}"{props}}}"#)
}

/// A store in which 300 leads were active three hours apart from `t0`: each
/// has timers (60 days of inactivity, windows leaving) stored.
fn history(p: &Processor<'_>, store: &MemoryStore, t0: i64) {
    let lines: Vec<String> =
        (0..300).map(|i| line(&format!("h{i}"), &format!("L-s{i:03}"), "search", t0 + i * 3 * HOUR)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    store.write(&p.process(0, &messages("lead-events", &refs), 0).expect("process").write).expect("commit");
}

/// 400 events two hours apart from day 58 and a half hour (so that stored
/// timers fall due in every part of the gap before an event), mostly of new
/// leads, every fifth of a stored lead (whose stored timer the step then
/// supersedes).
fn later(t0: i64) -> Vec<InputMessage> {
    let lines: Vec<String> = (0..400i64)
        .map(|i| {
            let lead = if i % 5 == 0 { format!("L-s{:03}", i * 3 % 300) } else { format!("L-n{i:03}") };
            let kind = if i % 2 == 0 { "email_open" } else { "search" };
            line(&format!("l{i}"), &lead, kind, t0 + 58 * 24 * HOUR + HOUR / 2 + i * 2 * HOUR)
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut batch = messages("lead-events", &refs);
    for (i, m) in batch.iter_mut().enumerate() {
        m.offset = 300 + i as i64;
    }
    batch
}

#[test]
fn a_step_over_weeks_fires_the_stored_timers_as_steps_of_one_message_do() {
    let model = seed_model();
    let topics = Topics::default();
    let t0 = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");

    let whole = MemoryStore::new();
    let p = Processor::new(&model, &whole, &topics, TimeMode::EventTime);
    history(&p, &whole, t0);
    let step = p.process(0, &later(t0), 0).expect("process");
    whole.write(&step.write).expect("commit");
    let at_once = published(&step);

    let single = MemoryStore::new();
    let q = Processor::new(&model, &single, &topics, TimeMode::EventTime);
    history(&q, &single, t0);
    let mut one_by_one = Vec::new();
    for m in later(t0) {
        let step = q.process(0, &[m], 0).expect("process");
        single.write(&step.write).expect("commit");
        one_by_one.extend(published(&step));
    }

    // Timers fire before the first event at or after their instant: the
    // records come in time order (the events do).
    let stamps = |records: &[String]| -> Vec<String> {
        records.iter().map(|r| r.split(r#""timestamp":""#).nth(1).expect("a timestamp")[..24].to_string()).collect()
    };
    for records in [&at_once, &one_by_one] {
        let t = stamps(records);
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "records out of time order");
    }
    let inactive = at_once.iter().filter(|r| r.contains(r#""segment":"inactive-60d","transition":"entered""#)).count();
    assert!(inactive > 150, "the step fires many stored inactivity timers: {inactive}");
    assert_eq!(at_once.len(), one_by_one.len());
    for (i, (a, b)) in at_once.iter().zip(&one_by_one).enumerate() {
        assert_eq!(a, b, "record {i}");
    }
}

/// Timers due at one instant fire in lead id order, whatever order the step
/// met their leads in (the queue orders them by place in the working set).
#[test]
fn timers_due_together_fire_in_lead_id_order() {
    let model = seed_model();
    let topics = Topics::default();
    let t0 = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    // Met in reverse id order, all at t0: their inactivity timers are due together.
    let mut lines: Vec<String> = ["L-e", "L-d", "L-c", "L-b", "L-a"]
        .iter()
        .enumerate()
        .map(|(i, l)| line(&format!("e{i}"), l, "search", t0))
        .collect();
    lines.push(line("late", "L-z", "search", t0 + 61 * 24 * HOUR));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let records = published(&p.process(0, &messages("lead-events", &refs), 0).expect("process"));
    let entered: Vec<&str> = records
        .iter()
        .filter(|r| r.contains(r#""segment":"inactive-60d","transition":"entered""#))
        .map(|r| &r.split(r#""lead_id":""#).nth(1).expect("a lead id")[..3])
        .collect();
    assert_eq!(entered, ["L-a", "L-b", "L-c", "L-d", "L-e"]);
}
