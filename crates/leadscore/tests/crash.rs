//! Crashes during a live stream, as a user would cause them: `leadscore run`
//! in its own process is killed with SIGKILL again and again, 1 to 5 s after
//! its partitions are assigned each time, and restarted on the same state
//! directory, while a producer writes the six default input topics (each event
//! on the topic of its kind, four partitions, in event-time order) at about 100
//! events per second; the broker (`leadscore dev-broker`) lives in its own
//! process. Then the last run drains the stream.
//!
//! - Event time: every record published, de-duplicated by `(lead_id,
//!   version)`, equals what `leadscore score` prints for the same stream in one
//!   file; repeats are identical.
//! - Wall clock: no `(lead_id, version)` is ever published with two different
//!   contents, and every lead's versions run from 1 without a gap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{assert_same, bin, free_address, read_outputs, reference_of, stop, wait_until};

const PARTITIONS: i32 = 4;

fn dev_broker() -> (Child, String) {
    support::dev_broker(PARTITIONS)
}

/// One message of the stream: topic, explicit partition (closing events),
/// key, JSON.
type Message = (String, Option<i32>, String, String);

/// `events` generated events in strictly increasing event time (ties would
/// leave the order across topics to the tie-break), each on the default topic
/// of its kind, then one closing event per partition 360 days later, so
/// that event time passes every timer. Written to `file` for the reference.
fn stream(dir: &Path, events: u64, seed: u64) -> (Vec<Message>, PathBuf) {
    let generated = dir.join("generated.jsonl");
    let args = ["--events", &events.to_string(), "--leads", "400", "--step", "10m", "--seed", &seed.to_string()];
    let out = bin().arg("gen").args(args).arg("--output").arg(&generated).output().expect("gen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut messages = Vec::new();
    let mut last = 0i64;
    for line in std::fs::read_to_string(&generated).expect("events").lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).expect("json");
        let t = leadscore_core::time::parse_rfc3339(v["timestamp"].as_str().expect("timestamp")).expect("time");
        last = t.max(last + 1);
        v["timestamp"] = serde_json::json!(last);
        let kind = leadscore_core::Kind::parse(v["type"].as_str().expect("type")).expect("a kind");
        let topic = leadscore::loadgen::default_topic_of(kind).unwrap_or("lead-events").to_string();
        let lead = v["lead_id"].as_str().expect("lead").to_string();
        messages.push((topic, None, lead, v.to_string()));
    }
    for p in 0..PARTITIONS {
        let lead = format!("close-{p}");
        let json = serde_json::json!({
            "event_id": lead, "lead_id": lead, "type": "page_view",
            // Within the default horizon of event time (a year ahead of the
            // partition's event time), beyond every timer of the sample's leads.
            "timestamp": last + 360 * 86_400_000, "properties": {"url": "https://example.com/"}
        });
        messages.push(("lead-events".into(), Some(p), lead, json.to_string()));
    }
    let file = dir.join("stream.jsonl");
    let text: String = messages.iter().map(|(_, _, _, json)| format!("{json}\n")).collect();
    std::fs::write(&file, text).expect("write the stream");
    (messages, file)
}

/// Produces the stream in order, one message acknowledged before the next
/// (so that the broker has them in event-time order), about `rate` per second
/// until `hurry` is set, then as fast as it can.
fn produce(bootstrap: &str, messages: &[Message], rate: u64, hurry: &AtomicBool, sent: &AtomicUsize) {
    let producer = leadscore_kafka::events::EventProducer::with_options(bootstrap, &[("linger.ms".into(), "0".into())])
        .expect("producer");
    let started = Instant::now();
    for (i, (topic, partition, key, json)) in messages.iter().enumerate() {
        while !hurry.load(Ordering::Relaxed) && started.elapsed() < Duration::from_millis(i as u64 * 1000 / rate) {
            std::thread::sleep(Duration::from_millis(2));
        }
        match partition {
            Some(p) => producer.send_to(topic, *p, key.as_bytes(), json.as_bytes()),
            None => producer.send(topic, key.as_bytes(), json.as_bytes()),
        }
        .expect("send");
        producer.flush(Duration::from_secs(30)).expect("delivered");
        sent.store(i + 1, Ordering::Relaxed);
    }
}

fn ready(admin: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return false };
    if write!(s, "GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// The service's configuration: the six default input topics, `time`, small
/// batches (many commits, so that kills land inside steps).
fn config(dir: &Path, bootstrap: &str, admin: &str, time: &str) -> PathBuf {
    let path = dir.join(format!("leadscore-{}.toml", admin.replace([':', '.'], "-")));
    let text = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"crash-test\"\n\
         [topics]\nchangelog = \"leadscore-state-changelog\"\n\
         [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         \"fetch.wait.max.ms\" = \"10\"\n\
         [processing]\ntime = \"{time}\"\nmax_batch = 50\n\
         [state]\ndir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n",
        dir.join("state").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(config: &Path) -> Child {
    let stderr = if std::env::var_os("LEADSCORE_TEST_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
    bin().args(["run", "--config"]).arg(config).stdout(Stdio::null()).stderr(stderr).spawn().expect("run")
}

/// Runs the recipe: `kills` SIGKILLs during the live stream, then a last run
/// that drains it; the records read back (repeats checked identical), and
/// what `leadscore score` prints for the stream.
fn crash_recipe(time: &str, events: u64, kills: u32, seed: u64) -> (support::Records, support::Records) {
    let dir = tempfile::tempdir().expect("dir");
    let (messages, file) = stream(dir.path(), events, seed);
    let reference = reference_of(&file);
    let (mut broker, bootstrap) = dev_broker();
    let (hurry, sent) = (AtomicBool::new(false), AtomicUsize::new(0));
    let got = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(&bootstrap, &messages, 100, &hurry, &sent));
        let mut rng = leadscore_synth::Rng::new(seed);
        let mut during = 0;
        for _ in 0..kills {
            let admin = free_address();
            let mut service = run(&config(dir.path(), &bootstrap, &admin, time));
            wait_until("the service's partitions to be assigned and restored", Duration::from_secs(90), || {
                ready(&admin)
            });
            std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
            // On a slow machine the stream may end before the last kills;
            // those would prove nothing more.
            let live = sent.load(Ordering::Relaxed) < messages.len();
            service.kill().expect("SIGKILL");
            service.wait().expect("killed");
            if !live {
                break;
            }
            during += 1;
        }
        assert!(during >= kills.min(4), "only {during} of {kills} kills landed during the live stream");
        hurry.store(true, Ordering::Relaxed);
        producer.join().expect("the producer");
        let admin = free_address();
        let service = run(&config(dir.path(), &bootstrap, &admin, time));
        // Event time publishes exactly the reference; wall clock at least its
        // score changes (the same events award points, whenever timers fire).
        let want = match time {
            "event_time" => reference.len(),
            _ => reference.keys().filter(|(_, _, kind)| kind == "score_change").count(),
        };
        let (got, _repeats) = read_outputs(&bootstrap, want);
        assert!(stop(service), "the last run stops cleanly");
        got
    });
    broker.kill().ok();
    broker.wait().ok();
    (got, reference)
}

#[test]
fn killed_ten_times_during_a_live_stream_on_six_topics_the_records_equal_the_offline_reference() {
    let (got, reference) = crash_recipe("event_time", 14_000, 10, 7);
    assert!(reference.len() > 10_000, "the stream publishes plenty: {}", reference.len());
    assert_same(&got, &reference);
}

#[test]
fn in_wall_clock_mode_no_version_of_a_lead_is_published_with_two_contents() {
    let (got, _) = crash_recipe("wall_clock", 8_000, 6, 11);
    // read_outputs has checked that repeats are identical; versions are gapless.
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (lead, version, _) in got.keys() {
        versions.entry(lead.as_str()).or_default().push(*version);
    }
    assert!(versions.len() > 100, "{} leads", versions.len());
    for (lead, mut vs) in versions {
        vs.sort_unstable();
        assert_eq!(vs, (1..=vs.len() as u64).collect::<Vec<_>>(), "lead {lead}: versions with gaps");
    }
}
