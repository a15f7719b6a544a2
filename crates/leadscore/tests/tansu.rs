//! The same end-to-end path on a real out-of-process Kafka-protocol broker:
//! tansu (no transactions, so at least once). `scripts/test-tansu.sh` installs
//! and starts tansu and runs this test with `--ignored`, which CI does through
//! `scripts/test.sh`; `LEADSCORE_TANSU_BOOTSTRAP` says where the broker is.
//!
//! The topics are created through the admin API; `leadscore run` consumes the
//! sample; the published records, deduplicated by (lead_id, version), equal
//! the offline scorer's. `leadscore bench` runs there too (a small run): it
//! creates its topics, drains at least once, and names why exactly once is
//! skipped.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::time::Duration;

mod support;
use support::{assert_same, free_address, produce_sample, read_outputs, reference, start, stop};

fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let names = [
        "lead-events",
        "lead-score-changes",
        "lead-segment-transitions",
        "lead-events-dlq",
        "leadscore-state-changelog",
    ];
    // tansu needs an explicit retention for topics that are read back.
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000"))
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
}
