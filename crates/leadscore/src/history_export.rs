//! A history read from Kafka topics for `leadscore replay` and `leadscore
//! review`: every message of each partition of the given topics, from the
//! earliest offset the brokers still hold up to the end as it was when the
//! read began, as JSON lines. No consumer group is joined and no offset is
//! committed, so a running service's group is not disturbed. Input in Avro is
//! not read here (export it as JSON first).

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The messages of `topics` on `bootstrap`, one per line (empty values and
/// tombstones left out), and how many were read.
pub fn read(bootstrap: &str, topics: &[String], err: &mut impl Write) -> anyhow::Result<(Vec<u8>, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "leadscore-history-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the Kafka consumer")?;
    // (topic, partition) -> the offset to stop before.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("reading the metadata of topic {topic} from {bootstrap}"))?;
        let t = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
        let Some(t) = t else { anyhow::bail!("topic {topic} does not exist on {bootstrap}") };
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), TIMEOUT)
                .with_context(|| format!("reading the offsets of {topic}/{}", p.id()))?;
            if high > low {
                ends.insert((topic.clone(), p.id()), high);
                assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            }
        }
    }
    let total: i64 = ends.len() as i64;
    consumer.assign(&assignment).context("assigning the partitions")?;
    let (mut out, mut read) = (Vec::new(), 0u64);
    let (mut last_report, mut idle_since) = (Instant::now(), Instant::now());
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let key = (m.topic().to_string(), m.partition());
                if let Some(payload) = m.payload().filter(|p| !p.is_empty()) {
                    out.extend_from_slice(payload);
                    out.push(b'\n');
                    read += 1;
                }
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => anyhow::bail!("reading the history from {bootstrap}: {e}"),
            // Transaction markers and compacted gaps are never delivered: a
            // partition whose position reached its end is done too.
            None if done_by_position(&consumer, &mut ends) => {}
            None if idle_since.elapsed() > 4 * TIMEOUT => anyhow::bail!(
                "reading the history from {bootstrap}: nothing arrived for {} s with {} of {total} partitions unfinished",
                (4 * TIMEOUT).as_secs(),
                ends.len()
            ),
            None => {}
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            writeln!(err, "leadscore: {read} messages read from Kafka, {} of {total} partitions to go", ends.len())?;
        }
    }
    writeln!(err, "leadscore: read {read} messages from {} ({})", bootstrap, topics.join(", "))?;
    Ok((out, read))
}

/// Removes from `ends` the partitions whose position reached their end;
/// whether any was removed.
fn done_by_position(consumer: &BaseConsumer, ends: &mut BTreeMap<(String, i32), i64>) -> bool {
    let Ok(positions) = consumer.position() else { return false };
    let before = ends.len();
    for e in positions.elements() {
        if let Offset::Offset(next) = e.offset() {
            let key = (e.topic().to_string(), e.partition());
            if ends.get(&key).is_some_and(|end| next >= *end) {
                ends.remove(&key);
            }
        }
    }
    ends.len() < before
}
