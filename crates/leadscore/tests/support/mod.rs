//! Helpers shared by the tests that run `leadscore run` against a broker in
//! another process (crash.rs on dev-broker, tansu.rs on tansu).
#![allow(dead_code)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Output records by (lead id, version, kind).
pub type Records = BTreeMap<(String, u64, String), String>;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
}

pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-events.jsonl")
}

pub fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").to_string()
}

/// `leadscore dev-broker` in its own process, its topics with `partitions`
/// partitions; its address.
pub fn dev_broker(partitions: i32) -> (Child, String) {
    use std::io::BufRead;
    let mut broker = bin()
        .args(["dev-broker", "--partitions", &partitions.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut bootstrap = String::new();
    std::io::BufReader::new(broker.stdout.take().expect("stdout")).read_line(&mut bootstrap).expect("address");
    (broker, bootstrap.trim().to_string())
}

/// The sum of a metric's samples whose labels contain every one of `labels`,
/// from a running instance's /metrics (0 if unreachable).
pub fn metric(admin: &str, name: &str, labels: &[&str]) -> u64 {
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return 0 };
    if write!(s, "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Applied events counted by a running instance's /metrics (0 if unreachable).
pub fn applied(admin: &str) -> u64 {
    metric(admin, "leadscore_events_total", &[r#"outcome="applied""#])
}

/// Starts `leadscore run` on `state` with its admin server on `admin`.
pub fn start(dir: &Path, bootstrap: &str, admin: &str) -> Child {
    start_with(dir, bootstrap, admin, "")
}

/// [`start`], with more config (TOML) appended.
pub fn start_with(dir: &Path, bootstrap: &str, admin: &str, extra: &str) -> Child {
    let config = dir.join(format!("leadscore-{}.toml", admin.replace([':', '.'], "-")));
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"crash-test\"\n\
             [topics]\nchangelog = \"leadscore-state-changelog\"\n\
             [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [topics.inputs]\n\"lead-events\" = \"any\"\n\
             [processing]\ntime = \"event_time\"\nmax_batch = 25\n\
             [state]\ndir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n{extra}",
            dir.join("state").display()
        ),
    )
    .expect("config");
    // The service's log, shown when LEADSCORE_TEST_LOGS is set (for debugging).
    let stderr = if std::env::var_os("LEADSCORE_TEST_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
    bin().args(["run", "--config"]).arg(&config).stdout(Stdio::null()).stderr(stderr).spawn().expect("run")
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn identity(json: &str) -> (String, u64, String) {
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    (
        v["lead_id"].as_str().expect("lead").to_string(),
        v["version"].as_u64().expect("version"),
        v["kind"].as_str().expect("kind").to_string(),
    )
}

/// What the offline scorer prints for the sample, in event time.
pub fn reference() -> Records {
    reference_of(&sample())
}

/// What the offline scorer prints for a file of events, in event time.
pub fn reference_of(events: &Path) -> Records {
    let offline = bin().args(["score", "--input"]).arg(events).output().expect("score");
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    String::from_utf8(offline.stdout).expect("utf8").lines().map(|l| (identity(l), l.to_string())).collect()
}

/// Reads both output topics until at least `want` distinct records arrived
/// and two quiet seconds passed (or two minutes). Checks that repeated records
/// are identical; returns the records and how many repeats there were.
pub fn read_outputs(bootstrap: &str, want: usize) -> (Records, usize) {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "leadscore-test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&["lead-score-changes", "lead-segment-transitions"]).expect("subscribe");
    let mut got = Records::new();
    let mut repeats = 0;
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && (got.len() < want || quiet_since.elapsed() < Duration::from_secs(2)) {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        quiet_since = Instant::now();
        let json = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let key = identity(&json);
        if let Some(before) = got.insert(key.clone(), json.clone()) {
            assert_eq!(before, json, "a repeated record differs: {key:?}");
            repeats += 1;
        }
    }
    (got, repeats)
}

/// Asserts that `got` holds exactly the `reference` records.
pub fn assert_same(got: &Records, reference: &Records) {
    let missing: Vec<_> = reference.keys().filter(|k| !got.contains_key(*k)).take(3).collect();
    let extra: Vec<_> = got.keys().filter(|k| !reference.contains_key(*k)).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not in the reference {extra:?}");
    for (key, json) in reference {
        assert_eq!(&got[key], json, "{key:?}");
    }
}

/// Produces the sample events to `lead-events`, keyed by lead id.
pub fn produce_sample(bootstrap: &str) {
    let producer = leadscore_kafka::events::EventProducer::new(bootstrap).expect("producer");
    let events = std::fs::read_to_string(sample()).expect("sample");
    for line in events.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let lead = v["lead_id"].as_str().expect("lead id");
        producer.send("lead-events", lead.as_bytes(), line.as_bytes()).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Stops a `leadscore run` with SIGTERM; true if it exited cleanly.
pub fn stop(mut run: Child) -> bool {
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().expect("kill");
    run.wait().expect("exits").success()
}

/// The in-process service's settings for `bootstrap`: group `group`, event
/// time, every other runtime setting at its default.
pub fn settings(bootstrap: &str, group: &str) -> (leadscore_kafka::KafkaSettings, leadscore_pipeline::RuntimeSettings) {
    let kafka = leadscore_kafka::KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        group_id: group.to_string(),
        ..Default::default()
    };
    let runtime = leadscore_pipeline::RuntimeSettings {
        time_mode: leadscore_pipeline::TimeMode::EventTime,
        ..Default::default()
    };
    (kafka, runtime)
}

/// Runs the service loop in this process (seed model) on `store` until it has
/// consumed `messages` messages (or a minute passed), then stops it cleanly;
/// what it reported.
pub fn run_until(
    kafka: &leadscore_kafka::KafkaSettings,
    settings: &leadscore_pipeline::RuntimeSettings,
    store: &dyn leadscore_store::StateStore,
    messages: u64,
) -> leadscore_telemetry::Telemetry {
    use leadscore_telemetry::{Counters, Telemetry};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (model, telemetry, stop) = (leadscore_config::seed_model(), Telemetry::default(), AtomicBool::new(false));
    let clock = leadscore_pipeline::ports::FixedClock::at(0);
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| leadscore_kafka::run(kafka, settings, &model, store, &clock, &stop, &telemetry));
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

/// A child process killed when dropped, so that a failed test leaves no
/// broker or service behind.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Guard {
        Guard(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child until taken")
    }

    pub fn take(mut self) -> Child {
        self.0.take().expect("a child until taken")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
