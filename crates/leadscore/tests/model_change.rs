//! A marketing-ops change rolled out the way a user does it: `leadscore run`
//! on the seed model consumes half of a stream from a broker, is stopped,
//! and is started again on the same state with a changed model file (a lower
//! sales-ready threshold, a new segment, a removed one) for the rest of the
//! stream. Every lead touched after the switch must end in the segments that
//! the offline scorer gives it under the changed model, the change must be
//! published with cause `model_change` and the new model version, each
//! lead's versions must go on without a gap, and /metrics counts the leads
//! migrated.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use support::{bin, dev_broker, free_address, metric, read_outputs, start_with, stop, wait_until, Guard, Records};

fn changed_model(dir: &Path) -> std::path::PathBuf {
    let t = leadscore_config::SEED_MODEL_TOML
        .replace("version = \"seed-1\"", "version = \"seed-2\"")
        .replace(
            "when = [{ score = { gte = 76 } }, { grade = [\"A\", \"B\"] }]",
            "when = [{ score = { gte = 30 } }, { grade = [\"A\", \"B\"] }]",
        )
        .replace(
            "[[segments]]\nname = \"surging\"\ndescription = \"Rule points of the last 30 days add up to 20 or more.\"\nwhen = [{ tally = \"points-30d\", gte = 20 }]\n",
            "[[segments]]\nname = \"warm\"\ndescription = \"Score 15 or more.\"\nwhen = [{ score = { gte = 15 } }]\n",
        );
    assert!(t.contains("name = \"warm\"") && t.contains("gte = 30 }"), "the edits apply");
    let path = dir.join("model-seed-2.toml");
    std::fs::write(&path, t).expect("model file");
    path
}

fn produce(bootstrap: &str, lines: &[&str]) {
    let producer = leadscore_kafka::events::EventProducer::new(bootstrap).expect("producer");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        producer.send("lead-events", v["lead_id"].as_str().expect("id").as_bytes(), line.as_bytes()).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn consumed(admin: &str) -> u64 {
    metric(admin, "leadscore_events_total", &[])
}

/// Each lead's segments after `records` in version order.
fn membership(records: &Records) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((lead, _, kind), json) in records {
        if kind != "segment_transition" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        let segment = v["segment"].as_str().expect("segment").to_string();
        let set = m.entry(lead.clone()).or_default();
        if v["transition"] == "entered" {
            set.insert(segment);
        } else {
            assert!(set.remove(&segment), "{json}");
        }
    }
    m
}

#[test]
fn restarted_on_a_changed_model_the_service_migrates_its_leads_and_publishes_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, bootstrap) = dev_broker(3);
    let _broker = Guard::new(broker);
    let text = std::fs::read_to_string(support::sample()).expect("sample");
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    // The second half leaves every third lead alone: those reach the new
    // model only when a timer of theirs fires or the sweep gets to them.
    let lead_of = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["lead_id"].as_str().map(String::from))
    };
    let leads: Vec<String> =
        lines[..half].iter().filter_map(|l| lead_of(l)).collect::<BTreeSet<_>>().into_iter().collect();
    let untouched: BTreeSet<String> = leads.iter().step_by(3).cloned().collect();
    let later: Vec<&str> =
        lines[half..].iter().copied().filter(|l| lead_of(l).is_none_or(|id| !untouched.contains(&id))).collect();

    let admin = free_address();
    let first = Guard::new(start_with(dir.path(), &bootstrap, &admin, ""));
    produce(&bootstrap, &lines[..half]);
    wait_until("the first half consumed", Duration::from_secs(120), || consumed(&admin) >= half as u64);
    let leads_before = metric(&admin, "leadscore_leads", &[]);
    assert!(stop(first.take()), "a clean stop");

    let model = changed_model(dir.path());
    let admin = free_address();
    let extra = format!("[model]\nfile = \"{}\"\n", model.display());
    let second = Guard::new(start_with(dir.path(), &bootstrap, &admin, &extra));
    produce(&bootstrap, &later);
    let rest = later.len() as u64;
    wait_until("the second half consumed", Duration::from_secs(120), || consumed(&admin) >= rest);
    // Every lead of the old model gets there, once: those the second half
    // touches when they are loaded, the others by their timers or the sweep.
    let migrated = || metric(&admin, "leadscore_leads_migrated_total", &[]);
    wait_until("every lead migrated", Duration::from_secs(60), || migrated() >= leads_before);
    let migrated = migrated();
    assert!(stop(second.take()), "a clean stop");

    // The offline scorer on the whole stream under the changed model.
    let all = dir.path().join("all.jsonl");
    std::fs::write(&all, [&lines[..half], &later[..]].concat().join("\n")).expect("events");
    let offline = bin().args(["score", "--allow-rejected", "--model"]).arg(&model).arg("--input").arg(&all).output();
    let offline = offline.expect("score");
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    let reference: Records = String::from_utf8(offline.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let key = (
                v["lead_id"].as_str().expect("lead").to_string(),
                v["version"].as_u64().expect("v"),
                v["kind"].as_str().expect("kind").to_string(),
            );
            (key, l.to_string())
        })
        .collect();

    let (got, _) = read_outputs(&bootstrap, 100);
    assert!(untouched.len() > 10, "{} leads left to the sweep", untouched.len());
    let touched: BTreeSet<String> = later
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["lead_id"].as_str().map(String::from))
        .collect();
    let (ours, theirs) = (membership(&got), membership(&reference));
    let mut compared = 0;
    for lead in &touched {
        let none = BTreeSet::new();
        assert_eq!(ours.get(lead).unwrap_or(&none), theirs.get(lead).unwrap_or(&none), "segments of {lead}");
        compared += 1;
    }
    assert!(compared > 50, "{compared} leads compared");

    let changes: Vec<serde_json::Value> = got
        .values()
        .map(|j| serde_json::from_str::<serde_json::Value>(j).expect("json"))
        .filter(|v| v["cause"] == "model_change")
        .collect();
    assert!(changes.iter().all(|v| v["model_version"] == "seed-2"));
    let count = |seg: &str, dir: &str| changes.iter().filter(|v| v["segment"] == seg && v["transition"] == dir).count();
    assert!(count("warm", "entered") > 0, "the new segment fills");
    assert!(count("sales-ready", "entered") > 0, "the lower threshold lets leads in");
    assert!(leads_before > 50, "{leads_before} leads before the change");
    assert_eq!(migrated, leads_before, "each lead of the old model migrated once");

    // Each lead's versions run 1, 2, 3... across the restart (an erased
    // lead that comes back starts again at 1: those are left out).
    let erased: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "erase")
        .filter_map(|v| v["lead_id"].as_str().map(String::from))
        .collect();
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (lead, version, _) in got.keys().filter(|(l, _, _)| !erased.contains(l)) {
        versions.entry(lead).or_default().push(*version);
    }
    for (lead, v) in versions {
        assert_eq!(v, (1..=v.len() as u64).collect::<Vec<_>>(), "versions of {lead}");
    }
}

#[test]
fn review_and_replay_read_a_history_from_kafka_as_from_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, bootstrap) = dev_broker(3);
    let _broker = Guard::new(broker);
    let file = dir.path().join("history.jsonl");
    let gen = bin()
        .args(["gen", "--outcomes", "--events", "8000", "--leads", "200", "--step", "8m", "--output"])
        .arg(&file)
        .output()
        .expect("gen");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    // On two topics, as a service reads them: CRM and profile updates apart.
    let text = std::fs::read_to_string(&file).expect("history");
    let (crm, behaviour): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.contains("\"type\":\"opportunity_update\"") || l.contains("\"type\":\"profile_update\""));
    assert!(!crm.is_empty() && !behaviour.is_empty());
    let producer = leadscore_kafka::events::EventProducer::new(&bootstrap).expect("producer");
    for (topic, lines) in [("lead-events", &behaviour), ("lead-profiles", &crm)] {
        for line in lines.iter() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            producer.send(topic, v["lead_id"].as_str().expect("id").as_bytes(), line.as_bytes()).expect("send");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let json = |args: &[&str], source: &[&str]| -> serde_json::Value {
        let out = bin().args(args).args(source).arg("--json").output().expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let from_file = ["--input", file.to_str().expect("path")];
    let from_kafka = ["--bootstrap-servers", bootstrap.as_str(), "--topics", "lead-events,lead-profiles"];
    let a = json(&["review"], &from_file);
    let b = json(&["review"], &from_kafka);
    assert!(a["deals"].as_u64() > Some(20), "{}", a["deals"]);
    assert_eq!(a, b, "the same review from the file and from the topics");

    let candidate = changed_model(dir.path());
    let replay = ["replay", "--candidate", candidate.to_str().expect("path")];
    assert_eq!(json(&replay, &from_file), json(&replay, &from_kafka));

    let missing =
        bin().args(["review", "--bootstrap-servers", &bootstrap, "--topics", "no-such-topic"]).output().expect("runs");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-topic"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
