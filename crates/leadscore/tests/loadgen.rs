//! `leadscore gen` to a broker and `leadscore bench`, run as a user runs them,
//! on librdkafka's in-process mock broker.

use leadscore_codec::{decode_json, Limits};
use leadscore_kafka::embedded::EmbeddedBroker;
use leadscore_pipeline::Topics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
}

type Headers = Vec<(String, String)>;

/// Every message of `topic` (key, payload), waiting until `want` arrived.
fn read_all(bootstrap: &str, topic: &str, want: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    read_with_headers(bootstrap, topic, want).into_iter().map(|(k, v, _)| (k, v)).collect()
}

fn read_with_headers(bootstrap: &str, topic: &str, want: usize) -> Vec<(Vec<u8>, Vec<u8>, Headers)> {
    use rdkafka::message::Headers as _;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "loadgen-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            got.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    got
}

/// A mock broker with leadscore's topics (input `lead-events`), and what
/// `leadscore gen --events N --leads L --bad-share S` printed to it.
fn broker_with_generated(events: &str, leads: &str, bad_share: &str) -> (EmbeddedBroker, String) {
    let topics = Topics { inputs: [("lead-events".to_string(), None)].into_iter().collect(), ..Topics::default() };
    let broker = EmbeddedBroker::start(&topics, 2).expect("broker");
    let bootstrap = broker.bootstrap_servers();
    let out = bin()
        .args(["gen", "--bootstrap-servers", &bootstrap, "--events", events, "--leads", leads])
        .args(["--bad-share", bad_share])
        .output()
        .expect("gen");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (broker, stderr)
}

#[test]
fn gen_produces_keyed_events_with_the_requested_share_of_bad_ones_and_a_summary() {
    let (broker, stderr) = broker_with_generated("2000", "50", "0.1");
    let bootstrap = broker.bootstrap_servers();
    assert!(stderr.contains("leadscore gen: 2000 events ("), "{stderr}");
    assert!(stderr.contains("events/s"), "{stderr}");

    let messages = read_all(&bootstrap, "lead-events", 2000);
    assert_eq!(messages.len(), 2000);
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    for (key, payload) in &messages {
        match decode_json(payload, Some(key), None, &Limits::default()) {
            Ok(e) => assert_eq!(e.lead_id.as_str().as_bytes(), key.as_slice(), "keyed by lead id"),
            Err(e) => *classes.entry(e.class.to_string()).or_default() += 1,
        }
    }
    let bad: usize = classes.values().sum();
    assert!((120..=280).contains(&bad), "about 10% bad, got {bad}: {classes:?}");
    assert_eq!(classes.len(), 5, "every class of bad input: {classes:?}");
    let reported = format!("({bad} bad)");
    assert!(stderr.contains(&reported), "the summary counts the bad ones {reported}: {stderr}");
}

#[test]
fn every_class_of_bad_input_reaches_the_dead_letter_topic_through_the_broker_with_its_headers() {
    let (broker, _) = broker_with_generated("400", "20", "0.2");
    let bootstrap = broker.bootstrap_servers();
    let dead_letters = Topics::default().dead_letters;
    let produced = read_all(&bootstrap, "lead-events", 400);
    let bad: Vec<&(Vec<u8>, Vec<u8>)> =
        produced.iter().filter(|(_, v)| v.starts_with(br#"{"event_id":"bad-"#)).collect();
    assert!(bad.len() >= 40, "gen made {} bad messages", bad.len());

    let dir = tempfile::tempdir().expect("dir");
    let run = support::start(dir.path(), &bootstrap, &support::free_address());
    let letters = read_with_headers(&bootstrap, &dead_letters, bad.len());
    assert!(support::stop(run), "the run stops cleanly");

    assert_eq!(letters.len(), bad.len(), "one dead letter per bad message, none for good ones");
    let mut classes = std::collections::BTreeSet::new();
    for (key, value, headers) in &letters {
        assert!(bad.iter().any(|(k, v)| k == key && v == value), "original key and bytes kept");
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let class = header("leadscore.error.class").expect("class");
        classes.insert(class.to_string());
        assert!(header("leadscore.error.message").is_some_and(|m| !m.is_empty()), "{headers:?}");
        assert_eq!(header("leadscore.source.topic"), Some("lead-events"));
        assert!(header("leadscore.source.partition").is_some_and(|p| p == "0" || p == "1"), "{headers:?}");
        let offset: i64 = header("leadscore.source.offset").expect("offset").parse().expect("a number");
        assert!(offset >= 0);
    }
    let expected: std::collections::BTreeSet<String> =
        ["not_json", "missing_field", "unknown_kind", "invalid_field", "bad_timestamp"].map(String::from).into();
    assert_eq!(classes, expected);
}

#[test]
fn gen_names_conflicting_and_out_of_range_options() {
    let out = bin().args(["gen", "--bootstrap-servers", "127.0.0.1:1", "--output", "x.jsonl"]).output().expect("gen");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output and --bootstrap-servers"));
    let out = bin().args(["gen", "--bootstrap-servers", "127.0.0.1:1", "--bad-share", "1.5"]).output().expect("gen");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bad-share 1.5: expected a share from 0 to 1"));
    let out = bin().args(["bench", "--partitions", "0"]).output().expect("bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--partitions must be at least 1"));
}

#[test]
fn bench_measures_the_ceiling_both_guarantees_and_latency_in_one_run() {
    let dir = tempfile::tempdir().expect("dir");
    let report = dir.path().join("bench.md");
    let out = bin()
        .args(["bench", "--events", "6000", "--leads", "500", "--latency-seconds", "2", "--latency-rate", "1500"])
        .arg("--report")
        .arg(&report)
        .output()
        .expect("bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = std::fs::read_to_string(&report).expect("report");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), table.trim(), "stdout and --report agree");
    for row in
        ["| ceiling: consumer that does nothing | 5999 |", "| leadscore at_least_once |", "| leadscore exactly_once |"]
    {
        assert!(table.contains(row), "{row} in\n{table}");
    }
    // Both drains consumed the whole preload and the latency probe matched
    // outputs to events; RSS and state were measured.
    let latency_rows: Vec<&str> =
        table.lines().filter(|l| l.starts_with("| leadscore") && l.contains(" ms |")).collect();
    assert_eq!(latency_rows.len(), 2, "{table}");
    for row in &latency_rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "1500", "the rate asked for: {row}");
    }
    let restores: Vec<&str> = table.lines().filter(|l| l.contains(": a new owner restores |")).collect();
    assert_eq!(restores.len(), 2, "a restore after each guarantee's run: {table}");
    for row in &restores {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | name | partitions | records | seconds | records/s | CPU per record | peak RSS |
        let records: u64 = cells[3].parse().expect("changelog records");
        assert!(records >= 500, "every lead's state at least: {row}");
        let seconds: f64 = cells[4].parse().expect("seconds");
        assert!(seconds > 0.0, "{row}");
        assert!(cells[6].ends_with(" µs") && cells[7].ends_with("MiB"), "CPU and RSS: {row}");
    }
    for row in table.lines().filter(|l| l.starts_with("| leadscore") && l.contains("MiB") && !restores.contains(l)) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // The whole drain counts, from its first output to its last.
        let events: u64 = cells[2].parse().expect("events");
        assert_eq!(events, 6000, "{row}");
        // A drain this small can go out in two sends a few milliseconds
        // apart, printed as 0.00 s; its rate says the span was measured
        // (a zero span would give 6000 events over the 1 ns floor).
        let seconds: f64 = cells[3].parse().expect("seconds");
        assert!(seconds >= 0.0, "{row}");
        let rate: f64 = cells[4].parse().expect("events/s");
        assert!(rate > 0.0 && rate < 1e9, "the drain spans time: {row}");
        let cpu: f64 = cells[6].trim_end_matches(" µs").parse().expect("CPU per event");
        assert!(cpu > 0.0, "CPU per event: {row}");
        assert!(cells[7].ends_with("MiB") && cells[8].ends_with("MiB"), "RSS and state: {row}");
        let faults: u64 = cells[10].parse().expect("minor faults");
        assert!(faults > 0, "the service touches new pages in a drain: {row}");
    }
}

#[test]
fn bench_measures_the_default_wall_clock_mode_too() {
    let out = bin()
        .args(["bench", "--events", "3000", "--leads", "300", "--guarantee", "at_least_once"])
        .args(["--latency-seconds", "2", "--latency-rate", "1000", "--time", "wall_clock", "--no-restore"])
        .output()
        .expect("bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("timers in wall-clock time"), "{table}");
    // The whole preload drained (old events are applied, not dead-lettered,
    // and their timers fire) and the latency probe matched outputs to events.
    let drain =
        table.lines().find(|l| l.starts_with("| leadscore at_least_once |") && l.contains("MiB")).expect(&table);
    assert_eq!(drain.split('|').map(str::trim).nth(2), Some("3000"), "{drain}");
    let latency = table.lines().find(|l| l.starts_with("| leadscore at_least_once |") && l.contains(" ms |"));
    assert!(latency.is_some_and(|l| l.split('|').map(str::trim).nth(2) == Some("1000")), "{table}");
    assert!(!table.contains("restore"), "--no-restore: {table}");
}

/// `--by-kind` fills the default configuration's six co-partitioned topics,
/// each kind on its topic; the service, configured with them, applies each
/// lead's events in event-time order across the topics, so that what it
/// publishes equals the offline scorer's output for the same stream in one file.
#[test]
fn gen_by_kind_fills_the_default_topics_and_the_service_reads_them_in_event_time_order() {
    use leadscore_rocks::{RocksSettings, RocksStore};
    use leadscore_telemetry::Counters;
    let broker = EmbeddedBroker::start(&Topics::default(), 2).expect("broker");
    let bootstrap = broker.bootstrap_servers();
    let args = ["--events", "3000", "--leads", "60", "--step", "5m"];
    let out = bin().args(["gen", "--bootstrap-servers", &bootstrap, "--by-kind"]).args(args).output().expect("gen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("to the topics of their kinds"), "{stderr}");

    // The same stream as a file: which kinds each topic must hold, and the reference.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("events.jsonl");
    let out = bin().arg("gen").args(args).arg("--output").arg(&file).output().expect("gen to a file");
    assert!(out.status.success());
    let mut by_topic: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for line in std::fs::read_to_string(&file).expect("events").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let kind = v["type"].as_str().expect("type").to_string();
        let k = leadscore_core::Kind::parse(&kind).expect("a kind");
        let topic = leadscore::loadgen::default_topic_of(k).unwrap_or("lead-events");
        *by_topic.entry(topic).or_default().entry(kind).or_default() += 1;
    }
    assert_eq!(by_topic.len(), 6, "every default topic gets events: {by_topic:?}");
    // One reader of all six topics (consumers of one group, one after the
    // other, would each wait for the last one's session to time out).
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "by-kind-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&by_topic.keys().copied().collect::<Vec<_>>()).expect("subscribe");
    let mut got: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut n, deadline) = (0, Instant::now() + Duration::from_secs(60));
    while n < 3000 && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
        *got.entry(m.topic().to_string()).or_default().entry(v["type"].as_str().expect("type").into()).or_default() +=
            1;
        n += 1;
    }
    let want: BTreeMap<String, BTreeMap<String, usize>> =
        by_topic.into_iter().map(|(t, kinds)| (t.to_string(), kinds)).collect();
    assert_eq!(got, want, "each topic holds the kinds it is for");

    let (kafka, mut s) = support::settings(&bootstrap, "by-kind");
    s.max_batch = 50; // many batches, so that order across them matters
    let store = RocksStore::open(&dir.path().join("state"), &RocksSettings::default()).expect("store");
    let telemetry = support::run_until(&kafka, &s, &store, 3000);
    assert_eq!(Counters::get(&telemetry.counters.applied), 3000);
    let reference = support::reference_of(&file);
    let (got, repeats) = support::read_outputs(&bootstrap, reference.len());
    assert_eq!(repeats, 0);
    support::assert_same(&got, &reference);
}

#[test]
fn a_paced_load_warms_its_producer_up_with_its_first_event_and_does_not_time_it() {
    use leadscore::loadgen::{produce, Load};
    use std::sync::atomic::AtomicBool;
    let topics = Topics { inputs: [("lead-events".to_string(), None)].into_iter().collect(), ..Topics::default() };
    let broker = EmbeddedBroker::start(&topics, 2).expect("broker");
    let load = Load {
        bootstrap_servers: broker.bootstrap_servers(),
        topic: "lead-events".to_string(),
        by_kind: false,
        events: 40,
        rate: 2000,
        format: leadscore::loadgen::WireFormat::Json,
        bad_share: 0.0,
        synth: leadscore_synth::Settings::default(),
        linger_ms: 1,
        librdkafka: Vec::new(),
    };
    let mut timed = Vec::new();
    let summary =
        produce(&load, &AtomicBool::new(false), &mut |seq, _| timed.push(seq), &mut |_| {}).expect("produced");
    assert_eq!(summary.events, 40, "the warm-up event is one of the load's");
    assert_eq!(timed.len(), 39, "every event but the first is timed: {timed:?}");
    assert_eq!(read_all(&broker.bootstrap_servers(), "lead-events", 40).len(), 40);
}
