//! The output producer on librdkafka's mock broker: a record the broker
//! refuses fails the next flush, even when the failure was reported before
//! the flush began (the loop must never checkpoint past it), and the
//! checkpoint markers' offsets are reported per changelog partition; a mark
//! (the pipelined commit) tells when the records sent before it are
//! delivered, and reports only their markers; an await (wall clock's replay
//! markers) waits for its own records, not for others still in flight.
//! Records arrive with exactly the headers they were given and a create
//! time of when they were sent. A record refused while queued (one at a time
//! or inside librdkafka's batch call) fails the send, and only the records
//! librdkafka took are waited for; a send larger than the local queue waits
//! for room and loses nothing.

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

/// An idempotent sink producing to `c`.
fn sink_on(c: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>) -> KafkaSink {
    let config = ClientConfig::new().set("bootstrap.servers", c.bootstrap_servers()).clone();
    KafkaSink::new(&config, Topics::default(), None).expect("sink")
}

#[test]
fn a_failure_reported_before_the_flush_still_fails_it() {
    let c = cluster();
    let mut sink = sink_on(&c);
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
    let mut sink = sink_on(&c);
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

/// Polls without waiting, as the runtime does between batches, until the
/// records before `mark` are found delivered (or failed).
fn poll_delivered(
    sink: &mut KafkaSink,
    mark: leadscore_pipeline::ports::Mark,
) -> Result<leadscore_pipeline::ports::Acked, leadscore_pipeline::ports::PortError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(acked) = sink.delivered(mark, false, Duration::from_secs(10)).transpose() {
            return acked;
        }
        assert!(std::time::Instant::now() < deadline, "the records before the mark were never reported");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_mark_reports_only_the_markers_sent_before_it_while_more_are_sent() {
    let c = cluster();
    let mut sink = sink_on(&c);
    let marker = |p| OutputRecord::checkpoint_marker(p, &Checkpoint::default());
    let state = |p, lead: &str| OutputRecord { partition: Some(p), ..record(OutputTopic::Changelog, lead) };
    sink.send(&[state(0, "L-1"), marker(0)]).expect("queued");
    let first = sink.mark();
    // The next commit's records go out before the first is found delivered.
    sink.send(&[state(1, "L-2"), marker(1), record(OutputTopic::ScoreChanges, "L-2")]).expect("queued");
    // Waiting delivers everything sent so far, the second commit's records
    // too; the first is still told only its own marker.
    let acked = sink.delivered(first, true, Duration::from_secs(10)).expect("delivered").expect("waited for");
    assert_eq!(acked.markers, [(0, 1)].into_iter().collect(), "only the first commit's marker");
    let second = sink.mark();
    let acked = poll_delivered(&mut sink, second).expect("delivered");
    assert_eq!(acked.markers, [(1, 1)].into_iter().collect());
    // A third commit with nothing sent is delivered at once.
    let third = sink.mark();
    let acked = sink.delivered(third, false, Duration::from_secs(10)).expect("delivered");
    assert_eq!(acked.map(|a| a.markers.len()), Some(0));
}

#[test]
fn a_mark_whose_records_failed_says_so() {
    let c = cluster();
    let mut sink = sink_on(&c);
    c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 10]);
    sink.send(&[record(OutputTopic::ScoreChanges, "L-1")]).expect("queued");
    let mark = sink.mark();
    let e = poll_delivered(&mut sink, mark).expect_err("the record was not delivered");
    assert!(e.to_string().contains("not delivered"), "{e}");
}

/// A record librdkafka refuses to queue (larger than `message.max.bytes`,
/// so it goes one at a time) fails the send at once; the records after it in
/// the batch were never queued either, and neither may be waited for: the
/// mark after the failed send is delivered as soon as the records before the
/// refused one are (a run of two, queued by one batch call).
#[test]
fn a_record_refused_mid_batch_leaves_nothing_awaited() {
    let c = cluster();
    let mut sink = sink_on(&c);
    let mut huge = record(OutputTopic::ScoreChanges, "L-2");
    huge.value = Some(vec![b'x'; 2 << 20]);
    let batch = [
        record(OutputTopic::ScoreChanges, "L-0"),
        record(OutputTopic::ScoreChanges, "L-1"),
        huge,
        record(OutputTopic::Transitions, "L-3"),
        record(OutputTopic::Transitions, "L-4"),
    ];
    let e = sink.send(&batch).expect_err("the oversized record is refused");
    assert!(e.to_string().contains("queueing a record"), "{e}");
    let mark = sink.mark();
    let acked = poll_delivered(&mut sink, mark).expect("the records before the refused one are delivered");
    assert!(acked.markers.is_empty());
    // The same holds for an awaited send: it returns the refusal, and the
    // next await is not held up by the records that were never queued.
    let e = sink.send_awaited(&batch, Duration::from_secs(10)).expect_err("refused again");
    assert!(e.to_string().contains("queueing a record"), "{e}");
    sink.send_awaited(&[record(OutputTopic::ScoreChanges, "L-5")], Duration::from_secs(10)).expect("delivered");
}

/// A record refused inside a batch call (a changelog partition the topic
/// does not have) fails the send, and the records of the same call that
/// librdkafka did take, before and after it, are counted in flight: the mark
/// after the send is delivered once they are, neither earlier nor never.
#[test]
fn a_record_refused_inside_a_batch_call_counts_the_others_queued() {
    let c = cluster();
    let mut sink = sink_on(&c);
    let state = |p, lead: &str| OutputRecord { partition: Some(p), ..record(OutputTopic::Changelog, lead) };
    // The producer learns the changelog's partitions, so that partition 99 is
    // refused when queued rather than failed on delivery.
    sink.send(&[state(0, "L-0")]).expect("queued");
    sink.flush(Duration::from_secs(10)).expect("delivered");
    let e = sink.send(&[state(0, "L-1"), state(99, "L-2"), state(1, "L-3")]).expect_err("partition 99 is refused");
    assert!(e.to_string().contains("queueing a record"), "{e}");
    let mark = sink.mark();
    let acked = poll_delivered(&mut sink, mark).expect("the two records taken are delivered");
    assert!(acked.markers.is_empty());
    let e = sink
        .send_awaited(&[state(1, "L-4"), state(99, "L-5"), state(0, "L-6")], Duration::from_secs(10))
        .expect_err("refused again");
    assert!(e.to_string().contains("queueing a record"), "{e}");
    sink.send_awaited(&[state(1, "L-7")], Duration::from_secs(10)).expect("delivered");
    // Every record taken arrived.
    let got = read_back(&c, &Topics::default().changelog, 6);
    assert_eq!(got.len(), 6, "L-0, L-1, L-3, L-4, L-6 and L-7");
}

/// A send larger than librdkafka's local queue waits while it is full and
/// queues the rest as deliveries make room: every record arrives, in order.
#[test]
fn a_send_larger_than_the_local_queue_waits_and_loses_nothing() {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    c.create_topic(&t.score_changes, 1, 1).expect("topic");
    let config = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("queue.buffering.max.messages", "10")
        .clone();
    let mut sink = KafkaSink::new(&config, Topics::default(), None).expect("sink");
    // Every third record has a header, so that both ways of queueing (runs
    // in one call, headers one at a time) meet the full queue.
    let records: Vec<OutputRecord> = (0..300)
        .map(|i| OutputRecord {
            value: Some(i.to_string().into_bytes()),
            headers: if i % 3 == 0 { vec![("leadscore.test", b"x".to_vec())] } else { Vec::new() },
            ..record(OutputTopic::ScoreChanges, "L-1")
        })
        .collect();
    sink.send(&records).expect("queued");
    let mark = sink.mark();
    poll_delivered(&mut sink, mark).expect("delivered");
    let got: Vec<Vec<u8>> = read_back(&c, &t.score_changes, 300).into_iter().map(|r| r.value).collect();
    let want: Vec<Vec<u8>> = (0..300).map(|i: i32| i.to_string().into_bytes()).collect();
    assert_eq!(got, want);
}

#[test]
fn an_await_waits_for_its_own_records_not_for_others_still_in_flight() {
    let c = MockCluster::new(2).expect("mock cluster");
    let t = Topics::default();
    for topic in [&t.score_changes, &t.changelog] {
        c.create_topic(topic, 1, 1).expect("topic");
    }
    // Broker ids start at 1: the outputs on one broker, the changelog on the other.
    c.partition_leader(&t.score_changes, 0, Some(2)).expect("leader");
    c.partition_leader(&t.changelog, 0, Some(1)).expect("leader");
    let mut sink = sink_on(&c);
    let marker = |p| OutputRecord::checkpoint_marker(p, &Checkpoint::default());
    // Both brokers known and connected before one of them slows down.
    sink.send(&[record(OutputTopic::ScoreChanges, "L-0"), marker(0)]).expect("queued");
    sink.flush(Duration::from_secs(10)).expect("delivered");
    c.broker_round_trip_time(2, Duration::from_secs(10)).expect("slow broker");
    sink.send(&[record(OutputTopic::ScoreChanges, "L-1")]).expect("queued");
    sink.send_awaited(&[marker(0)], Duration::from_secs(30)).expect("the marker is delivered");
    let e = sink.flush(Duration::from_millis(500)).expect_err("the output is still on its way");
    assert!(e.to_string().contains("not delivered within"), "{e}");
    // It arrives; the marker's offset is reported by the next flush.
    let acked = sink.flush(Duration::from_secs(30)).expect("delivered");
    assert_eq!(acked.markers, [(0, 1)].into_iter().collect());
}

#[test]
fn an_awaited_record_that_fails_fails_the_await() {
    let c = cluster();
    let mut sink = sink_on(&c);
    c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 10]);
    let e = sink
        .send_awaited(&[OutputRecord::checkpoint_marker(0, &Checkpoint::default())], Duration::from_secs(10))
        .expect_err("the marker was not delivered");
    assert!(e.to_string().contains("not delivered"), "{e}");
}

/// A record read back.
#[derive(Debug)]
struct ReadBack {
    /// (key, value) in order.
    headers: Vec<(String, Vec<u8>)>,
    /// Its create time.
    time: i64,
    value: Vec<u8>,
}

/// Every record of `topic` on `c` (at most `expected`), in order (one partition).
fn read_back(
    c: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    expected: usize,
) -> Vec<ReadBack> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap_servers())
        .set("group.id", "read-back")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < expected && std::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.expect("message");
        let headers = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        let time = match m.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => t,
            other => panic!("not a create time: {other:?}"),
        };
        out.push(ReadBack { headers, time, value: m.payload().unwrap_or_default().to_vec() });
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

#[test]
fn records_keep_their_headers_and_are_stamped_when_sent() {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    c.create_topic(&t.dead_letters, 1, 1).expect("topic");
    let mut sink = sink_on(&c);
    let plain = record(OutputTopic::DeadLetters, "L-1");
    let with_headers = OutputRecord {
        headers: vec![("leadscore.error.class", b"bad_json".to_vec()), ("leadscore.source.offset", b"7".to_vec())],
        ..record(OutputTopic::DeadLetters, "L-2")
    };
    let first_sent = now_ms();
    sink.send(&[plain.clone(), with_headers]).expect("queued");
    // A second slice, well after the first: its own time, not the first's.
    std::thread::sleep(Duration::from_millis(1100));
    let later_sent = now_ms();
    sink.send(&[plain]).expect("queued");
    sink.flush(Duration::from_secs(10)).expect("delivered");
    let done = now_ms();
    let got = read_back(&c, &t.dead_letters, 3);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].headers.is_empty(), "no headers given, none sent: {:?}", got[0].headers);
    assert_eq!(
        got[1].headers,
        vec![
            ("leadscore.error.class".to_string(), b"bad_json".to_vec()),
            ("leadscore.source.offset".to_string(), b"7".to_vec())
        ]
    );
    assert!(got[2].headers.is_empty());
    for (i, from) in [(0, first_sent), (1, first_sent), (2, later_sent)] {
        let time = got[i].time;
        assert!((from..=done).contains(&time), "record {i} stamped {time}, sent in {from}..={done}");
    }
}
