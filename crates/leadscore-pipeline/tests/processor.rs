//! The processing step against an in-memory store: the stream publishes exactly
//! what the offline scorer prints, a crash before the commit replays the same
//! records and applies nothing twice, bad input becomes dead letters, and
//! wall-clock timers fire with no input.

use leadscore_config::seed_model;
use leadscore_core::time::{parse_rfc3339, DAY};
use leadscore_pipeline::messages::headers;
use leadscore_pipeline::{OutputRecord, OutputTopic, Processor, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use std::path::{Path, PathBuf};

fn golden_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("golden scenarios")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

mod common;
use common::{messages, published};

#[test]
fn every_golden_scenario_streams_exactly_what_the_offline_scorer_prints() {
    let model = seed_model();
    let topics = Topics::default();
    let sizes = [1usize, 4, 2, 7, 3];
    for dir in golden_dirs() {
        let store = MemoryStore::new();
        let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
        let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
        let lines: Vec<&str> = text.lines().collect();
        let all = messages("lead-events", &lines);
        let mut got = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < all.len() {
            let end = (at + sizes[i % sizes.len()]).min(all.len());
            let step = p.process(0, &all[at..end], 0).expect("process");
            got.extend(published(&step));
            store.write(&step.write).expect("commit");
            at = end;
            i += 1;
        }
        if let Ok(until) = std::fs::read_to_string(dir.join("until")) {
            let step = p.tick(0, parse_rfc3339(until.trim()).expect("until")).expect("tick");
            got.extend(published(&step));
            store.write(&step.write).expect("commit");
        }
        let expected = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected");
        let expected: Vec<&str> = expected.lines().collect();
        assert_eq!(got, expected, "{}", dir.display());
    }
}

#[test]
fn every_golden_scenario_in_avro_publishes_the_same_records_as_in_json() {
    use leadscore_codec::{AvroCodec, AvroSettings};
    use std::sync::Arc;
    let dir = std::env::temp_dir().join(format!("leadscore-avro-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("lead-event.avsc"), leadscore_codec::avro::LEAD_EVENT_AVSC).expect("schema");
    let codec = Arc::new(
        AvroCodec::new(AvroSettings {
            schema_files: [(1, dir.join("lead-event.avsc"))].into_iter().collect(),
            registry: None,
            score_change_id: 11,
            transition_id: 12,
        })
        .expect("codec"),
    );
    // The codec has read its file: nothing left behind in /tmp.
    std::fs::remove_dir_all(&dir).ok();
    let model = seed_model();
    let topics = Topics::default();
    for dir in golden_dirs() {
        let store = MemoryStore::new();
        let mut p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
        p.formats.avro_input = Some(codec.clone());
        p.formats.avro_output = Some(codec.clone());
        let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
        let mut all = messages("lead-events", &text.lines().collect::<Vec<_>>());
        for m in &mut all {
            let json: serde_json::Value = serde_json::from_slice(m.payload.as_deref().expect("payload")).expect("json");
            m.payload = Some(codec.encode_event(&json, 1).unwrap_or_else(|e| panic!("{}: {e}", dir.display())));
        }
        let mut step = p.process(0, &all, 0).expect("process");
        store.write(&step.write).expect("commit");
        if let Ok(until) = std::fs::read_to_string(dir.join("until")) {
            step.outputs.extend(p.tick(0, parse_rfc3339(until.trim()).expect("until")).expect("tick").outputs);
        }
        let got: Vec<serde_json::Value> = step
            .outputs
            .iter()
            .filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
            .map(|o| {
                let bytes = o.value.as_deref().expect("value");
                let id = if o.topic == OutputTopic::Transitions { 12 } else { 11 };
                assert_eq!(&bytes[..5], &[0, 0, 0, 0, id], "Confluent framing with the configured id");
                codec.decode_output(bytes, o.topic == OutputTopic::Transitions).expect("avro output")
            })
            .collect();
        let expected = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected");
        let expected: Vec<serde_json::Value> =
            expected.lines().map(|l| serde_json::from_str(l).expect("expected json")).collect();
        assert_eq!(got, expected, "{}", dir.display());
    }
}

const EVENTS: [&str; 4] = [
    r#"{"event_id":"a","lead_id":"L-1","type":"form_submit","timestamp":"2026-01-01T00:00:00Z","properties":{"form":"demo"}}"#,
    r#"{"event_id":"b","lead_id":"L-2","type":"search","timestamp":"2026-01-01T00:01:00Z","properties":{"term":"sso"}}"#,
    r#"{"event_id":"c","lead_id":"L-1","type":"form_submit","timestamp":"2026-01-01T00:02:00Z","properties":{"form":"trial"}}"#,
    r#"{"event_id":"d","lead_id":"L-1","type":"email_click","timestamp":"2026-01-01T00:03:00Z","properties":{"link_url":"/x"}}"#,
];

#[test]
fn a_crash_before_the_commit_replays_the_same_records_and_applies_nothing_twice() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::WallClock);
    let batch = messages("lead-events", &EVENTS);
    let now = parse_rfc3339("2026-01-01T00:05:00Z").expect("time");

    let first = p.process(0, &batch[..2], now).expect("process");
    store.write(&first.write).expect("commit");
    // The second batch is published, then the process dies before committing it.
    let lost = p.process(0, &batch[2..], now).expect("process");
    let replayed = p.process(0, &batch[2..], now).expect("process after restart");
    assert_eq!(published(&lost), published(&replayed), "same records, same versions");
    assert_eq!(lost.write, replayed.write);
    store.write(&replayed.write).expect("commit");

    // A consumer that re-delivers from an older offset changes nothing.
    let again = p.process(0, &batch, now).expect("process");
    assert_eq!(again.stats.skipped, 4);
    assert!(published(&again).is_empty());
    // ... even when it re-delivers in several batches: committing a batch of
    // skipped messages must not move the checkpoint back.
    let older = p.process(0, &batch[..2], now).expect("process");
    store.write(&older.write).expect("commit");
    let rest = p.process(0, &batch[2..], now).expect("process");
    assert_eq!(rest.stats.skipped, 2, "still behind the checkpoint");
    assert!(published(&rest).is_empty());

    let last = published(&replayed).into_iter().rfind(|r| r.contains("score_change")).expect("a change");
    assert!(last.contains(r#""score":33.0"#), "15 + 15 + 3 applied once each: {last}");
    let cp = store.checkpoint(0).expect("checkpoint").expect("exists");
    assert_eq!(cp.next_offsets.get("lead-events"), Some(&4));
}

#[test]
fn bad_input_becomes_dead_letters_and_good_input_around_it_is_processed() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::WallClock);
    let mut batch = messages(
        "page-views",
        &[
            r#"{"event_id":"1","timestamp":"2026-01-01T00:00:00Z","properties":{"url":"/pricing"}}"#,
            "{not json",
            r#"{"event_id":"2","lead_id":"L-9","timestamp":"2026-01-01T00:00:01Z","properties":{"url":"/"}}"#,
            r#"{"event_id":"3","timestamp":"2026-01-01T00:00:02Z","properties":{}}"#,
        ],
    );
    for m in &mut batch {
        m.key = Some(b"L-7".to_vec());
    }
    let now = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let step = p.process(0, &batch, now).expect("process");
    let dead: Vec<&OutputRecord> = step.outputs.iter().filter(|o| o.topic == OutputTopic::DeadLetters).collect();
    assert_eq!(dead.len(), 3);
    let header = |o: &OutputRecord, name: &str| {
        String::from_utf8(o.headers.iter().find(|(k, _)| *k == name).expect(name).1.clone()).expect("UTF-8")
    };
    assert_eq!(
        dead.iter().map(|d| header(d, headers::ERROR_CLASS)).collect::<Vec<_>>(),
        ["not_json", "lead_id_mismatch", "missing_field"]
    );
    assert_eq!(header(dead[0], headers::SOURCE_TOPIC), "page-views");
    assert_eq!(header(dead[0], headers::SOURCE_PARTITION), "0");
    assert_eq!(header(dead[0], headers::SOURCE_OFFSET), "1");
    assert!(header(dead[2], headers::ERROR_MESSAGE).contains("properties.url is required"));
    assert_eq!(dead[0].value.as_deref(), Some(&b"{not json"[..]), "the original bytes");
    assert_eq!(dead[0].key.as_deref(), Some(&b"L-7"[..]), "the original key");
    assert_eq!(step.stats.applied, 1);
    assert_eq!(step.stats.dead_lettered, 3);
    assert!(published(&step)[0].contains(r#""lead_id":"L-7""#));
}

#[test]
fn wall_clock_timers_fire_with_no_input_at_the_exact_instant() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::WallClock);
    let t0 = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let step = p.process(0, &messages("lead-events", &EVENTS[..1]), t0).expect("process");
    store.write(&step.write).expect("commit");
    assert!(p.tick(0, t0 + 59 * DAY).expect("tick").outputs.iter().all(|o| o.topic == OutputTopic::Changelog));
    let step = p.tick(0, t0 + 61 * DAY).expect("tick");
    let records = published(&step);
    assert!(
        records.iter().any(|r| r.contains(
            r#""segment":"inactive-60d","transition":"entered","timestamp":"2026-03-02T00:00:00.000Z","cause":"timer""#
        )),
        "{records:?}"
    );
    store.write(&step.write).expect("commit");
    assert!(published(&p.tick(0, t0 + 61 * DAY).expect("tick")).is_empty(), "fired once");
}

#[test]
fn stored_timers_beyond_one_scan_page_all_fire_once_in_order() {
    // 2500 leads (more than two pages of the timer scan), each with an
    // inactivity timer one minute apart; one later event moves event time past
    // all of them.
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let t0 = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let leads = 2500;
    let lines: Vec<String> = (0..leads)
        .map(|i| {
            let at = leadscore_core::time::format_rfc3339(t0 + i * 60_000);
            format!(r#"{{"event_id":"s{i}","lead_id":"L-{i:05}","type":"search","timestamp":"{at}","properties":{{"term":"x"}}}}"#)
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    store.write(&p.process(0, &messages("lead-events", &refs), 0).expect("process").write).expect("commit");
    let mut late = messages(
        "lead-events",
        &[r#"{"event_id":"z","lead_id":"L-z","type":"email_open","timestamp":"2026-06-01T00:00:00Z"}"#],
    );
    late[0].offset = leads;
    let step = p.process(0, &late, 0).expect("process");
    let fired: Vec<String> = published(&step)
        .into_iter()
        .filter(|r| r.contains(r#""segment":"inactive-60d","transition":"entered""#))
        .map(|r| r.split(r#""lead_id":""#).nth(1).expect("lead").split('"').next().expect("id").to_string())
        .collect();
    let expected: Vec<String> = (0..leads).map(|i| format!("L-{i:05}")).collect();
    assert_eq!(fired, expected, "every lead's timer, once, in due order");
}

#[test]
fn a_stored_timer_of_a_lead_with_a_later_event_in_the_batch_fires_in_order() {
    // L-a's inactivity timer is due on 2026-03-02; in the next batch an event of
    // L-b on 2026-03-03 comes before L-a's own event on 2026-03-04: L-a's timer
    // must fire before L-b's event, as the offline scorer does.
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let first = messages(
        "lead-events",
        &[
            r#"{"event_id":"1","lead_id":"L-a","type":"search","timestamp":"2026-01-01T00:00:00Z","properties":{"term":"x"}}"#,
        ],
    );
    store.write(&p.process(0, &first, 0).expect("process").write).expect("commit");
    let mut second = messages(
        "lead-events",
        &[
            r#"{"event_id":"2","lead_id":"L-b","type":"search","timestamp":"2026-03-03T00:00:00Z","properties":{"term":"x"}}"#,
            r#"{"event_id":"3","lead_id":"L-a","type":"email_open","timestamp":"2026-03-04T00:00:00Z"}"#,
        ],
    );
    for (i, m) in second.iter_mut().enumerate() {
        m.offset = 1 + i as i64;
    }
    let step = p.process(0, &second, 0).expect("process");
    let records = published(&step);
    let timer =
        records.iter().position(|r| r.contains(r#""lead_id":"L-a""#) && r.contains("inactive-60d")).expect("fired");
    let b = records.iter().position(|r| r.contains(r#""lead_id":"L-b""#)).expect("L-b's records");
    assert!(timer < b, "{records:#?}");
    assert!(records[timer].contains(r#""timestamp":"2026-03-02T00:00:00.000Z","cause":"timer""#));
}

#[test]
fn partition_counts_kept_with_the_checkpoint_equal_a_scan_of_the_states() {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-events.jsonl"))
            .expect("sample");
    let mut lines: Vec<String> = sample.lines().map(String::from).collect();
    // An erase, so that leads also leave the counts.
    lines.insert(
        2500,
        r#"{"event_id":"x-1","lead_id":"L-0000003","type":"erase","timestamp":"2026-04-20T00:00:00Z"}"#.into(),
    );
    let all = messages("lead-events", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    for batch in all.chunks(97) {
        let step = p.process(0, batch, 0).expect("process");
        store.write(&step.write).expect("commit");
    }
    let step = p.tick(0, parse_rfc3339("2026-09-01T00:00:00Z").expect("time")).expect("tick");
    store.write(&step.write).expect("commit");

    let counts = store.checkpoint(0).expect("read").expect("checkpoint").counts;
    let mut leads: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["lead_id"].to_string())
        .collect();
    leads.sort();
    leads.dedup();
    let names: Vec<String> = leads.iter().map(|l| l.trim_matches('"').to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let states: Vec<_> = store
        .get_states(0, &refs)
        .expect("states")
        .into_iter()
        .flatten()
        .map(|b| leadscore_store::decode_state(&b, &model).expect("state"))
        .collect();
    assert_eq!(counts.leads, states.len() as i64);
    assert_eq!(counts.leads, store.lead_count() as i64);
    assert_eq!(counts.timers, states.iter().filter(|s| s.next_due.is_some()).count() as i64);
    for (i, segment) in model.segments.iter().enumerate() {
        let members = states.iter().filter(|s| s.member >> i & 1 == 1).count() as i64;
        assert_eq!(counts.members.get(i).copied().unwrap_or(0), members, "segment {}", segment.name);
    }
    assert!(counts.members.iter().any(|&m| m > 0));
}

#[test]
fn co_partitioned_topics_are_merged_by_event_time() {
    let model = seed_model();
    let topics = Topics::default();
    let views = [
        r#"{"event_id":"v1","lead_id":"L-1","timestamp":"2026-01-01T00:00:00Z","properties":{"url":"https://example.com/pricing"}}"#,
        r#"{"event_id":"v2","lead_id":"L-1","timestamp":"2026-01-01T00:02:00Z","properties":{"url":"https://example.com/docs"}}"#,
    ];
    let forms = [
        r#"{"event_id":"f1","lead_id":"L-1","type":"form_submit","timestamp":"2026-01-01T00:01:00Z","properties":{"form":"demo"}}"#,
        r#"{"event_id":"f2","lead_id":"L-1","type":"form_submit","timestamp":"2026-01-01T00:03:00Z","properties":{"form":"trial"}}"#,
    ];
    // As fetched: all page views first, then the other topic.
    let mut fetched = messages("page-views", &views);
    fetched.extend(messages("lead-events", &forms));
    let store = MemoryStore::new();
    let merged = Processor::new(&model, &store, &topics, TimeMode::EventTime).process(0, &fetched, 0).expect("process");

    // The same events on one topic in event-time order.
    let typed: Vec<String> = views.iter().map(|v| v.replacen('{', r#"{"type":"page_view","#, 1)).collect();
    let in_order = [typed[0].as_str(), forms[0], typed[1].as_str(), forms[1]];
    let store = MemoryStore::new();
    let reference = Processor::new(&model, &store, &topics, TimeMode::EventTime)
        .process(0, &messages("lead-events", &in_order), 0)
        .expect("process");
    assert_eq!(published(&merged), published(&reference));
    let events: Vec<String> = published(&merged)
        .iter()
        .filter(|r| r.contains("score_change"))
        .map(|r| serde_json::from_str::<serde_json::Value>(r).expect("json")["event_id"].to_string())
        .collect();
    assert_eq!(events, [r#""v1""#, r#""f1""#, r#""v2""#, r#""f2""#]);
}

/// The offline scorer's cache of decoded states changes nothing: the same
/// stream through steps with a cache (written back whenever it holds more
/// than `capacity` leads) and without one publishes the same records and
/// leaves the same states.
#[test]
fn a_state_cache_publishes_and_stores_exactly_what_the_store_alone_does() {
    use leadscore_pipeline::processor::StateCache;
    let model = seed_model();
    let topics = Topics::default();
    let mut g = leadscore_synth::Generator::new(leadscore_synth::Settings {
        seed: 9,
        leads: 60,
        step: 3 * 3_600_000,
        erase_share: 0.01,
        ..Default::default()
    });
    let mut lines: Vec<String> = Vec::new();
    for i in 0..3000 {
        let mut b = Vec::new();
        leadscore_codec::encode_event_json(&mut b, &g.next_event());
        lines.push(String::from_utf8(b).expect("utf-8"));
        // Redeliveries load a lead without changing it.
        if i % 7 == 6 {
            lines.push(lines[lines.len().saturating_sub(100)].clone());
        }
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let all = messages("lead-events", &refs);
    let run = |capacity: Option<usize>| {
        let store = MemoryStore::new();
        let cache = capacity.map(StateCache::new);
        let p = Processor {
            changelog_per_step: false,
            cache: cache.as_ref(),
            ..Processor::new(&model, &store, &topics, TimeMode::EventTime)
        };
        let mut out = Vec::new();
        for chunk in all.chunks(37) {
            let step = p.process(0, chunk, 0).expect("a step");
            out.extend(published(&step));
            store.write(&step.write).expect("commit");
            if let Some(c) = cache.as_ref().filter(|c| c.full()) {
                let mut batch = leadscore_store::WriteBatch::default();
                c.write_back(&model, &mut batch);
                store.write(&batch).expect("write back");
            }
        }
        let step = p.tick(0, i64::MAX / 4).expect("the last timers");
        out.extend(published(&step));
        store.write(&step.write).expect("commit");
        if let Some(c) = &cache {
            let mut batch = leadscore_store::WriteBatch::default();
            c.write_back(&model, &mut batch);
            store.write(&batch).expect("write back");
        }
        (out, store.leads(0), store.checkpoint(0).expect("read"))
    };
    let plain = run(None);
    assert!(plain.0.len() > 1000 && plain.1.len() > 20);
    for capacity in [0, 5, 1000] {
        assert_eq!(run(Some(capacity)), plain, "a cache of {capacity}");
    }
}
