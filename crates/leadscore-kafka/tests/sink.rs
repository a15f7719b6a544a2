//! The output producer on librdkafka's mock broker: a record the broker
//! refuses fails the next flush, even when the failure was reported before
//! the flush began (the loop must never checkpoint past it), and the
//! checkpoint markers' offsets are reported per changelog partition.

use leadscore_kafka::sink::KafkaSink;
use leadscore_pipeline::ports::Sink;
use leadscore_pipeline::{OutputRecord, OutputTopic, Topics};
use leadscore_store::Checkpoint;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::time::Duration;

fn record(topic: OutputTopic, lead: &str) -> OutputRecord {
    OutputRecord {
        topic,
        key: Some(lead.as_bytes().to_vec()),
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
        partition: None,
    }
}

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    for topic in [&t.score_changes, &t.transitions, &t.dead_letters, &t.changelog] {
        c.create_topic(topic, 2, 1).expect("topic");
    }
    c
}

#[test]
fn a_failure_reported_before_the_flush_still_fails_it() {
    let c = cluster();
    let config = ClientConfig::new().set("bootstrap.servers", c.bootstrap_servers()).clone();
    let mut sink = KafkaSink::new(&config, Topics::default(), None).expect("sink");
    // The broker refuses the next produce requests for good.
    c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 10]);
    sink.send(&[record(OutputTopic::ScoreChanges, "L-1")]).expect("queued");
    // Let the delivery report arrive before the flush starts.
    std::thread::sleep(Duration::from_secs(2));
    let e = sink.flush(Duration::from_secs(10)).expect_err("the record was not delivered");
    assert!(e.to_string().contains("not delivered"), "{e}");
}

#[test]
fn a_clean_flush_reports_each_partitions_last_marker_offset() {
    let c = cluster();
    let config = ClientConfig::new().set("bootstrap.servers", c.bootstrap_servers()).clone();
    let mut sink = KafkaSink::new(&config, Topics::default(), None).expect("sink");
    let marker = |p| OutputRecord::checkpoint_marker(p, &Checkpoint::default());
    let state = |p, lead: &str| OutputRecord { partition: Some(p), ..record(OutputTopic::Changelog, lead) };
    sink.send(&[state(1, "L-1"), marker(1), record(OutputTopic::Transitions, "L-1"), state(1, "L-2"), marker(1)])
        .expect("queued");
    sink.send(&[marker(0)]).expect("queued");
    let acked = sink.flush(Duration::from_secs(10)).expect("delivered");
    assert_eq!(acked.markers, [(0, 0), (1, 3)].into_iter().collect());
    // Nothing new: nothing reported.
    assert!(sink.flush(Duration::from_secs(10)).expect("delivered").markers.is_empty());
}
