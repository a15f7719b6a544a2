//! Crashes: `leadscore run` is killed with SIGKILL twice mid-stream (the broker
//! lives in its own process, `leadscore dev-broker`) and restarted on the same
//! state directory. At least once: every record published, deduplicated by
//! `(lead_id, version)`, equals what `leadscore score` prints for the same
//! input; repeats are byte-identical; no event is applied twice (a second
//! application would publish records the reference does not have).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-events.jsonl")
}

fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").to_string()
}

/// Applied events counted by a running instance's /metrics (0 if unreachable).
fn applied(admin: &str) -> u64 {
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return 0 };
    if write!(s, "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .lines()
        .filter(|l| l.starts_with("leadscore_events_total{") && l.contains(r#"outcome="applied""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Starts `leadscore run` on `state` with its admin server on `admin`.
fn start(dir: &Path, bootstrap: &str, admin: &str) -> Child {
    let config = dir.join(format!("leadscore-{}.toml", admin.replace([':', '.'], "-")));
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"crash-test\"\n\
             [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [topics.inputs]\n\"lead-events\" = \"any\"\n\
             [processing]\ntime = \"event_time\"\nmax_batch = 25\n\
             [state]\ndir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n",
            dir.join("state").display()
        ),
    )
    .expect("config");
    bin().args(["run", "--config"]).arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run")
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_twice_mid_stream_the_published_records_equal_the_offline_reference() {
    // The reference: the offline scorer on the same events, in event time.
    let offline = bin().args(["score", "--input"]).arg(sample()).output().expect("score");
    assert!(offline.status.success());
    let reference: BTreeMap<(String, u64, String), String> = String::from_utf8(offline.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let id = (v["lead_id"].as_str().expect("lead").to_string(), v["version"].as_u64().expect("version"));
            ((id.0, id.1, v["kind"].as_str().expect("kind").to_string()), l.to_string())
        })
        .collect();

    let mut broker = bin()
        .args(["dev-broker", "--partitions", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut bootstrap = String::new();
    std::io::BufReader::new(broker.stdout.take().expect("stdout")).read_line(&mut bootstrap).expect("address");
    let bootstrap = bootstrap.trim().to_string();
    let producer = leadscore_kafka::embedded::EventProducer::new(&bootstrap).expect("producer");
    let events = std::fs::read_to_string(sample()).expect("sample");
    for line in events.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let lead = v["lead_id"].as_str().expect("lead id");
        producer.send("lead-events", lead.as_bytes(), line.as_bytes()).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let dir = tempfile::tempdir().expect("dir");
    // Killed twice, each time after it has applied some hundreds of events.
    for _ in 0..2 {
        let admin = free_address();
        let mut run = start(dir.path(), &bootstrap, &admin);
        wait_until("progress before the kill", Duration::from_secs(60), || applied(&admin) >= 700);
        run.kill().expect("SIGKILL");
        run.wait().expect("killed");
    }
    let admin = free_address();
    let mut run = start(dir.path(), &bootstrap, &admin);

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "crash-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&["lead-score-changes", "lead-segment-transitions"]).expect("subscribe");
    let mut got: BTreeMap<(String, u64, String), String> = BTreeMap::new();
    let mut repeats = 0;
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && (got.len() < reference.len() || quiet_since.elapsed() < Duration::from_secs(2)) {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else { continue };
        quiet_since = Instant::now();
        let json = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        let id = (v["lead_id"].as_str().expect("lead").to_string(), v["version"].as_u64().expect("version"));
        let key = (id.0, id.1, v["kind"].as_str().expect("kind").to_string());
        if let Some(before) = got.insert(key.clone(), json.clone()) {
            assert_eq!(before, json, "a repeated record differs: {key:?}");
            repeats += 1;
        }
    }
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().expect("kill");
    let status = run.wait().expect("exits");
    broker.kill().ok();
    broker.wait().ok();
    assert!(status.success(), "the last run stops cleanly");

    let missing: Vec<_> = reference.keys().filter(|k| !got.contains_key(*k)).take(3).collect();
    let extra: Vec<_> = got.keys().filter(|k| !reference.contains_key(*k)).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not in the reference {extra:?}");
    for (key, json) in &reference {
        assert_eq!(&got[key], json, "{key:?}");
    }
    eprintln!("{} records, {repeats} repeated by the crashes", got.len());
}
