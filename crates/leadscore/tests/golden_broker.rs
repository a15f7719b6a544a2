//! Every golden scenario (`tests/golden/*`) end to end through a broker: the
//! events are produced to librdkafka's in-process mock broker, the service loop
//! consumes them into RocksDB, and the records it publishes equal what
//! `leadscore score` prints for the same input, in JSON and in Avro (Confluent
//! wire format in and out).
//!
//! All scenarios go through one run: scenario *i* on input partition *i*, so
//! that each has its own event-time watermark, with its lead ids prefixed by
//! the scenario (the scenarios reuse lead ids; a lead's state is per
//! partition, but output topics are partitioned by lead id). Records are
//! compared per lead and output topic, in order: the order a lead's consumers
//! see. Every JSON record published is valid under its JSON Schema
//! (`schemas/json/`), and every Avro one under its Avro schema.

use leadscore_codec::{AvroCodec, AvroSettings};
use leadscore_pipeline::Topics;
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_telemetry::Counters;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

/// Published records by (output topic, lead id), in publication order.
type ByLead = BTreeMap<(String, String), Vec<Value>>;

/// Each scenario's event lines, lead ids prefixed with the scenario's number.
fn scenarios() -> Vec<(PathBuf, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).expect("golden").map(|e| e.expect("entry").path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
            let lines = text
                .lines()
                .map(|line| match serde_json::from_str::<Value>(line) {
                    Ok(mut v) if v["lead_id"].is_string() => {
                        v["lead_id"] = format!("g{i:02}-{}", v["lead_id"].as_str().expect("string")).into();
                        v.to_string()
                    }
                    // Bad input stays as it is: it is dead-lettered either way.
                    _ => line.to_string(),
                })
                .collect();
            (dir, lines)
        })
        .collect()
}

/// What `leadscore score` prints for each scenario (no `--until`: a stream
/// has no end at which to fire the last timers).
fn reference(scenarios: &[(PathBuf, Vec<String>)]) -> ByLead {
    let dir = tempfile::tempdir().expect("dir");
    let mut out = ByLead::new();
    let t = Topics::default();
    for (i, (_, lines)) in scenarios.iter().enumerate() {
        let input = dir.path().join(format!("{i}.jsonl"));
        std::fs::write(&input, lines.join("\n") + "\n").expect("input");
        let score = support::bin().args(["score", "--input"]).arg(&input).output().expect("leadscore score");
        assert!(score.status.success(), "{}", String::from_utf8_lossy(&score.stderr));
        for line in String::from_utf8(score.stdout).expect("utf-8").lines() {
            let v: Value = serde_json::from_str(line).expect("json");
            let topic = if v["kind"] == "segment_transition" { &t.transitions } else { &t.score_changes };
            out.entry((topic.clone(), v["lead_id"].as_str().expect("lead").to_string())).or_default().push(v);
        }
    }
    out
}

fn avro_codec(dir: &Path) -> Arc<AvroCodec> {
    std::fs::write(dir.join("lead-event.avsc"), leadscore_codec::avro::LEAD_EVENT_AVSC).expect("schema");
    Arc::new(
        AvroCodec::new(AvroSettings {
            schema_files: [(1, dir.join("lead-event.avsc"))].into_iter().collect(),
            registry: None,
            score_change_id: 2,
            transition_id: 3,
        })
        .expect("codec"),
    )
}

/// Produces the scenarios (scenario i to partition i), runs the loop until it
/// has consumed them all, and reads back what it published.
fn through_the_broker(scenarios: &[(PathBuf, Vec<String>)], avro: Option<Arc<AvroCodec>>, want: usize) -> ByLead {
    let t = Topics::default();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let partitions = scenarios.len() as i32;
    for topic in ["lead-events", &t.score_changes, &t.transitions, &t.dead_letters, &t.changelog] {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    let mut total = 0u64;
    for (i, (_, lines)) in scenarios.iter().enumerate() {
        for line in lines {
            let payload = match (&avro, serde_json::from_str::<Value>(line)) {
                (Some(codec), Ok(v)) => codec.encode_event(&v, 1).unwrap_or_else(|_| line.clone().into_bytes()),
                _ => line.clone().into_bytes(),
            };
            let record = BaseRecord::<str, [u8]>::to("lead-events").payload(&payload).partition(i as i32);
            producer.send(record).map_err(|(e, _)| e).expect("send");
            total += 1;
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let (kafka, mut s) = support::settings(&bootstrap, "golden");
    s.topics.inputs = [("lead-events".to_string(), None)].into_iter().collect();
    s.formats.avro_input = avro.clone();
    s.formats.avro_output = avro.clone();
    s.dead_letter_max_share = 1.0;
    let store_dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(store_dir.path(), &RocksSettings::default()).expect("store");
    let telemetry = support::run_until(&kafka, &s, &store, total);
    assert_eq!(Counters::get(&telemetry.counters.messages), total, "every event consumed");

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "golden-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[&t.score_changes, &t.transitions]).expect("subscribe");
    let mut out = ByLead::new();
    let (mut n, deadline) = (0, Instant::now() + Duration::from_secs(60));
    while n < want && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        let bytes = m.payload().unwrap_or_default();
        let v: Value = match &avro {
            Some(codec) => codec.decode_output(bytes, m.topic() == t.transitions).expect("an Avro output"),
            None => serde_json::from_slice(bytes).expect("a JSON output"),
        };
        let lead = v["lead_id"].as_str().expect("lead").to_string();
        out.entry((m.topic().to_string(), lead)).or_default().push(v);
        n += 1;
    }
    out
}

fn assert_same(got: &ByLead, want: &ByLead, format: &str) {
    for (key, records) in want {
        assert_eq!(got.get(key), Some(records), "{format}: records of {key:?}");
    }
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "{format}: records the offline scorer does not print: {extra:?}");
}

#[test]
fn every_golden_scenario_through_the_broker_publishes_what_the_offline_scorer_prints() {
    let scenarios = scenarios();
    assert!(scenarios.len() >= 14, "the golden scenarios are found");
    let want = reference(&scenarios);
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total > 100, "the scenarios publish something");

    let json = through_the_broker(&scenarios, None, total);
    assert_same(&json, &want, "JSON");
    let schema = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/json").join(name);
        let text: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        jsonschema::options().should_validate_formats(true).build(&text).expect("a JSON Schema")
    };
    let (changes, transitions) = (schema("score-change.schema.json"), schema("segment-transition.schema.json"));
    let t = Topics::default();
    for ((topic, _), records) in &json {
        let validator = if *topic == t.transitions { &transitions } else { &changes };
        for r in records {
            let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "published on {topic}: {r}: {errors:?}");
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    assert_same(&through_the_broker(&scenarios, Some(avro_codec(dir.path())), total), &want, "Avro");
}
