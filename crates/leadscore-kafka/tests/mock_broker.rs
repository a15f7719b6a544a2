//! The loop end to end on librdkafka's in-process mock broker, with real rdkafka
//! clients and RocksDB in a temporary directory: it publishes exactly the records
//! the processing step computes for the same input (itself equal to the offline
//! scorer's), sends bad input to the dead-letter topic with its headers, and
//! resumes after a restart from the store's checkpoint without applying anything
//! twice.

use leadscore_config::seed_model;
use leadscore_kafka::{run, KafkaSettings};
use leadscore_pipeline::ports::FixedClock;
use leadscore_pipeline::{
    Guarantee, InputMessage, OutputTopic, Processor, RunError, RuntimeSettings, TimeMode, Topics,
};
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_telemetry::{Counters, Telemetry};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn sample() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-events.jsonl");
    std::fs::read_to_string(path).expect("sample").lines().map(String::from).collect()
}

/// The input: the sample's first `n` events with three bad messages among them.
fn input(n: usize) -> Vec<(Option<String>, String)> {
    let mut v: Vec<(Option<String>, String)> = sample().into_iter().take(n).map(|l| (None, l)).collect();
    v.insert(5, (Some("L-x".into()), "not json".into()));
    v.insert(50, (None, r#"{"event_id":"z","lead_id":"L-z","type":"fax","timestamp":1}"#.into()));
    v.insert(100, (Some("L-a".into()), r#"{"event_id":"y","lead_id":"L-b","type":"erase","timestamp":1}"#.into()));
    v
}

/// What the processing step publishes for the input, per output topic.
fn reference(input: &[(Option<String>, String)]) -> HashMap<OutputTopic, Vec<String>> {
    let model = seed_model();
    let topics = Topics::default();
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let messages: Vec<InputMessage> = input
        .iter()
        .enumerate()
        .map(|(i, (k, v))| InputMessage {
            topic: "lead-events".into(),
            partition: 0,
            offset: i as i64,
            key: k.as_ref().map(|k| k.as_bytes().to_vec()),
            payload: Some(v.as_bytes().to_vec()),
            timestamp: None,
        })
        .collect();
    let step = p.process(0, &messages, 0).expect("reference");
    let mut out: HashMap<OutputTopic, Vec<String>> = HashMap::new();
    for o in step.outputs {
        if o.topic != OutputTopic::Changelog {
            out.entry(o.topic)
                .or_default()
                .push(String::from_utf8_lossy(o.value.as_deref().unwrap_or_default()).into());
        }
    }
    out
}

fn produce(bootstrap: &str, input: &[(Option<String>, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for (k, v) in input {
        let mut r = BaseRecord::<str, str>::to("lead-events").payload(v);
        if let Some(k) = k {
            r = r.key(k);
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Reads every output topic until `want` records arrived in total (or a timeout).
/// Published values by topic, and the headers of each dead letter.
type Published = (HashMap<OutputTopic, Vec<String>>, Vec<Vec<(String, String)>>);

fn read_outputs(bootstrap: &str, want: usize) -> Published {
    let topics = Topics::default();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    consumer.subscribe(&[&topics.score_changes, &topics.transitions, &topics.dead_letters]).expect("subscribe");
    let mut out: HashMap<OutputTopic, Vec<String>> = HashMap::new();
    let mut dlq_headers = Vec::new();
    let (mut got, deadline) = (0, Instant::now() + Duration::from_secs(60));
    while got < want && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let topic = match m.topic() {
            t if t == topics.score_changes => OutputTopic::ScoreChanges,
            t if t == topics.transitions => OutputTopic::Transitions,
            _ => {
                let h = m.headers().expect("dead letters have headers");
                dlq_headers.push(
                    h.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
                        .collect(),
                );
                OutputTopic::DeadLetters
            }
        };
        out.entry(topic).or_default().push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into());
        got += 1;
    }
    (out, dlq_headers)
}

/// Asserts equality, reporting the first difference compactly.
fn assert_same(got: Option<&Vec<String>>, want: Option<&Vec<String>>, what: &str) {
    let (g, w) = (got.cloned().unwrap_or_default(), want.cloned().unwrap_or_default());
    if g != w {
        let at = g.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
        panic!(
            "{what}: {} records published, {} expected; first difference at {at}:\n  got:  {:?}\n  want: {:?}",
            g.len(),
            w.len(),
            g.get(at),
            w.get(at)
        );
    }
}

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    for topic in ["lead-events", &t.score_changes, &t.transitions, &t.dead_letters, &t.changelog] {
        c.create_topic(topic, 1, 1).expect("topic");
    }
    c
}

/// The loop's settings: one input topic, event time.
struct Settings {
    kafka: KafkaSettings,
    runtime: RuntimeSettings,
}

fn settings(bootstrap: &str) -> Settings {
    let kafka = KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        group_id: "leadscore-test".into(),
        ..Default::default()
    };
    let runtime = RuntimeSettings {
        time_mode: TimeMode::EventTime,
        topics: Topics { inputs: [("lead-events".to_string(), None)].into_iter().collect(), ..Topics::default() },
        ..RuntimeSettings::default()
    };
    Settings { kafka, runtime }
}

/// Runs the loop once to its end (an error, or `stop`).
fn run_once(
    s: &Settings,
    store: &dyn leadscore_store::StateStore,
    stop: &AtomicBool,
    t: &Telemetry,
) -> Result<(), RunError> {
    run(&s.kafka, &s.runtime, &seed_model(), store, &FixedClock::at(0), stop, t)
}

/// Runs the loop until it consumed `messages` messages.
fn run_until(bootstrap: &str, store: &RocksStore, messages: u64) -> Telemetry {
    run_with(settings(bootstrap), store, messages)
}

fn run_with(s: Settings, store: &RocksStore, messages: u64) -> Telemetry {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let telemetry = Telemetry::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| run_once(&s, store, &stop, &telemetry));
        let deadline = Instant::now() + Duration::from_secs(60);
        let consumed = || Counters::get(&telemetry.counters.messages);
        while consumed() < messages && Instant::now() < deadline && !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("no panic").expect("the loop ends cleanly");
    });
    telemetry
}

#[test]
fn publishes_exactly_the_reference_records_and_dead_letters_bad_input() {
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let input = input(1500);
    produce(&bootstrap, &input);
    let expected = reference(&input);
    let total: usize = expected.values().map(Vec::len).sum();

    let dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
    let telemetry = run_until(&bootstrap, &store, input.len() as u64);
    assert_eq!(Counters::get(&telemetry.counters.dead_lettered), 3);

    let (got, dlq) = read_outputs(&bootstrap, total);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions, OutputTopic::DeadLetters] {
        assert_same(got.get(&topic), expected.get(&topic), &format!("{topic:?}"));
    }
    let classes: Vec<&str> =
        dlq.iter().map(|h| h.iter().find(|(k, _)| k == "leadscore.error.class").expect("class").1.as_str()).collect();
    assert_eq!(classes, ["not_json", "unknown_kind", "lead_id_mismatch"]);
    assert!(dlq[0].contains(&("leadscore.source.offset".to_string(), "5".to_string())));
}

#[test]
fn a_restart_resumes_from_the_store_checkpoint_and_applies_nothing_twice() {
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let input = input(1200);
    let expected = reference(&input);
    let total: usize = expected.values().map(Vec::len).sum();
    let dir = tempfile::tempdir().expect("dir");

    produce(&bootstrap, &input[..600]);
    {
        let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
        run_until(&bootstrap, &store, 600);
    }
    produce(&bootstrap, &input[600..]);
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("reopened store");
    let rest = (input.len() - 600) as u64;
    let c = run_until(&bootstrap, &store, rest).counters;
    assert_eq!(Counters::get(&c.messages), rest, "only the messages after the checkpoint are read");
    assert_eq!(Counters::get(&c.skipped), 0);
    assert_eq!(Counters::get(&c.applied) + Counters::get(&c.dead_lettered), rest);

    let (got, _) = read_outputs(&bootstrap, total);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions] {
        assert_same(got.get(&topic), expected.get(&topic), &format!("{topic:?}"));
    }
    let cp = store.checkpoint(0).expect("checkpoint").expect("exists");
    assert_eq!(cp.next_offsets.get("lead-events"), Some(&(input.len() as i64)));
}

#[test]
fn avro_in_and_out_publishes_the_reference_records() {
    use leadscore_codec::{AvroCodec, AvroSettings};
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("lead-event.avsc"), leadscore_codec::avro::LEAD_EVENT_AVSC).expect("schema");
    let codec = std::sync::Arc::new(
        AvroCodec::new(AvroSettings {
            schema_files: [(1, dir.path().join("lead-event.avsc"))].into_iter().collect(),
            registry: None,
            score_change_id: 2,
            transition_id: 3,
        })
        .expect("codec"),
    );
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let json_input: Vec<(Option<String>, String)> = sample().into_iter().take(400).map(|l| (None, l)).collect();
    let expected = reference(&json_input);
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    for (i, (_, line)) in json_input.iter().enumerate() {
        let avro = codec.encode_event(&serde_json::from_str(line).expect("json"), 1).expect("avro");
        producer.send(BaseRecord::<str, [u8]>::to("lead-events").payload(&avro)).map_err(|(e, _)| e).expect("send");
        if i == 10 {
            // JSON on an Avro topic: a dead letter, and processing goes on.
            producer.send(BaseRecord::<str, str>::to("lead-events").payload(line)).map_err(|(e, _)| e).expect("send");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let store_dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(store_dir.path(), &RocksSettings::default()).expect("store");
    let mut s = settings(&bootstrap);
    s.runtime.formats.avro_input = Some(codec.clone());
    s.runtime.formats.avro_output = Some(codec.clone());
    let model = seed_model();
    let telemetry = run_with(s, &store, 401);
    assert_eq!(Counters::get(&telemetry.counters.dead_lettered), 1);

    let t = Topics::default();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "avro-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[&t.score_changes, &t.transitions, &t.dead_letters]).expect("subscribe");
    let want: usize = expected.values().map(Vec::len).sum::<usize>() + 1;
    let (mut got, mut dead): (HashMap<OutputTopic, Vec<serde_json::Value>>, Vec<String>) = Default::default();
    let (mut n, deadline) = (0, Instant::now() + Duration::from_secs(60));
    while n < want && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        n += 1;
        let bytes = m.payload().unwrap_or_default();
        let topic = m.topic();
        if topic == t.dead_letters {
            dead.push(String::from_utf8_lossy(bytes).into_owned());
            continue;
        }
        let transition = topic == t.transitions;
        let topic = if transition { OutputTopic::Transitions } else { OutputTopic::ScoreChanges };
        got.entry(topic).or_default().push(codec.decode_output(bytes, transition).expect("an Avro output"));
    }
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions] {
        let want: Vec<serde_json::Value> = expected
            .get(&topic)
            .map(|v| v.iter().map(|j| serde_json::from_str(j).expect("json")).collect())
            .unwrap_or_default();
        assert_eq!(got.get(&topic).cloned().unwrap_or_default(), want, "{topic:?}");
    }
    assert_eq!(dead, [json_input[10].1.clone()], "the original bytes in the dead-letter topic");

    // The admin server's history renders the contract's JSON even though
    // Avro was published.
    let h = &telemetry.history;
    let last = &expected[&OutputTopic::ScoreChanges].last().expect("a score change");
    let lead =
        serde_json::from_str::<serde_json::Value>(last).expect("json")["lead_id"].as_str().expect("lead").to_string();
    let recent = h.score_changes_of(&lead).last().map(|r| r.to_json(&model));
    assert_eq!(recent.as_ref(), Some(*last), "recent score changes of {lead}");
    let transition = expected[&OutputTopic::Transitions].last().expect("a transition");
    let recent: Vec<String> = h.recent_transitions(1000).iter().map(|r| r.to_json(&model)).collect();
    assert!(recent.contains(transition), "recent transitions");
    let mut entered: std::collections::BTreeMap<String, u64> = Default::default();
    for t in &expected[&OutputTopic::Transitions] {
        let v: serde_json::Value = serde_json::from_str(t).expect("json");
        if v["transition"] == "entered" {
            *entered.entry(v["segment"].as_str().expect("segment").to_string()).or_default() += 1;
        }
    }
    let names: Vec<(String, u64)> =
        h.entered().into_iter().map(|(i, n)| (model.segments[i as usize].name.clone(), n)).collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, entered.into_iter().collect::<Vec<_>>(), "entries per segment");
}

/// Exactly-once mode end to end, as far as the mock broker can show it: every
/// step is a transaction (begin, outputs and changelog, input offsets, commit),
/// and across a restart each record is published once.
#[test]
fn exactly_once_a_read_committed_reader_sees_every_record_once_across_a_restart() {
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let input = input(1200);
    let expected = reference(&input);
    let total: usize = expected.values().map(Vec::len).sum();
    let dir = tempfile::tempdir().expect("dir");
    let eos = || {
        let mut s = settings(&bootstrap);
        s.runtime.guarantee = Guarantee::ExactlyOnce;
        s.kafka.transactional_id = Some("leadscore-test-0".into());
        // A stopped member is noticed within seconds rather than the default 45.
        s.kafka.librdkafka.insert("session.timeout.ms".into(), "6000".into());
        s.kafka.librdkafka.insert("heartbeat.interval.ms".into(), "500".into());
        s
    };
    produce(&bootstrap, &input[..600]);
    {
        let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
        run_with(eos(), &store, 600);
    }
    produce(&bootstrap, &input[600..]);
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("reopened store");
    // librdkafka's mock broker accepts transactional offset commits but does
    // not store them: the restart re-reads from 0 and the local checkpoint
    // skips what was applied. A real broker resumes at 600.
    let c = run_with(eos(), &store, input.len() as u64).counters;
    assert_eq!(Counters::get(&c.skipped), 600);

    let (got, dlq) = read_outputs(&bootstrap, total);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions] {
        assert_same(got.get(&topic), expected.get(&topic), &format!("{topic:?}"));
    }
    assert_eq!(dlq.len(), 3);
    let cp = store.checkpoint(0).expect("checkpoint").expect("exists");
    assert_eq!(cp.next_offsets.get("lead-events"), Some(&(input.len() as i64)));
}

/// Faults injected into the broker while the loop runs: produce and fetch
/// requests failing with retriable errors, then the broker down for two
/// seconds. Nothing is lost or applied twice: the published records,
/// deduplicated by (lead_id, version), are the reference, and repeats are
/// identical.
#[test]
fn broker_faults_are_survived_without_loss() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let input = input(1500);
    let expected = reference(&input);
    produce(&bootstrap, &input[..500]);
    let dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
    let telemetry = Telemetry::default();
    let stop = AtomicBool::new(false);
    let mut s = settings(&bootstrap);
    s.runtime.max_batch = 100;
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| run_once(&s, &store, &stop, &telemetry));
        let wait = |n: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Counters::get(&telemetry.counters.messages) < n && Instant::now() < deadline && !handle.is_finished()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait(500);
        let retriable = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5];
        c.request_errors(RDKafkaApiKey::Produce, &retriable);
        c.request_errors(RDKafkaApiKey::Fetch, &retriable);
        produce(&bootstrap, &input[500..1000]);
        wait(1000);
        c.broker_down(1).expect("down");
        std::thread::sleep(Duration::from_secs(2));
        c.broker_up(1).expect("up");
        produce(&bootstrap, &input[1000..]);
        wait(input.len() as u64);
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("no panic").expect("the loop ends cleanly");
    });
    let total: usize = expected.values().map(Vec::len).sum();
    let (got, _) = read_outputs(&bootstrap, total);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions, OutputTopic::DeadLetters] {
        let mut seen = std::collections::BTreeSet::new();
        let dedup: Vec<String> =
            got.get(&topic).cloned().unwrap_or_default().into_iter().filter(|r| seen.insert(r.clone())).collect();
        assert_same(Some(&dedup), expected.get(&topic), &format!("{topic:?}"));
    }
}

/// A topic of garbage trips the circuit breaker where one is set (the default
/// never trips): the loop stops with an error that says why, after the bad
/// messages are in the dead-letter topic.
#[test]
fn mostly_bad_input_stops_the_loop_with_a_clear_error() {
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let garbage: Vec<(Option<String>, String)> = (0..300).map(|i| (None, format!("garbage {i}"))).collect();
    produce(&bootstrap, &garbage);
    let dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
    let mut s = settings(&bootstrap);
    s.runtime.dead_letter_window = 100;
    s.runtime.dead_letter_max_share = 0.5;
    let (telemetry, stop) = (Telemetry::default(), AtomicBool::new(false));
    let result = run_once(&s, &store, &stop, &telemetry);
    let e = result.expect_err("the breaker trips").to_string();
    assert!(e.contains("of the last") && e.contains("processing.dead_letter_max_share = 0.5"), "{e}");
    let dead = Counters::get(&telemetry.counters.dead_lettered);
    assert!(dead >= 100, "{dead}");
    let (got, _) = read_outputs(&bootstrap, dead as usize);
    assert_eq!(got.get(&OutputTopic::DeadLetters).map_or(0, Vec::len) as u64, dead, "all in the dead-letter topic");
}

#[test]
fn input_topics_and_changelog_must_be_co_partitioned() {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    c.create_topic("lead-events", 4, 1).expect("topic");
    c.create_topic(&t.changelog, 2, 1).expect("topic");
    let (telemetry, stop) = (Telemetry::default(), AtomicBool::new(false));
    let store = MemoryStore::new();
    let e = run_once(&settings(&c.bootstrap_servers()), &store, &stop, &telemetry).expect_err("refused");
    assert!(e.to_string().contains("same number of partitions") && e.to_string().contains("lead-events: 4"), "{e}");
}

/// Two co-partitioned input topics, page views on one and everything else on
/// the other, fetched in small pieces (a few messages per fetch and per poll
/// batch): the partition group's messages are still applied in event-time
/// order across batches, so the published records equal the reference over
/// the whole sample in time order. Applying each poll batch as fetched would
/// publish a different history.
#[test]
fn co_partitioned_topics_are_applied_in_event_time_order_across_batches() {
    let c = cluster();
    c.create_topic("page-views", 1, 1).expect("topic");
    let bootstrap = c.bootstrap_servers();
    let all: Vec<(Option<String>, String)> = sample().into_iter().map(|l| (None, l)).collect();
    let expected = reference(&all);
    let total: usize = expected.values().map(Vec::len).sum();
    let (views, rest): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|(_, v)| v.contains(r#""type":"page_view""#));
    // Small producer batches, so that small fetches return few messages.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("batch.num.messages", "7")
        .create()
        .expect("producer");
    // One topic entirely before the other: the broker's order says nothing.
    for (topic, events) in [("page-views", &views), ("lead-events", &rest)] {
        for (_, v) in events {
            producer.send(BaseRecord::<str, str>::to(topic).payload(v)).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    let mut s = settings(&bootstrap);
    s.runtime.topics.inputs =
        [("lead-events".to_string(), None), ("page-views".to_string(), Some(leadscore_core::Kind::PageView))].into();
    s.runtime.max_batch = 20;
    s.kafka.librdkafka.insert("max.partition.fetch.bytes".into(), "1500".into());
    let dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("store");
    let c = run_with(s, &store, all.len() as u64).counters;
    assert_eq!(Counters::get(&c.messages), all.len() as u64);

    let (got, _) = read_outputs(&bootstrap, total);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions] {
        assert_same(got.get(&topic), expected.get(&topic), &format!("{topic:?}"));
    }
}

/// A schema registry on a local port that answers 503 for `down_for` from its
/// first request on, then the envelope schema for id 1 and "not found" for any other
/// id; counts the requests it refused.
fn flaky_registry(down_for: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = refused.clone();
    let mut up_at = None;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
            while !request.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request);
            let up_at = *up_at.get_or_insert_with(|| Instant::now() + down_for);
            let (status, body) = if Instant::now() < up_at {
                count.fetch_add(1, Ordering::SeqCst);
                ("503 Service Unavailable", "down for maintenance".to_string())
            } else if request.starts_with("GET /schemas/ids/1 ") {
                ("200 OK", serde_json::json!({ "schema": leadscore_codec::avro::LEAD_EVENT_AVSC }).to_string())
            } else {
                ("404 Not Found", r#"{"error_code":40403,"message":"Schema not found"}"#.to_string())
            };
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(response.as_bytes());
        }
    });
    (url, refused)
}

#[test]
fn a_schema_registry_outage_holds_avro_input_and_dead_letters_nothing_valid() {
    use leadscore_codec::{AvroCodec, AvroSettings, RegistrySettings};
    let (url, refused) = flaky_registry(Duration::from_secs(2));
    let codec = std::sync::Arc::new(
        AvroCodec::new(AvroSettings {
            schema_files: Default::default(),
            registry: Some(RegistrySettings::new(url)),
            score_change_id: 2,
            transition_id: 3,
        })
        .expect("codec"),
    );
    let c = cluster();
    let bootstrap = c.bootstrap_servers();
    let json_input: Vec<(Option<String>, String)> = sample().into_iter().take(300).map(|l| (None, l)).collect();
    let expected = reference(&json_input);
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    for (i, (_, line)) in json_input.iter().enumerate() {
        let avro = codec.encode_event(&serde_json::from_str(line).expect("json"), 1).expect("avro");
        producer.send(BaseRecord::<str, [u8]>::to("lead-events").payload(&avro)).map_err(|(e, _)| e).expect("send");
        if i == 100 {
            // A schema id the registry does not have: bad input, once it answers.
            let mut bogus = avro.clone();
            bogus[1..5].copy_from_slice(&99u32.to_be_bytes());
            producer
                .send(BaseRecord::<str, [u8]>::to("lead-events").payload(&bogus))
                .map_err(|(e, _)| e)
                .expect("send");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let store_dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(store_dir.path(), &RocksSettings::default()).expect("store");
    let mut s = settings(&bootstrap);
    s.runtime.formats.avro_input = Some(codec.clone());
    let telemetry = run_with(s, &store, 301);
    assert!(refused.load(Ordering::SeqCst) > 0, "the registry was down while the loop ran");
    assert_eq!(Counters::get(&telemetry.counters.dead_lettered), 1, "only the unknown schema id");
    let total: usize = expected.values().map(Vec::len).sum();
    let (got, dlq) = read_outputs(&bootstrap, total + 1);
    for topic in [OutputTopic::ScoreChanges, OutputTopic::Transitions] {
        assert_same(got.get(&topic), expected.get(&topic), &format!("{topic:?}"));
    }
    let message = dlq[0].iter().find(|(k, _)| k == "leadscore.error.message").expect("message").1.clone();
    assert!(message.contains("no schema id 99"), "{message}");
    assert_eq!(telemetry.metrics.schema_waiting.get(), 0, "resumed");
}
