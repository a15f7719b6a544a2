//! A hostile producer, as a user would meet one: `leadscore run` (event
//! time, unknown kinds skipped, an 8 kB message limit) reads one topic of
//! sixteen partitions on `leadscore dev-broker` in its own process, where
//! generated events are written and among them, at seeded random places, bad
//! messages of many kinds, each carrying the marker `bad-<n>`:
//!
//! - JSON input: over 100,000 messages, a quarter of them bad: not JSON,
//!   truncated JSON, bad UTF-8, deeply nested, huge strings and arrays, wrong
//!   types, missing fields, unparseable, far-future, ancient and end-of-time
//!   timestamps, key/body lead mismatches, unknown kinds, oversized.
//! - Avro input (Confluent framing, a local writer schema): not framed, a
//!   wrong magic byte, an unknown schema id, truncated, trailing bytes, a bad
//!   union branch, and valid Avro carrying far-future timestamps, lead
//!   mismatches, wrong types, missing fields, unknown kinds, oversize.
//!
//! In both:
//! - The service never stops: it is running at the end and stops cleanly.
//! - Every bad message is in the dead-letter topic with the class its kind
//!   calls for (found by its marker), or, for unknown kinds, counted as
//!   skipped.
//! - The score changes and transitions equal what `leadscore score` prints
//!   for the good events alone.

use leadscore_codec::avro::{AvroCodec, AvroSettings};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;
use std::process::Stdio;
use support::{assert_same, bin, dev_broker, free_address, metric, read_outputs, reference_of, stop, Guard};

// Sixteen partitions: the broker (librdkafka's mock) keeps 5 MB of each.
const PARTITIONS: i32 = 16;
const GOOD: u64 = 80_000;
const GOOD_AVRO: u64 = 20_000;
const MAX_MESSAGE_BYTES: usize = 8192;

/// What a bad message must become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Dead(&'static str),
    Skipped,
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Bad JSON message number `n`, for `lead` (its key), in a stream whose good
/// events are around `now`: the bytes, and what they must become. Every one
/// carries the marker `bad-<n>` in its first bytes.
fn bad_json(n: u64, lead: &str, now: i64, rng: &mut Rng) -> (Vec<u8>, Expect) {
    let id = format!("bad-{n}");
    let event = |kind: &str, timestamp: String, properties: &str| {
        format!(
            r#"{{"event_id":"{id}","lead_id":"{lead}","type":"{kind}","timestamp":{timestamp},"properties":{properties}}}"#
        )
    };
    let at = |t: i64| t.to_string();
    let kinds = 16;
    match rng.below(kinds) {
        0 => (format!("{id} is not JSON at all").into_bytes(), Expect::Dead("not_json")),
        1 => {
            let whole = event("page_view", at(now), r#"{"url":"https://example.com/pricing"}"#);
            // Cut after the marker, before the end.
            let from = r#"{"event_id":""#.len() + id.len() + 1;
            let cut = from + rng.below((whole.len() - from) as u64) as usize;
            (whole.as_bytes()[..cut].to_vec(), Expect::Dead("not_json"))
        }
        2 => {
            let mut b = event("page_view", at(now), r#"{"url":"https://example.com/XX"}"#).into_bytes();
            let i = b.windows(2).position(|w| w == b"XX").expect("placeholder");
            b[i] = 0xff;
            b[i + 1] = 0xfe;
            (b, Expect::Dead("not_json"))
        }
        3 => {
            // Nesting deeper than any recursive parser's limit, where a
            // string belongs, or as the whole message. (Deep nesting in a
            // property the kind does not have is ignored like any unknown
            // property: json_in's tests check that it cannot overflow.)
            let depth = 130 + rng.below(3800) as usize; // within the 8 kB limit
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            if rng.below(2) == 0 {
                let props = format!(r#"{{"url":{nested}}}"#);
                (event("page_view", at(now), &props).into_bytes(), Expect::Dead("invalid_field"))
            } else {
                (format!(r#"["{id}",{nested}]"#).into_bytes(), Expect::Dead("not_json"))
            }
        }
        4 => {
            let items: Vec<String> = (0..101 + rng.below(100)).map(|i| format!("\"t{i}\"")).collect();
            let props = format!(r#"{{"technologies":[{}]}}"#, items.join(","));
            (event("profile_update", at(now), &props).into_bytes(), Expect::Dead("invalid_field"))
        }
        5 => {
            let props = format!(r#"{{"company":"{}"}}"#, "x".repeat(4097 + rng.below(1000) as usize));
            (event("profile_update", at(now), &props).into_bytes(), Expect::Dead("invalid_field"))
        }
        6 => {
            (event("profile_update", at(now), r#"{"company_size":"big"}"#).into_bytes(), Expect::Dead("invalid_field"))
        }
        7 => (event("page_view", at(now), r#"{"title":"no url"}"#).into_bytes(), Expect::Dead("missing_field")),
        8 => (event("page_view", "true".into(), r#"{"url":"/"}"#).into_bytes(), Expect::Dead("bad_timestamp")),
        9 => (
            event("page_view", "\"10000-01-01T00:00:00Z\"".into(), r#"{"url":"/"}"#).into_bytes(),
            Expect::Dead("bad_timestamp"),
        ),
        10 => {
            let far = ["\"2099-01-01T00:00:00Z\"", "\"9999-12-31T23:59:59.999Z\"", "253402300799999"];
            let t = far[rng.below(3) as usize].to_string();
            (event("form_submit", t, r#"{"form":"demo"}"#).into_bytes(), Expect::Dead("out_of_range_timestamp"))
        }
        11 => {
            // Epoch seconds where milliseconds belong: January 1970.
            (event("page_view", at(now / 1000), r#"{"url":"/"}"#).into_bytes(), Expect::Dead("out_of_range_timestamp"))
        }
        12 => {
            let json = event("page_view", at(now), r#"{"url":"/"}"#)
                .replace(&format!("\"lead_id\":\"{lead}\""), "\"lead_id\":\"someone-else\"");
            (json.into_bytes(), Expect::Dead("lead_id_mismatch"))
        }
        13 => (event("add_to_cart", at(now), r#"{"sku":"A-1"}"#).into_bytes(), Expect::Skipped),
        14 => {
            let pad = "y".repeat(MAX_MESSAGE_BYTES + rng.below(4000) as usize);
            (
                event("page_view", at(now), &format!(r#"{{"url":"/","pad":"{pad}"}}"#)).into_bytes(),
                Expect::Dead("oversize"),
            )
        }
        _ => (
            format!(r#"{{"event_id":"{id}","lead_id":"{lead}","type":7}}"#).into_bytes(),
            Expect::Dead("invalid_field"),
        ),
    }
}

/// Bad Avro message number `n` (Confluent framing, writer schema id 1),
/// like [`bad_json`]; the marker is its `event_id`, early in the datum.
fn bad_avro(n: u64, lead: &str, now: i64, rng: &mut Rng, codec: &AvroCodec) -> (Vec<u8>, Expect) {
    let id = format!("bad-{n}");
    let event = |kind: &str, timestamp: serde_json::Value, properties: serde_json::Value| {
        let json = serde_json::json!({
            "event_id": id, "lead_id": lead, "type": kind, "timestamp": timestamp, "properties": properties,
        });
        codec.encode_event(&json, 1).expect("encodes")
    };
    let page_view = || event("page_view", now.into(), serde_json::json!({"url": "https://example.com/pricing"}));
    let invalid = Expect::Dead("invalid_avro");
    match rng.below(12) {
        0 => {
            let json = format!(r#"{{"event_id":"{id}","lead_id":"{lead}","type":"page_view","timestamp":{now}}}"#);
            (json.into_bytes(), invalid)
        }
        1 => {
            let mut b = page_view();
            b[0] = 1 + rng.below(255) as u8;
            (b, invalid)
        }
        2 => {
            let mut b = page_view();
            b[1..5].copy_from_slice(&(2 + rng.below(1000) as u32).to_be_bytes());
            (b, invalid)
        }
        3 => {
            // Cut after the marker, before the end.
            let b = page_view();
            let from = 5 + 1 + id.len() + 1;
            let cut = from + rng.below((b.len() - from) as u64) as usize;
            (b[..cut].to_vec(), invalid)
        }
        4 => {
            let mut b = page_view();
            b.extend_from_slice(&[7, 7, 7][..1 + rng.below(3) as usize]);
            (b, invalid)
        }
        5 => {
            // The event id, then union branch 5 of lead_id (it has two).
            let mut b = vec![0, 0, 0, 0, 1, (id.len() as u8) << 1];
            b.extend_from_slice(id.as_bytes());
            b.push(10);
            (b, invalid)
        }
        6 => {
            let far = [serde_json::json!(4_102_444_800_000i64), serde_json::json!("9999-12-31T23:59:59.999Z")];
            let t = far[rng.below(2) as usize].clone();
            (event("form_submit", t, serde_json::json!({"form": "demo"})), Expect::Dead("out_of_range_timestamp"))
        }
        7 => {
            let json = serde_json::json!({
                "event_id": id, "lead_id": "someone-else", "type": "page_view", "timestamp": now,
                "properties": {"url": "/"},
            });
            (codec.encode_event(&json, 1).expect("encodes"), Expect::Dead("lead_id_mismatch"))
        }
        8 => (
            event("profile_update", now.into(), serde_json::json!({"company_size": "big"})),
            Expect::Dead("invalid_field"),
        ),
        9 => (event("page_view", now.into(), serde_json::json!({"title": "no url"})), Expect::Dead("missing_field")),
        10 => (event("add_to_cart", now.into(), serde_json::json!({"sku": "A-1"})), Expect::Skipped),
        _ => {
            let pad = "y".repeat(MAX_MESSAGE_BYTES + rng.below(4000) as usize);
            (event("page_view", now.into(), serde_json::json!({"url": "/", "pad": pad})), Expect::Dead("oversize"))
        }
    }
}

/// A stream of generated good events, each encoded by `encode`, and after
/// the first `warmup` (every partition has an event time by then) a bad
/// message about a lead seen recently, with probability 1/3; then one
/// closing event per partition 360 days after the last (within the default
/// horizon of event time), so that every partition's event time passes every
/// timer the reference fires.
struct Corpus {
    /// The good events, and the closing events: what the reference scores.
    good_file: PathBuf,
    /// Key, explicit partition (closing events), value.
    stream: Vec<(String, Option<i32>, Vec<u8>)>,
    expected: BTreeMap<u64, Expect>,
    /// Where each bad message is in the stream.
    bad_at: BTreeMap<u64, usize>,
}

/// Makes bad message `n` about a lead (its key) at an instant.
type BadMaker<'a> = dyn FnMut(u64, &str, i64, &mut Rng) -> (Vec<u8>, Expect) + 'a;

fn corpus(dir: &Path, good: u64, warmup: usize, encode: &dyn Fn(&str) -> Vec<u8>, bad: &mut BadMaker) -> Corpus {
    let generated = dir.join("good.jsonl");
    let args = ["--events", &good.to_string(), "--leads", "2000", "--step", "1m", "--seed", "12"];
    let out = bin().arg("gen").args(args).arg("--output").arg(&generated).output().expect("gen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&generated).expect("events");
    let mut rng = Rng(12);
    let mut stream = Vec::new();
    let mut expected = BTreeMap::new();
    let mut bad_at = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let lead = v["lead_id"].as_str().expect("lead").to_string();
        let now = leadscore_core::time::parse_rfc3339(v["timestamp"].as_str().expect("time")).expect("time");
        stream.push((lead.clone(), None, encode(line)));
        if i > warmup && rng.below(3) == 0 {
            let n = expected.len() as u64;
            let (bytes, expect) = bad(n, &lead, now, &mut rng);
            bad_at.insert(n, stream.len());
            stream.push((lead, None, bytes));
            expected.insert(n, expect);
        }
    }
    let last = text.lines().last().and_then(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        leadscore_core::time::parse_rfc3339(v["timestamp"].as_str()?).ok()
    });
    let mut reference = text.clone();
    for p in 0..PARTITIONS {
        let lead = format!("close-{p}");
        let line = serde_json::json!({
            "event_id": lead, "lead_id": lead, "type": "page_view",
            "timestamp": last.expect("events") + 360 * 86_400_000, "properties": {"url": "https://example.com/"},
        })
        .to_string();
        stream.push((lead, Some(p), encode(&line)));
        reference.push_str(&line);
        reference.push('\n');
    }
    let good_file = dir.join("reference.jsonl");
    std::fs::write(&good_file, reference).expect("reference events");
    Corpus { good_file, stream, expected, bad_at }
}

/// Runs the service on `corpus` (with `config` added to its configuration)
/// and checks everything the module promises; at least `classes` distinct
/// dead-letter classes must have been seen.
fn check(dir: &Path, corpus: &Corpus, config: &str, classes: usize) {
    let (broker, bootstrap) = dev_broker(PARTITIONS);
    let _broker = Guard::new(broker);
    let admin = free_address();
    let mut run = Guard::new(start(dir, &bootstrap, &admin, config));

    // A producer that fails if any message is not delivered.
    let producer = leadscore_kafka::events::EventProducer::new(&bootstrap).expect("producer");
    for (key, partition, bytes) in &corpus.stream {
        match partition {
            Some(p) => producer.send_to("lead-events", *p, key.as_bytes(), bytes).expect("send"),
            None => producer.send("lead-events", key.as_bytes(), bytes).expect("send"),
        }
    }
    producer.flush(Duration::from_secs(120)).expect("every message delivered");

    // Wait until every message is consumed, watching that the service lives.
    let total = corpus.stream.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(run.child().try_wait().expect("status").is_none(), "the service stopped");
        let consumed = metric(&admin, "leadscore_events_total", &[]);
        if consumed >= total {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {consumed} of {total} consumed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let expected = &corpus.expected;
    let skipped = metric(&admin, "leadscore_events_skipped_total", &["reason=\"unknown_kind\""]);
    let want_skipped = expected.values().filter(|e| **e == Expect::Skipped).count() as u64;
    assert_eq!(skipped, want_skipped, "unknown kinds skipped, and counted");

    // Every bad message is a dead letter of its class.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bad-input-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&["lead-events-dlq"]).expect("subscribe");
    let want_dead = expected.values().filter(|e| **e != Expect::Skipped).count();
    let mut dead: BTreeMap<u64, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while dead.len() < want_dead && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        let payload = m.payload().unwrap_or_default();
        let head = String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned();
        let n = head.split("bad-").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
        let n: u64 = n.unwrap_or_else(|| panic!("a dead letter without a marker: {head:?}"));
        assert!(expected.contains_key(&n), "a dead letter of no bad message: {head:?}");
        let headers = m.headers().expect("headers");
        let class = headers
            .iter()
            .find(|h| h.key == "leadscore.error.class")
            .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
            .expect("a class");
        if class == "oversize" {
            let size = headers.iter().find(|h| h.key == "leadscore.error.original_size");
            assert!(size.is_some(), "an oversized message's dead letter has its original size");
        }
        dead.insert(n, class);
    }
    for (n, expect) in expected {
        match (expect, dead.get(n)) {
            (Expect::Dead(class), Some(got)) => assert_eq!(got, class, "bad message {n}"),
            (Expect::Dead(class), None) => {
                let bytes = &corpus.stream[corpus.bad_at[n]].2;
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
                panic!("bad message {n} ({class}) is not in the dead-letter topic: {head:?}")
            }
            (Expect::Skipped, Some(got)) => panic!("bad message {n} (an unknown kind) was dead-lettered as {got}"),
            (Expect::Skipped, None) => {}
        }
    }
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for class in dead.values() {
        *by_class.entry(class.as_str()).or_default() += 1;
    }
    assert!(by_class.len() >= classes, "{by_class:?}");

    // The good events score as they would alone.
    let reference = reference_of(&corpus.good_file);
    let (got, _) = read_outputs(&bootstrap, reference.len());
    assert_same(&got, &reference);
    assert!(run.child().try_wait().expect("status").is_none(), "the service is still running");
    assert!(stop(run.take()), "the service stops cleanly");
}

#[test]
fn a_hostile_json_stream_never_stops_the_service_and_the_good_events_score_as_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let encode = |line: &str| line.as_bytes().to_vec();
    let corpus = corpus(dir.path(), GOOD, 5000, &encode, &mut bad_json);
    let bad = corpus.expected.len();
    assert!(corpus.stream.len() >= 100_000 && bad >= 20_000, "{} messages, {bad} bad", corpus.stream.len());
    check(dir.path(), &corpus, "", 7);
}

#[test]
fn a_hostile_avro_stream_never_stops_the_service_and_the_good_events_score_as_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let codec = AvroCodec::new(AvroSettings::default()).expect("codec");
    let encode = |line: &str| codec.encode_event(&serde_json::from_str(line).expect("json"), 1).expect("encodes");
    let mut bad = |n: u64, lead: &str, now: i64, rng: &mut Rng| bad_avro(n, lead, now, rng, &codec);
    let corpus = corpus(dir.path(), GOOD_AVRO, 2000, &encode, &mut bad);
    assert!(corpus.expected.len() >= 5_000, "{} bad", corpus.expected.len());
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/lead-event.avsc");
    let config =
        format!("[formats]\ninput = \"avro\"\n[formats.avro_schema_files]\n\"1\" = \"{}\"\n", schema.display());
    check(dir.path(), &corpus, &config, 6);
}

/// `leadscore run` in event time on `lead-events`, with unknown kinds skipped,
/// an 8 kB message limit and `extra`; every other setting at its default.
fn start(dir: &Path, bootstrap: &str, admin: &str, extra: &str) -> std::process::Child {
    let config = dir.join("leadscore.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"bad-input-test\"\n\
             [topics]\nunknown_kinds = \"skip\"\nchangelog = \"leadscore-state-changelog\"\n[topics.inputs]\n\"lead-events\" = \"any\"\n\
             [processing]\ntime = \"event_time\"\nmax_message_bytes = {MAX_MESSAGE_BYTES}\n\
             [state]\ndir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n{extra}",
            dir.join("state").display()
        ),
    )
    .expect("config");
    let stderr = if std::env::var_os("LEADSCORE_TEST_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
    bin().args(["run", "--config"]).arg(&config).stdout(Stdio::null()).stderr(stderr).spawn().expect("run")
}
