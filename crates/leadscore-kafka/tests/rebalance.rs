//! State follows its partitions: two instances in one consumer group split the
//! partitions; when one stops, the survivor restores the stopped one's
//! partitions from the changelog and carries on. Every record either instance
//! published equals the single-instance reference (duplicates of an
//! at-least-once handover are byte-identical), and nothing is missing.

use leadscore_config::seed_model;
use leadscore_kafka::{run, KafkaSettings};
use leadscore_pipeline::ports::FixedClock;
use leadscore_pipeline::{InputMessage, OutputTopic, Processor, RuntimeSettings, TimeMode, Topics};
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_telemetry::{Counters, Telemetry};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;
const TOPIC: &str = "lead-events";

/// The sample's events with the partition each goes to (by lead id).
fn input() -> Vec<(u32, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-events.jsonl");
    std::fs::read_to_string(path)
        .expect("sample")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let lead = v["lead_id"].as_str().expect("lead id");
            let p = lead.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % PARTITIONS;
            (p, l.to_string())
        })
        .collect()
}

/// Output records identified by (topic, lead, version): what a consumer
/// deduplicating an at-least-once stream keeps.
type Records = BTreeMap<(String, String, u64), String>;

fn identity(topic: &str, json: &str) -> (String, String, u64) {
    let v: serde_json::Value = serde_json::from_str(json).expect("output json");
    (topic.to_string(), v["lead_id"].as_str().expect("lead").into(), v["version"].as_u64().expect("version"))
}

/// What one processor publishes for each partition's messages.
fn reference(input: &[(u32, String)]) -> Records {
    let model = seed_model();
    let topics = settings("unused").1.topics;
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let mut out = Records::new();
    for partition in 0..PARTITIONS {
        let messages: Vec<InputMessage> = input
            .iter()
            .filter(|(p, _)| *p == partition)
            .enumerate()
            .map(|(i, (_, v))| InputMessage {
                topic: TOPIC.into(),
                partition,
                offset: i as i64,
                key: None,
                payload: Some(v.as_bytes().to_vec()),
                timestamp: None,
            })
            .collect();
        for o in p.process(partition, &messages, 0).expect("reference").outputs {
            let topic = match o.topic {
                OutputTopic::ScoreChanges => &topics.score_changes,
                OutputTopic::Transitions => &topics.transitions,
                _ => continue,
            };
            let json = String::from_utf8(o.value.expect("value")).expect("utf8");
            out.insert(identity(topic, &json), json);
        }
    }
    out
}

fn settings(bootstrap: &str) -> (KafkaSettings, RuntimeSettings) {
    let mut kafka = KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        group_id: "leadscore-rebalance-test".into(),
        ..Default::default()
    };
    // A stopped member is noticed within seconds rather than the default 45.
    kafka.librdkafka.insert("session.timeout.ms".into(), "6000".into());
    kafka.librdkafka.insert("heartbeat.interval.ms".into(), "500".into());
    let runtime = RuntimeSettings {
        time_mode: TimeMode::EventTime,
        topics: Topics { inputs: [(TOPIC.to_string(), None)].into_iter().collect(), ..Topics::default() },
        max_batch: 200, // many steps, so a handover lands mid-stream
        // Each batch's partition steps side by side, however small the batch,
        // as the service runs them on a machine with cores to spare.
        step_threads: 2,
        parallel_min_messages: 0,
        ..RuntimeSettings::default()
    };
    (kafka, runtime)
}

fn produce(bootstrap: &str, input: &[(u32, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for (p, v) in input {
        producer
            .send(BaseRecord::<str, str>::to(TOPIC).payload(v).partition(*p as i32))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Every output record published, checking that repeats are identical.
fn read_outputs(bootstrap: &str, at_least: usize) -> Records {
    let t = settings(bootstrap).1.topics;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    consumer.subscribe(&[&t.score_changes, &t.transitions]).expect("subscribe");
    let mut out = Records::new();
    let (deadline, mut idle_since) = (Instant::now() + Duration::from_secs(60), Instant::now());
    while Instant::now() < deadline && (out.len() < at_least || idle_since.elapsed() < Duration::from_secs(2)) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        idle_since = Instant::now();
        let json = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let id = identity(m.topic(), &json);
        if let Some(before) = out.get(&id) {
            assert_eq!(before, &json, "a repeated record differs from its first publication");
        }
        out.insert(id, json);
    }
    out
}

/// Rebalance callbacks that revoked partitions from an instance.
fn revoked(t: &Telemetry) -> u64 {
    t.metrics.rebalances.with_label_values(&["revoked"]).get()
}

/// Sets every flag when dropped: a failed assertion inside a thread scope
/// stops the instances, so that the scope ends and the test reports the
/// failure instead of waiting for them for ever.
struct StopAll<'a>(Vec<&'a AtomicBool>);

impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        for flag in &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The default assignor: eager rebalances, every partition revoked and
/// assigned again (each instance restores only the tail it lacks).
#[test]
fn a_survivor_restores_the_partitions_of_a_stopped_instance_from_the_changelog() {
    handover("range");
}

/// Incremental rebalances (a single input topic allows them): only the
/// stopped instance's partitions move.
#[test]
fn with_cooperative_sticky_only_the_moved_partitions_are_restored() {
    handover("cooperative-sticky");
}

fn handover(assignor: &str) {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let t = settings(&bootstrap).1.topics;
    for topic in [TOPIC, &t.score_changes, &t.transitions, &t.dead_letters, &t.changelog] {
        cluster.create_topic(topic, PARTITIONS as i32, 1).expect("topic");
    }
    let input = input();
    let expected = reference(&input);
    let per_partition = |p: u32| input.iter().filter(|(q, _)| *q == p).count() as i64;
    let half = input.len() / 2;

    let model = seed_model();
    let (mut kafka, s) = settings(&bootstrap);
    kafka.librdkafka.insert("partition.assignment.strategy".into(), assignor.into());
    let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let store_a = RocksStore::open(dir_a.path(), &RocksSettings::default()).expect("store a");
    let store_b = RocksStore::open(dir_b.path(), &RocksSettings::default()).expect("store b");
    let (telemetry_a, telemetry_b) = (Telemetry::default(), Telemetry::default());
    let (stop_a, stop_b) = (AtomicBool::new(false), AtomicBool::new(false));
    let clock = FixedClock::at(0);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&kafka, &s, &model, &store_a, &clock, &stop_a, &telemetry_a));
        let b = scope.spawn(|| run(&kafka, &s, &model, &store_b, &clock, &stop_b, &telemetry_b));
        let _stop_on_failure = StopAll(vec![&stop_a, &stop_b]);
        let owned = |t: &Telemetry| t.metrics.assigned_partitions.get();
        // Both own some as soon as the first rebalance hands out partitions, but
        // a gauge can lag its instance's next assignment (seen in CI: 3 of 4 at
        // that moment), so wait until every partition is owned; one lost for
        // good times out here.
        wait_for("both instances to own partitions, every one of them", Duration::from_secs(60), || {
            owned(&telemetry_a) > 0
                && owned(&telemetry_b) > 0
                && owned(&telemetry_a) + owned(&telemetry_b) == PARTITIONS as i64
        });
        produce(&bootstrap, &input[..half]);
        let messages = |t: &Telemetry| Counters::get(&t.counters.messages);
        wait_for("the first half to be processed", Duration::from_secs(60), || {
            messages(&telemetry_a) + messages(&telemetry_b) >= half as u64
        });
        let processed_by_a = Counters::get(&telemetry_a.counters.applied);
        let revoked_before = revoked(&telemetry_b);
        stop_a.store(true, Ordering::Relaxed);
        a.join().expect("no panic").expect("a stops cleanly");
        assert!(processed_by_a > 0, "instance a took part");

        produce(&bootstrap, &input[half..]);
        wait_for("the survivor to process every partition to the end", Duration::from_secs(90), || {
            (0..PARTITIONS).all(|p| {
                store_b.checkpoint(p).ok().flatten().and_then(|c| c.next_offsets.get(TOPIC).copied())
                    == Some(per_partition(p))
            })
        });
        let revoked_during_handover = revoked(&telemetry_b) - revoked_before;
        if assignor == "cooperative-sticky" {
            assert_eq!(revoked_during_handover, 0, "an incremental rebalance takes nothing from the survivor");
        } else {
            assert!(revoked_during_handover > 0, "an eager rebalance revokes everything first");
        }
        stop_b.store(true, Ordering::Relaxed);
        b.join().expect("no panic").expect("b stops cleanly");
    });
    assert!(Counters::get(&telemetry_b.counters.restores) > 0, "the survivor restored partitions from the changelog");
    assert!(telemetry_b.metrics.restore_records.get() > 0);

    let got = read_outputs(&bootstrap, expected.len());
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).take(3).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
    for (id, json) in &expected {
        assert_eq!(&got[id], json, "record {id:?}");
    }
}
