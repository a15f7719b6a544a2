//! What queueing an output record costs the thread that sends it (the
//! runtime's loop): the sink, which queues runs of records with librdkafka's
//! batch call, against rdkafka's `send` of one record at a time (what the
//! sink did before), on librdkafka's in-process mock broker with the output
//! producer's configuration; and the same for changelog records (a lead's
//! state of about 1 KiB with its writer's epoch header), which the sink queues
//! one at a time through its topic handle because of their header. Only the sending thread's CPU time during the
//! sends is counted (not the broker's, not the waits for deliveries), so the
//! figure holds on a busy machine better than a rate does.
//!
//!     cargo run --release -p leadscore-kafka --example sink_throughput [records] [rounds]

use leadscore_kafka::client::{producer_config, KafkaSettings};
use leadscore_kafka::sink::{wait_delivered, KafkaSink};
use leadscore_pipeline::ports::Sink;
use leadscore_pipeline::{OutputRecord, OutputTopic, Topics};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

// As the service allocates (librdkafka's mallocs included, which the service
// also routes to jemalloc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PARTITIONS: i32 = 16;
const SLICE: usize = 5_000;
const FLUSH_EVERY: usize = 100_000;

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid out-parameter for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Score changes and transitions of 150k leads, about the size of the
/// contract's JSON records.
fn records(n: usize) -> Vec<OutputRecord> {
    (0..n)
        .map(|i| {
            let lead = format!("L-{:07}", (i * 7919) % 150_000);
            let topic = if i % 3 == 2 { OutputTopic::Transitions } else { OutputTopic::ScoreChanges };
            let value = format!("{{\"lead_id\":\"{lead}\",\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(240));
            OutputRecord {
                topic,
                key: Some(lead.into_bytes()),
                value: Some(value.into_bytes()),
                headers: Vec::new(),
                partition: None,
            }
        })
        .collect()
}

/// Changelog states as a commit sends them: 1 KiB each, an epoch header,
/// the partition named.
fn changelog(n: usize) -> Vec<OutputRecord> {
    (0..n)
        .map(|i| {
            let lead = format!("L-{:07}", (i * 7919) % 150_000);
            let partition = (i % PARTITIONS as usize) as u32;
            OutputRecord::changelog_state(partition, &lead, Some(vec![7; 1024]), Some(1 << 32))
        })
        .collect()
}

fn config(bootstrap: &str) -> ClientConfig {
    let settings = KafkaSettings { bootstrap_servers: bootstrap.to_string(), ..Default::default() };
    producer_config(&settings, 1_000_000)
}

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    let t = Topics::default();
    for topic in [&t.score_changes, &t.transitions, &t.changelog] {
        c.create_topic(topic, PARTITIONS, 1).expect("topic");
    }
    c
}

/// CPU seconds of this thread in the sink's sends.
fn with_sink(records: &[OutputRecord]) -> Duration {
    let c = cluster();
    let mut sink = KafkaSink::new(&config(&c.bootstrap_servers()), Topics::default(), None).expect("sink");
    let mut cpu = Duration::ZERO;
    for chunk in records.chunks(FLUSH_EVERY) {
        let start = thread_cpu();
        for slice in chunk.chunks(SLICE) {
            sink.send(slice).expect("queued");
        }
        cpu += thread_cpu() - start;
        sink.flush(Duration::from_secs(60)).expect("delivered");
    }
    cpu
}

/// The same with rdkafka's `send`, one record at a time, as the sink's
/// producer is configured.
fn with_send(records: &[OutputRecord]) -> Duration {
    let c = cluster();
    let mut config = config(&c.bootstrap_servers());
    config.set("enable.idempotence", "true").set("enable.gapless.guarantee", "true").set("linger.ms", "5");
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    let topics = Topics::default();
    let mut cpu = Duration::ZERO;
    for chunk in records.chunks(FLUSH_EVERY) {
        let start = thread_cpu();
        for r in chunk {
            let mut record = BaseRecord::to(topics.name(r.topic))
                .key(r.key.as_deref().unwrap_or_default())
                .payload(r.value.as_deref().unwrap_or_default());
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                record = record.headers(headers);
            }
            if let Some(p) = r.partition {
                record = record.partition(p as i32);
            }
            leadscore_kafka::sink::send_waiting(&producer, record).expect("queued");
        }
        cpu += thread_cpu() - start;
        wait_delivered(&producer, Duration::from_secs(60)).expect("delivered");
    }
    cpu
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().expect("records: a number"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds: a number"));
    let records = records(n);
    let states = changelog(n);
    println!("{n} records (16 partitions, mock broker); the sending thread's CPU per record:");
    println!(
        "| round | outputs: sink | outputs: rdkafka send | changelog states: sink | changelog states: rdkafka send |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for round in 1..=rounds {
        let wall = Instant::now();
        let ns = |d: Duration| format!("{:.0} ns", d.as_nanos() as f64 / n as f64);
        let cells = [with_sink(&records), with_send(&records), with_sink(&states), with_send(&states)].map(ns);
        println!("| {round} | {} |", cells.join(" | "));
        eprintln!("round {round}: {:.1} s", wall.elapsed().as_secs_f64());
    }
}
