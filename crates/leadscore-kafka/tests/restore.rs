//! The changelog reader on the in-process mock broker: records in offset
//! order with their keys, tombstones, checkpoint markers, transaction openers
//! and ownership epochs as the restore reads them, the end of a partition, and a position
//! that moves past what it has read. (The restore itself is tested in
//! leadscore-pipeline and under crashes in leadscore-sim; a handover through
//! Kafka in rebalance.rs.)

use leadscore_kafka::changelog::KafkaChangelog;
use leadscore_pipeline::messages::{headers, OPEN_KEY};
use leadscore_pipeline::ports::{Changelog, ChangelogRecord};
use leadscore_pipeline::ChangelogKind;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant};

const CHANGELOG: &str = "leadscore-state-changelog";

/// (offset, key, value, kind, epoch) of a record read.
type Seen<'a> = (i64, &'a [u8], Option<&'a [u8]>, ChangelogKind, Option<i64>);

#[test]
fn reads_states_tombstones_markers_and_epochs_in_order() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(CHANGELOG, 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    let epoch = |e: &'static str| OwnedHeaders::new().insert(Header { key: headers::CHANGELOG_EPOCH, value: Some(e) });
    let send = |r: BaseRecord<'_, [u8], [u8]>| producer.send(r.partition(0)).map_err(|(e, _)| e).expect("send");
    send(BaseRecord::to(CHANGELOG).key(b"L-a".as_slice()).payload(b"state a".as_slice()).headers(epoch("7")));
    send(BaseRecord::to(CHANGELOG).key(b"L-b".as_slice()));
    let marker = epoch("7").insert(Header { key: headers::CHANGELOG_RECORD, value: Some("checkpoint") });
    send(BaseRecord::to(CHANGELOG).key(b"".as_slice()).payload(b"cp".as_slice()).headers(marker));
    // An empty key without the marker header is not a marker.
    send(BaseRecord::to(CHANGELOG).key(b"".as_slice()).payload(b"stray".as_slice()));
    // Exactly once's transaction opener: no value, nothing to apply.
    let opener = epoch("8").insert(Header { key: headers::CHANGELOG_RECORD, value: Some("open") });
    send(BaseRecord::to(CHANGELOG).key(OPEN_KEY).headers(opener));
    producer.flush(Duration::from_secs(10)).expect("flush");

    let config = ClientConfig::new().set("bootstrap.servers", &bootstrap).clone();
    let mut changelog = KafkaChangelog::new(&config, CHANGELOG, Duration::from_secs(10)).expect("reader");
    assert_eq!(changelog.watermarks(0).expect("offsets"), (0, 5));
    assert_eq!(changelog.watermarks(1).expect("offsets"), (0, 0));
    changelog.start(0, 1).expect("start");
    let mut records: Vec<ChangelogRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while records.len() < 4 && Instant::now() < deadline {
        changelog.read(Duration::from_millis(100), 10, &mut records).expect("read");
    }
    let seen: Vec<Seen> =
        records.iter().map(|r| (r.offset, r.key.as_slice(), r.value.as_deref(), r.kind, r.epoch)).collect();
    assert_eq!(
        seen,
        vec![
            (1, b"L-b".as_slice(), None, ChangelogKind::State, None),
            (2, b"".as_slice(), Some(b"cp".as_slice()), ChangelogKind::Checkpoint, Some(7)),
            (3, b"".as_slice(), Some(b"stray".as_slice()), ChangelogKind::Unknown, None),
            (4, OPEN_KEY, None, ChangelogKind::Open, Some(8)),
        ]
    );
    assert!(records.iter().all(|r| r.timestamp.is_some()), "broker timestamps");
    assert_eq!(changelog.position(), Some(5));
    changelog.stop();
    assert_eq!(changelog.position(), None);
}
