//! The `leadscore` binary as a user runs it: offline scoring of files and of
//! standard input, bad lines, `--until`, and model checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("it finishes")
}

#[test]
fn scores_a_golden_scenario_exactly() {
    let dir = repo().join("tests/golden/decay-across-tiers");
    let until = std::fs::read_to_string(dir.join("until")).expect("until");
    let out = bin()
        .args(["score", "--model"])
        .arg(repo().join("config/seed-model.toml"))
        .arg("--input")
        .arg(dir.join("events.jsonl"))
        .args(["--until", until.trim()])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected"));
    assert!(text(&out.stderr).contains("6 events read: 6 applied, 0 duplicates, 0 rejected"), "{}", text(&out.stderr));
}

#[test]
fn bad_lines_are_reported_and_processing_goes_on() {
    let input = concat!(
        r#"{"event_id":"a","lead_id":"L","type":"email_click","timestamp":"2026-01-01T00:00:00Z","properties":{"link_url":"/x"}}"#,
        "\n",
        "this is not json\n",
        "\n",
        r#"{"event_id":"b","lead_id":"L","type":"fax","timestamp":"2026-01-01T00:00:01Z"}"#,
        "\n",
        r#"{"event_id":"c","lead_id":"L","type":"search","timestamp":"tomorrow","properties":{"term":"x"}}"#,
        "\n",
        r#"{"event_id":"d","lead_id":"L","type":"profile_update","timestamp":1767225602000,"properties":{"company_size":"big"}}"#,
        "\n",
        r#"{"event_id":"a","lead_id":"L","type":"email_click","timestamp":"2026-01-01T00:00:00Z","properties":{"link_url":"/x"}}"#,
        "\n",
        r#"{"event_id":"e","lead_id":"L","type":"email_click","timestamp":"2026-01-01T00:00:03Z","properties":{"link_url":"/y"}}"#,
        "\n",
    );
    let out = run_with_stdin(&["score", "--input", "-"], input);
    assert_eq!(out.status.code(), Some(1), "rejected lines: exit status 1");
    let allowed = run_with_stdin(&["score", "--input", "-", "--allow-rejected"], input);
    assert!(allowed.status.success());
    assert_eq!(allowed.stdout, out.stdout, "the same records either way");
    let err = text(&out.stderr);
    for expected in [
        "line 2: not_json:",
        "line 4: unknown_kind: type \"fax\" is not a known kind",
        "line 5: bad_timestamp: timestamp:",
        "line 6: invalid_field: properties.company_size: expected an integer, got a string",
        "7 events read: 2 applied, 1 duplicates, 4 rejected",
        "4 of 7 lines rejected (above); exit status 1 (--allow-rejected for 0)",
    ] {
        assert!(err.contains(expected), "stderr lacks {expected:?}:\n{err}");
    }
    let records: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let events: Vec<&str> = records.iter().filter_map(|r| r["event_id"].as_str()).collect();
    assert_eq!(events, ["a", "a", "e"], "a's score change and transition, e's score change");
    assert_eq!(records.last().expect("records")["score"], 6.0);
}

#[test]
fn until_fires_timers_at_the_end() {
    let input = concat!(
        r#"{"event_id":"a","lead_id":"L","type":"search","timestamp":"2026-01-01T00:00:00Z","properties":{"term":"x"}}"#,
        "\n"
    );
    let without = run_with_stdin(&["score", "--input", "-"], input);
    assert!(!text(&without.stdout).contains("inactive-60d"));
    let with = run_with_stdin(&["score", "--input", "-", "--until", "2026-03-02T00:00:00Z"], input);
    let line = text(&with.stdout).lines().last().expect("a record").to_string();
    assert!(
        line.contains(
            r#""segment":"inactive-60d","transition":"entered","timestamp":"2026-03-02T00:00:00.000Z","cause":"timer""#
        ),
        "{line}"
    );
    let epoch = run_with_stdin(&["score", "--input", "-", "--until", "1772409600000"], input);
    assert_eq!(text(&epoch.stdout), text(&with.stdout), "--until takes epoch milliseconds too");
}

#[test]
fn bad_arguments_name_the_problem() {
    let out = bin().args(["score", "--input", "-", "--until", "next week"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--until"), "{}", text(&out.stderr));
    let out = bin().args(["score", "--input", "/nonexistent/events.jsonl"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot open --input /nonexistent/events.jsonl"), "{}", text(&out.stderr));
}

#[test]
fn check_model_summarises_a_good_model_and_names_the_key_of_a_bad_one() {
    let seed = repo().join("config/seed-model.toml");
    let out = bin().arg("check-model").arg(&seed).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    for expected in [
        "model seed-1",
        "page-view          on page_view: +1, at most 10 per 1d",
        "download           on download: +2 for the first 1, then +5",
        "title-manager      job_title has the words \"manager\", unless title-exec: +20",
        "inactive-60d                   last activity at least 60d ago",
        "sales-ready                    score ≥ 76 and grade is A or B",
        "seed-model.toml: ok",
    ] {
        assert!(summary.contains(expected), "summary lacks {expected:?}:\n{summary}");
    }

    let bad = std::env::temp_dir().join(format!("leadscore-bad-model-{}.toml", std::process::id()));
    let text_of_seed = std::fs::read_to_string(&seed).expect("seed");
    std::fs::write(&bad, text_of_seed.replacen("half_life = \"30d\"", "half_life = \"thirty days\"", 1))
        .expect("write");
    let out = bin().arg("check-model").arg(&bad).output().expect("runs");
    std::fs::remove_file(&bad).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("score.half_life") && err.contains("\"thirty days\" is not a duration"), "{err}");
}

#[test]
fn the_demo_runs_the_pipeline_on_an_embedded_broker() {
    let out = bin()
        .args(["demo", "--duration", "12s", "--rate", "500", "--leads", "200", "--partitions", "2"])
        .output()
        .expect("runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("leadscore demo:") && stdout.contains("latest transitions:"), "{stdout}");
    let summary = stderr.lines().last().expect("a summary");
    let number = |label: &str| -> u64 {
        let before = summary.split(label).next().expect("label");
        before.split_whitespace().last().expect("number").trim_start_matches('(').parse().expect("a number")
    };
    assert!(number(" events produced") > 1000, "{summary}");
    assert!(number(" applied") > 1000, "{summary}");
    assert!(number(" dead letters") >= 1, "{summary}");
    assert!(number(" segment transitions") > 100, "{summary}");
}

#[test]
fn dev_broker_prints_an_address_that_accepts_connections() {
    use std::io::BufRead;
    let mut child = bin()
        .args(["dev-broker", "--partitions", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("an address");
    let address = line.trim().split(',').next().expect("one broker").to_string();
    let connected = std::net::TcpStream::connect(&address);
    child.kill().ok();
    child.wait().ok();
    assert!(connected.is_ok(), "cannot connect to {address:?}");
}

#[test]
fn run_consumes_from_a_broker_in_another_process_and_stops_cleanly_on_sigterm() {
    use std::io::BufRead;
    use std::sync::mpsc;
    // The broker in its own process, as in production.
    let mut broker = bin()
        .args(["dev-broker", "--partitions", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut address = String::new();
    std::io::BufReader::new(broker.stdout.take().expect("stdout")).read_line(&mut address).expect("address");
    let address = address.trim().to_string();

    let producer = leadscore_kafka::events::EventProducer::new(&address).expect("producer");
    for i in 0..50 {
        let event = format!(
            r#"{{"event_id":"e-{i}","lead_id":"L-{}","type":"form_submit","timestamp":"2026-01-01T00:00:{:02}Z","properties":{{"form":"demo"}}}}"#,
            i % 7,
            i
        );
        producer.send("lead-events", format!("L-{}", i % 7).as_bytes(), event.as_bytes()).expect("send");
    }
    producer.flush(std::time::Duration::from_secs(10)).expect("flush");

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("leadscore.toml");
    let admin = free_address();
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{address}\"\ngroup_id = \"cli-test\"\n[topics]\nchangelog = \"leadscore-state-changelog\"\n[state]\ndir = \"{}\"\n\
             [admin]\nlisten = \"{admin}\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let mut run = bin()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run");
    let (tx, rx) = mpsc::channel();
    let stderr = run.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut log = Vec::new();
    let mut first_readiness = None;
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            if line.contains("admin server listening") {
                // The group join takes seconds: not ready yet.
                first_readiness = Some(http_get(&admin, "/readyz"));
            }
            let done = line.contains("messages=50");
            log.push(line);
            if done {
                break;
            }
        }
    }
    // The admin server of the running service.
    let (ready, _) = http_get(&admin, "/readyz");
    // Lag comes with librdkafka's statistics, every five seconds.
    let lag = r#"leadscore_consumer_lag_messages{partition="0",topic="lead-events"} 0"#;
    let (mut metrics_status, mut metrics) = http_get(&admin, "/metrics");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !metrics.contains(lag) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(250));
        (metrics_status, metrics) = http_get(&admin, "/metrics");
    }
    let (lead_status, lead) = http_get(&admin, "/leads/L-3");
    let pid = run.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let status = run.wait().expect("exits");
    log.extend(rx.iter());
    broker.kill().ok();
    broker.wait().ok();
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("leadscore starting"), "{log}");
    assert!(!log.contains('\x1b'), "no colour codes in a log that is not a terminal: {log}");
    assert!(log.contains("stopped cleanly after 50 messages (50 applied, 0 duplicates, 0 dead letters)"), "{log}");
    assert!(log.contains("admin server listening"), "{log}");
    let (status, why) = first_readiness.expect("the admin server started");
    assert_eq!((status, why.as_str()), (503, "not ready: not consuming yet (joining the consumer group)\n"));
    assert_eq!(ready, 200);
    assert!(metrics.contains(lag), "{metrics}");
    assert_eq!(metrics_status, 200);
    assert!(
        metrics.contains(r#"leadscore_events_total{kind="form_submit",outcome="applied",topic="lead-events"} 50"#),
        "{metrics}"
    );
    assert!(metrics.contains("leadscore_leads 7"), "{metrics}");
    assert!(metrics.contains("leadscore_assigned_partitions 2"), "{metrics}");
    assert_eq!(lead_status, 200, "{lead}");
    let lead: serde_json::Value = serde_json::from_str(&lead).expect("json");
    // Events of 2026-01-01 on today's wall clock: decayed, and inactive.
    let last = &lead["recent_score_changes"][0];
    assert_eq!((&last["event_id"], &last["score"]), (&serde_json::json!("e-45"), &serde_json::json!(100.0)), "{lead}");
    assert!(lead["score"].as_f64().expect("score") < 1.0, "{lead}");
    // Entering inactive-60d by timer was published after the last score change.
    assert!(lead["version"].as_u64() > last["version"].as_u64(), "{lead}");
    assert!(lead["segments"].as_array().expect("segments").iter().any(|s| s["segment"] == "inactive-60d"), "{lead}");
}

/// A loopback address with a port nobody listens on.
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").to_string()
}

/// A minimal HTTP/1.1 GET: status and body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).expect("connect to the admin server");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n",
    )
    .expect("write");
    let out = bin().arg("check-config").arg(&file).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("\"sasl.password\" = \"*****\"") && !printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("\"security.protocol\" = \"SASL_SSL\""), "{printed}");

    // A ConfigMap and a Secret, merged as `run --config a --config b` would.
    let secret = dir.path().join("secret.toml");
    std::fs::write(&secret, "[kafka]\ngroup_id = \"from-the-secret\"\n").expect("write");
    let out = bin().arg("check-config").arg("--config").arg(&file).arg("--config").arg(&secret).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("group_id = \"from-the-secret\"") && printed.contains("SASL_SSL"), "{printed}");
    assert!(text(&out.stderr).contains("c.toml + ") && text(&out.stderr).contains("secret.toml: ok"));

    std::fs::write(&file, "[kafka]\nbootstrap = \"x\"\n").expect("write");
    let out = bin().arg("check-config").arg("--config").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("kafka.bootstrap: unknown field"), "{}", text(&out.stderr));
}

#[test]
fn run_logs_one_json_object_per_line_with_log_json() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("leadscore.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[state]\ndir = \"{}\"\n[admin]\nenabled = false\n",
            free_address(),
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let mut run = bin()
        .args(["run", "--log-json", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run");
    let mut line = String::new();
    std::io::BufReader::new(run.stderr.take().expect("stderr")).read_line(&mut line).expect("a log line");
    run.kill().ok();
    run.wait().ok();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert_eq!(v["message"], "leadscore starting", "{line}");
    assert_eq!(v["model"], "seed-1", "structured fields: {line}");
}

#[test]
fn gen_starts_now_when_asked_as_the_compose_file_does() {
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let out = bin().args(["gen", "--events", "3", "--start", "now", "--step", "5ms"]).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().expect("a line")).expect("json");
    let t = leadscore_core::time::parse_rfc3339(first["timestamp"].as_str().expect("time")).expect("time");
    assert!((before - 1000..before + 60_000).contains(&t), "{t} is not now ({before})");
}

#[test]
fn review_and_replay_run_on_a_generated_history_as_a_user_runs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = dir.path().join("history.jsonl");
    let gen = bin()
        .args(["gen", "--outcomes", "--events", "20000", "--leads", "400", "--step", "8m", "--output"])
        .arg(&history)
        .output()
        .expect("gen");
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    assert!(text(&gen.stderr).contains("opportunities"), "{}", text(&gen.stderr));

    // A bad line first: reported with its line number, the rest reviewed.
    let good = std::fs::read_to_string(&history).expect("history");
    std::fs::write(&history, format!("not an event\n{good}")).expect("history");
    let html = dir.path().join("review.html");
    let review =
        bin().args(["review", "--json", "--input"]).arg(&history).arg("--html").arg(&html).output().expect("review");
    assert!(review.status.success(), "{}", text(&review.stderr));
    let stderr = text(&review.stderr);
    assert!(stderr.contains("line 1: ") && stderr.contains("1 lines of the history are not valid events"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&review.stdout).expect("JSON");
    let deals = r["deals"].as_u64().expect("deals");
    assert!(deals > 100 && r["won"].as_u64() > Some(10), "{}", r["deals"]);
    assert!(r["auc"].as_f64().expect("an AUC") > 0.6, "{}", r["auc"]);
    assert_eq!(r["opportunities"].as_array().map(Vec::len), Some(deals as usize));
    let page = std::fs::read_to_string(&html).expect("the report");
    assert_eq!(page.matches("<svg").count(), 4, "four charts");

    // The last review period only: fewer deals, each opened in it.
    let opened: Vec<&str> =
        r["opportunities"].as_array().expect("deals").iter().filter_map(|d| d["opened"].as_str()).collect();
    let since = opened[opened.len() / 2];
    let recent = bin().args(["review", "--json", "--since", since, "--input"]).arg(&history).output().expect("review");
    assert!(recent.status.success(), "{}", text(&recent.stderr));
    let recent: serde_json::Value = serde_json::from_slice(&recent.stdout).expect("JSON");
    let n = recent["deals"].as_u64().expect("deals");
    assert!(n > 0 && n < deals, "{n} of {deals}");
    assert!(recent["opportunities"].as_array().expect("deals").iter().all(|d| d["opened"].as_str() >= Some(since)));

    // A candidate that lets more leads be sales-ready.
    let candidate = dir.path().join("candidate.toml");
    let model = std::fs::read_to_string(repo().join("config/seed-model.toml"))
        .expect("seed model")
        .replace("version = \"seed-1\"", "version = \"seed-2\"")
        .replace(
            "when = [{ score = { gte = 76 } }, { grade = [\"A\", \"B\"] }]",
            "when = [{ score = { gte = 50 } }, { grade = [\"A\", \"B\"] }]",
        );
    std::fs::write(&candidate, model).expect("candidate");
    // As of the middle of the history (its end is the last deal's close, when
    // every score has long decayed).
    let replay = bin()
        .args(["replay", "--json", "--until", since, "--input"])
        .arg(&history)
        .arg("--candidate")
        .arg(&candidate)
        .output()
        .expect("replay");
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let p: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("JSON");
    assert_eq!(p["segments"][0]["segment"], "sales-ready");
    assert!(
        p["segments"][0]["entering"].as_u64() > Some(0) && p["segments"][0]["leaving"] == 0,
        "{}",
        p["segments"][0]
    );
    let table = bin()
        .args(["replay", "--until", since, "--input"])
        .arg(&history)
        .arg("--candidate")
        .arg(&candidate)
        .output()
        .expect("replay");
    assert!(text(&table.stdout).contains("would enter sales-ready"), "{}", text(&table.stdout));

    let bad = bin().args(["review", "--target-precision", "2", "--input"]).arg(&history).output().expect("review");
    assert!(!bad.status.success() && text(&bad.stderr).contains("--target-precision"), "{}", text(&bad.stderr));
}
