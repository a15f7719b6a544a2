//! Records leadscore keys by lead id land in the partition the Java client
//! would choose (Kafka's murmur2, written here from its definition), so that
//! Java and Kafka Streams consumers joining on `lead_id` line up; checked on
//! librdkafka's mock broker with the output producer's configuration and with
//! the event producer `leadscore gen` uses; the output sink, which queues
//! runs of records with librdkafka's batch call, places them the same way
//! (and a changelog record in its given partition), in order.

use leadscore_kafka::client::{producer_config, KafkaSettings};
use leadscore_kafka::events::EventProducer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 7;

/// `org.apache.kafka.common.utils.Utils.murmur2`, then `toPositive(h) % n`, as
/// the Java producer's default partitioner does for a keyed record.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) as u32 & 0x7fff_ffff) % partitions as u32) as i32
}

/// `Utils.murmur2`: Kafka's variant of MurmurHash2 (seed 0x9747b28c).
fn murmur2(key: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Every key read back from `topic`, with its partition.
fn read_back(bootstrap: &str, topic: &str, want: usize) -> BTreeMap<String, i32> {
    read_all(bootstrap, topic, want).into_iter().map(|(key, partition, _)| (key, partition)).collect()
}

/// Every record read back from `topic` (at most `want`): key, partition and
/// value, in each partition's order.
fn read_all(bootstrap: &str, topic: &str, want: usize) -> Vec<(String, i32, Vec<u8>)> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "reader").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8");
            got.push((key, m.partition(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    got
}

fn keys() -> Vec<String> {
    // Lengths 1 to 12 (every remainder of the 4-byte loop), and lead ids.
    let mut keys: Vec<String> = (1..=12).map(|n| "k".repeat(n)).collect();
    keys.extend((0..200).map(|i| format!("L-{i:07}")));
    keys
}

#[test]
fn the_reference_agrees_with_kafkas_published_values() {
    // Values the Java client's own test suite pins (UtilsTest.testMurmur2).
    let cases: [(&[u8], i32); 5] = [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"abc", 479470107),
    ];
    for (key, java_hash) in cases {
        assert_eq!(murmur2(key), java_hash, "{}", String::from_utf8_lossy(key));
    }
}

#[test]
fn output_records_are_partitioned_like_the_java_client() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("lead-score-changes", PARTITIONS, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let settings = KafkaSettings { bootstrap_servers: bootstrap.clone(), ..Default::default() };
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config(&settings, 1_000_000).create().expect("producer");
    for key in keys() {
        producer.send(BaseRecord::to("lead-score-changes").key(&key).payload("{}")).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let got = read_back(&bootstrap, "lead-score-changes", keys().len());
    assert_eq!(got.len(), keys().len());
    let spread: std::collections::BTreeSet<i32> = got.values().copied().collect();
    assert_eq!(spread.len(), PARTITIONS as usize, "every partition used");
    for (key, partition) in got {
        assert_eq!(partition, java_partition(key.as_bytes(), PARTITIONS), "{key}");
    }
}

#[test]
fn generated_events_are_partitioned_like_the_java_client() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("lead-events", PARTITIONS, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer = EventProducer::new(&bootstrap).expect("producer");
    for key in keys() {
        producer.send("lead-events", key.as_bytes(), b"{}").expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    for (key, partition) in read_back(&bootstrap, "lead-events", keys().len()) {
        assert_eq!(partition, java_partition(key.as_bytes(), PARTITIONS), "{key}");
    }
}

#[test]
fn the_sinks_batched_records_are_partitioned_like_the_java_client_in_order() {
    use leadscore_kafka::sink::KafkaSink;
    use leadscore_pipeline::ports::Sink;
    use leadscore_pipeline::{OutputRecord, OutputTopic, Topics};
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topics = Topics::default();
    cluster.create_topic(&topics.score_changes, PARTITIONS, 1).expect("topic");
    cluster.create_topic(&topics.changelog, PARTITIONS, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let settings = KafkaSettings { bootstrap_servers: bootstrap.clone(), ..Default::default() };
    let mut sink = KafkaSink::new(&producer_config(&settings, 1_000_000), topics.clone(), None).expect("sink");
    // Each key twice, numbered in the order sent; one send, so one batch call
    // per run of a topic. Changelog records name their partition.
    let mut records = Vec::new();
    for round in 0..2 {
        for (i, key) in keys().iter().enumerate() {
            let n = round * 1000 + i;
            let (topic, partition) = match i % 10 {
                0 => (OutputTopic::Changelog, Some((i % PARTITIONS as usize) as u32)),
                _ => (OutputTopic::ScoreChanges, None),
            };
            records.push(OutputRecord {
                topic,
                key: Some(key.as_bytes().to_vec()),
                value: Some(n.to_string().into_bytes()),
                headers: Vec::new(),
                partition,
            });
        }
    }
    sink.send(&records).expect("queued");
    sink.flush(Duration::from_secs(10)).expect("delivered");
    let of = |t| records.iter().filter(|r| r.topic == t).count();
    let expected =
        [(&topics.score_changes, of(OutputTopic::ScoreChanges)), (&topics.changelog, of(OutputTopic::Changelog))];
    for (topic, expected) in expected {
        let got = read_all(&bootstrap, topic, expected);
        assert_eq!(got.len(), expected, "{topic}");
        let mut last: BTreeMap<i32, usize> = BTreeMap::new();
        for (key, partition, value) in got {
            let n: usize = std::str::from_utf8(&value).expect("utf-8").parse().expect("a number");
            let i = keys().iter().position(|k| *k == key).expect("a key sent");
            let want = if *topic == topics.changelog {
                i as i32 % PARTITIONS
            } else {
                java_partition(key.as_bytes(), PARTITIONS)
            };
            assert_eq!(partition, want, "{topic} {key}");
            let before = last.insert(partition, n);
            assert!(before < Some(n), "{topic} partition {partition}: {n} after {before:?}");
        }
    }
}
