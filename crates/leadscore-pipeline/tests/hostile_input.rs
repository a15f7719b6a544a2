//! Hostile input through the processing step: an implausible time is a dead
//! letter that moves no clock and fires no timer, the last instants RFC 3339
//! can express are scored without a panic, unknown kinds are skipped or
//! dead-lettered as configured, and an oversized message's dead letter is cut
//! to a size that can be published.

use leadscore_config::seed_model;
use leadscore_core::time::{parse_rfc3339, DAY};
use leadscore_pipeline::messages::headers;
use leadscore_pipeline::{OutputRecord, OutputTopic, Processor, Step, TimeMode, Topics, UnknownKinds};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_telemetry::SkipReason;

mod common;
use common::{messages, published};

fn classes(step: &Step) -> Vec<String> {
    step.outputs
        .iter()
        .filter(|o| o.topic == OutputTopic::DeadLetters)
        .map(|o: &OutputRecord| {
            let class = o.headers.iter().find(|(k, _)| *k == headers::ERROR_CLASS).expect("class");
            String::from_utf8(class.1.clone()).expect("UTF-8")
        })
        .collect()
}

fn event(id: &str, lead: &str, kind: &str, at: &str, properties: &str) -> String {
    format!(r#"{{"event_id":"{id}","lead_id":"{lead}","type":"{kind}","timestamp":"{at}","properties":{properties}}}"#)
}

#[test]
fn a_far_future_event_in_event_time_is_a_dead_letter_and_fires_no_timer() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let lines = [
        event("a", "L-1", "form_submit", "2026-01-01T00:00:00Z", r#"{"form":"demo"}"#),
        event("b", "L-2", "page_view", "2099-01-01T00:00:00Z", r#"{"url":"/pricing"}"#),
        event("c", "L-1", "page_view", "2026-01-02T00:00:00Z", r#"{"url":"/pricing"}"#),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let step = p.process(0, &messages("lead-events", &lines), 0).expect("process");
    assert_eq!(classes(&step), ["out_of_range_timestamp"]);
    let dead = step.outputs.iter().find(|o| o.topic == OutputTopic::DeadLetters).expect("dead letter");
    let message = &dead.headers.iter().find(|(k, _)| *k == headers::ERROR_MESSAGE).expect("message").1;
    let message = String::from_utf8_lossy(message);
    assert!(message.contains("2099-01-01") && message.contains("max_future_ms"), "{message}");
    assert_eq!(step.stats.applied, 2);
    assert_eq!(step.stats.timer_transitions, 0, "no timer storm");
    assert_eq!(step.checkpoint.watermark, Some(parse_rfc3339("2026-01-02T00:00:00Z").expect("time")));
    assert!(published(&step).iter().all(|r| !r.contains("L-2")));
}

#[test]
fn an_event_in_seconds_instead_of_milliseconds_is_below_the_floor() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let line = r#"{"event_id":"a","lead_id":"L-1","type":"page_view","timestamp":1795622400,"properties":{"url":"/"}}"#;
    let step = p.process(0, &messages("lead-events", &[line]), 0).expect("process");
    assert_eq!(classes(&step), ["out_of_range_timestamp"]);
    assert_eq!(step.checkpoint.watermark, None, "time did not move");
}

#[test]
fn in_wall_clock_mode_an_event_more_than_a_day_ahead_is_a_dead_letter() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::WallClock);
    let now = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let lines = [
        event("a", "L-1", "page_view", "2026-01-01T23:00:00Z", r#"{"url":"/"}"#),
        event("b", "L-1", "page_view", "2026-01-03T00:00:00Z", r#"{"url":"/"}"#),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let step = p.process(0, &messages("lead-events", &lines), now).expect("process");
    assert_eq!(classes(&step), ["out_of_range_timestamp"]);
    assert_eq!(step.stats.applied, 1);
    store.write(&step.write).expect("commit");
    // The lead's clock did not jump two days: its decay is as of its own event.
    let state = store.get_states(0, &["L-1"]).expect("read")[0].clone().expect("state");
    let state = leadscore_store::decode_state(&state, &model).expect("decode");
    assert_eq!(state.clock, parse_rfc3339("2026-01-01T23:00:00Z").expect("time"));

    // A message's broker timestamp is its reference when it has one: a step
    // replayed at an old tick decides as the step that first saw it did.
    let line = event("c", "L-1", "page_view", "2026-01-04T00:00:00Z", r#"{"url":"/"}"#);
    let mut late = messages("lead-events", &[&line]);
    late[0].offset = 2;
    late[0].timestamp = Some(now + 3 * DAY - 3_600_000);
    let step = p.process(0, &late, now).expect("process");
    assert!(classes(&step).is_empty(), "{:?}", classes(&step));
    assert_eq!(step.stats.applied, 1);
}

#[test]
fn the_last_instants_of_year_9999_are_scored_without_a_panic() {
    // The issue's reproduction: three form submissions and a pricing view at
    // the last representable millisecond, and events in the last 60 days of
    // year 9999 (whose timers fall after it).
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let end = "9999-12-31T23:59:59.999Z";
    let lines = [
        event("p1", "L-2", "page_view", "9999-11-15T00:00:00Z", r#"{"url":"/pricing"}"#),
        event("p2", "L-2", "form_submit", "9999-11-16T00:00:00Z", r#"{"form":"demo"}"#),
        event("a", "L-1", "form_submit", end, r#"{"form":"demo"}"#),
        event("b", "L-1", "form_submit", end, r#"{"form":"trial"}"#),
        event("c", "L-1", "form_submit", end, r#"{"form":"contact"}"#),
        event("d", "L-1", "page_view", end, r#"{"url":"https://example.com/pricing"}"#),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let step = p.process(0, &messages("lead-events", &lines), 0).expect("process");
    assert_eq!(step.stats.applied, 6, "{:?}", classes(&step));
    store.write(&step.write).expect("commit");
    let records = published(&step);
    assert!(records.iter().any(|r| r.contains(r#""lead_id":"L-1""#) && r.contains(end)), "{records:?}");
    // Time at its end: nothing fires, nothing panics.
    let step = p.tick(0, parse_rfc3339(end).expect("time")).expect("tick");
    store.write(&step.write).expect("commit");
}

#[test]
fn unknown_kinds_are_skipped_and_counted_when_configured() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let mut p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let lines = [
        event("a", "L-1", "page_view", "2026-01-01T00:00:00Z", r#"{"url":"/"}"#),
        event("b", "L-1", "add_to_cart", "2026-01-01T00:00:01Z", r#"{"sku":"x"}"#),
        event("c", "L-1", "page_view", "2026-01-01T00:00:02Z", r#"{"url":"/pricing"}"#),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let batch = messages("lead-events", &lines);

    let step = p.process(0, &batch, 0).expect("process");
    assert_eq!(classes(&step), ["unknown_kind"], "dead letters by default");
    assert_eq!(step.stats.dead_lettered, 1);

    p.admission.unknown_kinds = UnknownKinds::Skip;
    let step = p.process(0, &batch, 0).expect("process");
    assert!(classes(&step).is_empty());
    assert_eq!((step.stats.applied, step.stats.skipped, step.stats.dead_lettered), (2, 1, 0));
    assert_eq!(
        step.observations.skipped.get(&(topics.input_index("lead-events").unwrap(), SkipReason::UnknownKind)),
        Some(&1)
    );
    assert_eq!(step.checkpoint.next_offsets.get("lead-events"), Some(&3), "committed past it");
    assert_eq!(step.messages, 3);
}

#[test]
fn an_oversized_message_is_a_dead_letter_cut_to_a_publishable_size() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let huge = format!(
        r#"{{"event_id":"a","lead_id":"L-1","type":"page_view","timestamp":"2026-01-01T00:00:00Z","properties":{{"url":"/","title":"{}"}}}}"#,
        "x".repeat(2_000_000)
    );
    let good = event("b", "L-1", "page_view", "2026-01-01T00:00:01Z", r#"{"url":"/pricing"}"#);
    let mut batch = messages("lead-events", &[&huge, &good]);
    batch[1].key = Some(b"L-1".to_vec());
    let mut big_key = messages("lead-events", &[&good]);
    big_key[0].offset = 2;
    big_key[0].key = Some(vec![b'k'; 1_000_000]);
    batch.extend(big_key);
    let step = p.process(0, &batch, 0).expect("process");
    assert_eq!(classes(&step), ["oversize", "oversize"]);
    assert_eq!(step.stats.applied, 1);
    let dead: Vec<&OutputRecord> = step.outputs.iter().filter(|o| o.topic == OutputTopic::DeadLetters).collect();
    let header = |o: &OutputRecord, name: &str| {
        o.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(dead[0].value.as_ref().map(Vec::len), Some(64 * 1024));
    assert!(huge.as_bytes().starts_with(dead[0].value.as_deref().expect("value")), "the start of the original");
    assert_eq!(header(dead[0], headers::ORIGINAL_SIZE), Some(huge.len().to_string()));
    assert_eq!(header(dead[0], headers::ORIGINAL_KEY_SIZE), None);
    assert_eq!(dead[1].key.as_ref().map(Vec::len), Some(64 * 1024));
    assert_eq!(header(dead[1], headers::ORIGINAL_KEY_SIZE), Some("1000000".into()));
    let message = header(dead[0], headers::ERROR_MESSAGE).expect("message");
    assert!(message.contains("processing.max_message_bytes = 900000"), "{message}");
    // Every record of the step fits what the producer is allowed to send.
    let largest = leadscore_pipeline::messages::largest_record(&model, &p.limits);
    for o in &step.outputs {
        let size = o.key.as_ref().map_or(0, Vec::len)
            + o.value.as_ref().map_or(0, Vec::len)
            + o.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        assert!(size <= largest, "{size} > {largest}");
    }
}

#[test]
fn a_hostile_value_is_quoted_in_short_in_the_error_message() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let line = event("a", "L-1", &"z".repeat(500_000), "2026-01-01T00:00:00Z", "{}");
    let step = p.process(0, &messages("lead-events", &[&line]), 0).expect("process");
    assert_eq!(classes(&step), ["unknown_kind"]);
    let dead = step.outputs.iter().find(|o| o.topic == OutputTopic::DeadLetters).expect("dead letter");
    let message = &dead.headers.iter().find(|(k, _)| *k == headers::ERROR_MESSAGE).expect("message").1;
    assert!(message.len() < 1024, "{}", message.len());
    assert!(String::from_utf8_lossy(message).contains("(500000 bytes)"));
}
