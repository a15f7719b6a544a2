//! The same end-to-end path on a real out-of-process Kafka-protocol broker:
//! tansu (no transactions, so at least once). `scripts/test-tansu.sh` installs
//! and starts tansu and runs this test with `--ignored`, which CI does through
//! `scripts/test.sh`; `LEADSCORE_TANSU_BOOTSTRAP` says where the broker is.
//!
//! The topics are created through the admin API; `leadscore run` consumes the
//! sample; the published records, deduplicated by (lead_id, version), equal
//! the offline scorer's. `leadscore bench` runs there too (a small run): it
//! creates its topics, drains at least once, and names why exactly once is
//! skipped. A third test pins down why nothing here is killed and restarted on
//! tansu (it cannot resume a consumer inside a batch).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::time::Duration;

mod support;
use support::{assert_same, free_address, produce_sample, read_outputs, reference, start, stop};

fn create_topics(bootstrap: &str) {
    create(
        bootstrap,
        &[
            "lead-events",
            "lead-score-changes",
            "lead-segment-transitions",
            "lead-events-dlq",
            "leadscore-state-changelog",
        ],
    );
}

fn create(bootstrap: &str, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    // tansu needs an explicit retention for topics that are read back.
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            let topic = NewTopic::new(n, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
            // `leadscore run` refuses a changelog that is not compacted.
            if n.ends_with("changelog") {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))))
        .expect("create topics");
    for r in results {
        if let Err((topic, e)) = r {
            assert!(e.to_string().contains("exists"), "creating {topic}: {e}");
        }
    }
}

#[test]
#[ignore = "needs a tansu broker: run scripts/test-tansu.sh"]
fn on_tansu_the_published_records_equal_the_offline_reference() {
    let bootstrap = std::env::var("LEADSCORE_TANSU_BOOTSTRAP").expect("LEADSCORE_TANSU_BOOTSTRAP=host:port of tansu");
    create_topics(&bootstrap);
    let reference = reference();
    produce_sample(&bootstrap);

    let dir = tempfile::tempdir().expect("dir");
    let admin = free_address();
    let run = start(dir.path(), &bootstrap, &admin);
    let (got, repeats) = read_outputs(&bootstrap, reference.len());
    assert!(stop(run), "the run stops cleanly");
    assert_same(&got, &reference);
    eprintln!("{} records on tansu, {repeats} repeated", got.len());
}

#[test]
#[ignore = "needs a tansu broker: run scripts/test-tansu.sh"]
fn on_tansu_the_benchmark_runs_and_says_why_exactly_once_is_skipped() {
    let bootstrap = std::env::var("LEADSCORE_TANSU_BOOTSTRAP").expect("LEADSCORE_TANSU_BOOTSTRAP=host:port of tansu");
    let out = support::bin()
        .args(["bench", "--bootstrap-servers", &bootstrap, "--events", "5000", "--leads", "500"])
        .args(["--latency-seconds", "2", "--fetch-wait-ms", "5"])
        .output()
        .expect("bench");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("| ceiling: consumer that does nothing | 4999 |"), "{table}");
    let alo = table.lines().find(|l| l.starts_with("| leadscore at_least_once | ")).expect("an at-least-once row");
    assert!(alo.contains("MiB"), "RSS and state measured: {alo}");
    assert!(
        table.contains("| leadscore exactly_once | skipped: the broker has no transactions"),
        "tansu has no EndTxn: {table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| leadscore at_least_once |") && l.contains(" ms |")).count(),
        1
    );
    assert!(table.contains("| leadscore at_least_once: a new owner restores |"), "a restore on a real broker: {table}");
}

/// Why no test here kills `leadscore run` and restarts it (the crash tests use
/// `leadscore dev-broker` instead): tansu 0.6.0 cannot resume a consumer in
/// the middle of a produced batch. A fetch from any offset but a batch's first
/// returns nothing, so a restarted consumer whose committed offset falls inside
/// a batch stalls for ever; and its latest offset (ListOffsets) is not the end
/// of the log, so a changelog restore sees acknowledged records beyond the end.
/// This fails when tansu fixes both: then add a kill and restart to the test
/// above.
#[test]
#[ignore = "needs a tansu broker: run scripts/test-tansu.sh"]
fn tansu_cannot_resume_inside_a_batch_so_crash_tests_use_the_dev_broker() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::{Offset, TopicPartitionList};
    let bootstrap = std::env::var("LEADSCORE_TANSU_BOOTSTRAP").expect("LEADSCORE_TANSU_BOOTSTRAP=host:port of tansu");
    let topic = "tansu-limits";
    create(&bootstrap, &[topic]);
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("linger.ms", "100").create().expect("producer");
    for i in 0..100 {
        let payload = format!("m{i}");
        producer
            .send(BaseRecord::<str, str>::to(topic).payload(&payload).partition(0))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "tansu-limits").create().expect("c");
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    let read_from = |start: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(start)).expect("offset");
        consumer.assign(&tpl).expect("assign");
        let (mut n, deadline) = (0, std::time::Instant::now() + Duration::from_secs(3));
        while std::time::Instant::now() < deadline && n < 100 - start {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                assert!(m.offset() >= start);
                n += 1;
            }
        }
        n
    };
    assert_eq!(read_from(0), 100, "from a batch's start, everything");
    let (mid, end) = (read_from(37), high);
    assert!(
        mid == 0 && end < 100,
        "tansu now resumes inside a batch ({mid} of 63 read) and reports the log end ({end} of 100): \
         add a kill and restart to on_tansu_the_published_records_equal_the_offline_reference"
    );
}

/// `leadscore topics check|create` through tansu's admin API: a new group's
/// topics are reported missing (exit 1), created with the inputs' partition
/// count and a compacted changelog, then reported fine (exit 0); a changelog
/// that is not compacted is an error for `topics check` and makes `leadscore
/// run` refuse to start, saying what to change.
#[test]
#[ignore = "needs a tansu broker: run scripts/test-tansu.sh"]
fn on_tansu_topics_are_created_and_checked_and_run_refuses_a_changelog_that_is_not_compacted() {
    let bootstrap = std::env::var("LEADSCORE_TANSU_BOOTSTRAP").expect("LEADSCORE_TANSU_BOOTSTRAP=host:port of tansu");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("topics.toml");
    let group = format!("topics-test-{}", std::process::id());
    let input = format!("{group}-events");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\n[topics]\n\
             score_changes = \"{group}-scores\"\ntransitions = \"{group}-transitions\"\n\
             dead_letters = \"{group}-dlq\"\n[topics.inputs]\n\"{input}\" = \"any\"\n"
        ),
    )
    .expect("config");
    let topics = |args: &[&str]| {
        let out = support::bin().arg("topics").args(args).arg("--config").arg(&config).output().expect("topics");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = topics(&["check"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("the input topic \"{input}\" does not exist")), "{text}");
    assert!(text.contains(&format!("\"{group}-state-changelog\" does not exist")), "{text}");

    let (code, text) = topics(&["create", "--inputs", "--partitions", "3", "--replication-factor", "1"]);
    assert_eq!(code, Some(0), "{text}");
    for name in [&input, &format!("{group}-scores"), &format!("{group}-state-changelog")] {
        assert!(text.contains(&format!("created {name}")), "{text}");
    }
    let (code, text) = topics(&["check"]);
    assert_eq!(code, Some(0), "{text}");
    let changelog_line = text.lines().find(|l| l.contains("-state-changelog")).expect("changelog row");
    assert!(changelog_line.contains(" 3 ") && changelog_line.ends_with("compact"), "{changelog_line}");
    assert!(text.lines().filter(|l| l.starts_with(&group)).all(|l| l.contains(" 3 ")), "{text}");

    // Another deployment whose changelog was created with the default policy.
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&format!("\"{group}\""), &format!("\"other-{group}\""));
    std::fs::write(&other, text).expect("config");
    create_with(&bootstrap, &format!("other-{group}-state-changelog"), 3, "delete");
    let out = support::bin().args(["topics", "check", "--config"]).arg(&other).output().expect("topics");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cleanup.policy=delete") && text.contains("--add-config cleanup.policy=compact"), "{text}");

    let admin = free_address();
    let state = dir.path().join("state");
    let extra = format!("[state]\ndir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n", state.display());
    std::fs::write(&other, std::fs::read_to_string(&other).expect("config") + &extra).expect("config");
    let out = support::bin().args(["run", "--config"]).arg(&other).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "run refuses to start: {stderr}");
    assert!(
        stderr.contains(&format!("other-{group}-state-changelog")) && stderr.contains("cleanup.policy=delete"),
        "{stderr}"
    );
}

fn create_with(bootstrap: &str, name: &str, partitions: i32, cleanup_policy: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("cleanup.policy", cleanup_policy);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime.block_on(admin.create_topics(&[topic], &options)).expect("create topics");
    for r in results {
        r.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
    }
}
