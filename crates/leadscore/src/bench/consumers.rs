//! The benchmark's own consumers: the ceiling (a group consumer configured as
//! leadscore's that reads the input topic and does nothing with it) and the
//! latency probe (reads the score changes as a downstream service would).

use anyhow::{bail, Context};
use leadscore_kafka::group_consumer_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A consumer configured as leadscore's input consumer, so that the ceiling
/// reads the same way.
fn consumer(bootstrap: &str, group: &str, fetch_wait_ms: Option<u32>) -> anyhow::Result<BaseConsumer> {
    let options: BTreeMap<String, String> =
        fetch_wait_ms.map(|ms| ("fetch.wait.max.ms".to_string(), ms.to_string())).into_iter().collect();
    group_consumer_config(bootstrap, group, &options).create().context("creating a consumer")
}

/// Reads `events` messages of `topic` in a new group. Returns the messages
/// after the first and the time from the first to the last (group join
/// excluded, as for leadscore).
pub fn ceiling(
    bootstrap: &str,
    group: &str,
    topic: &str,
    events: u64,
    fetch_wait_ms: Option<u32>,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<(u64, Duration)> {
    let c = consumer(bootstrap, group, fetch_wait_ms)?;
    c.subscribe(&[topic])?;
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut first = None;
    let mut idle_since = Instant::now();
    while n < events {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // Touch the payload so the read is not optimised away.
                bytes += m.payload().map_or(0, <[u8]>::len);
                n += 1;
                first.get_or_insert_with(Instant::now);
                idle_since = Instant::now();
                if n.is_multiple_of(10_000) {
                    progress(n);
                }
            }
            Some(Err(e)) => bail!("the ceiling consumer failed: {e}"),
            None if idle_since.elapsed() > Duration::from_secs(60) => {
                bail!("the ceiling consumer read {n} of {events} messages and then nothing for 60 s")
            }
            None => {}
        }
    }
    progress(n);
    std::hint::black_box(bytes);
    let first = first.unwrap_or_else(Instant::now);
    Ok((n - 1, first.elapsed()))
}

/// Reads `topic` from its current end until `stop`, returning (sequence number
/// of the causing event, time received) for each score change whose
/// `event_id` starts with `prefix`.
pub fn probe(
    bootstrap: &str,
    group: &str,
    topic: &str,
    prefix: &str,
    fetch_wait_ms: Option<u32>,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<(u64, Instant)>> {
    let c = consumer(bootstrap, group, fetch_wait_ms)?;
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if partitions == 0 {
        bail!("topic {topic} has no partitions");
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        assignment.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    c.assign(&assignment)?;
    ready.store(true, Ordering::Release);
    let needle = format!("\"event_id\":\"{prefix}");
    let mut seen = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let at = Instant::now();
                if let Some(seq) = m.payload().and_then(|p| sequence(p, &needle)) {
                    seen.push((seq, at));
                }
            }
            Some(Err(e)) => bail!("the latency probe failed: {e}"),
            None => {}
        }
    }
    Ok(seen)
}

/// The broker timestamps (milliseconds) of the first and the last record of
/// `topic`, over all its partitions: the service stamps each output when it
/// sends it, so this is its drain from the first batch published to the last,
/// whatever the sampling of its metrics. `None`: the topic is empty.
/// `fetch_wait_ms` as for the other consumers: each partition is read
/// twice, and a fetch that finds nothing more waits that long on the mock
/// broker (librdkafka's default, 500 ms, made this a minute at 67 partitions).
pub fn output_span(bootstrap: &str, topic: &str, fetch_wait_ms: Option<u32>) -> anyhow::Result<Option<(i64, i64)>> {
    let c = consumer(bootstrap, "leadscore-bench-span", fetch_wait_ms)?;
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut span: Option<(i64, i64)> = None;
    // A partition's first record, and its tail (a few offsets before the
    // end: in a transactional topic the last offset is a commit marker that
    // no consumer sees).
    const TAIL: i64 = 64;
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high <= low {
            continue;
        }
        for (from, to) in [(low, (low + 1).min(high)), ((high - TAIL).max(low), high)] {
            let mut one = TopicPartitionList::new();
            one.add_partition_offset(topic, p, Offset::Offset(from))?;
            c.assign(&one)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        if let Some(t) = m.timestamp().to_millis() {
                            span = Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
                        }
                        if m.offset() + 1 >= to {
                            break;
                        }
                    }
                    Some(Err(e)) => bail!("reading the timestamps of {topic}: {e}"),
                    // Nothing more (e.g. only control records are left).
                    None if c.position()?.elements().iter().all(|e| e.offset().to_raw().is_some_and(|o| o >= to)) => {
                        break
                    }
                    None => {}
                }
            }
        }
    }
    Ok(span)
}

/// The number after `needle` in a JSON output record, e.g. 17 in
/// `..."event_id":"e-1a7-17",...` for the needle `"event_id":"e-1a7-`.
fn sequence(payload: &[u8], needle: &str) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = &text[text.find(needle)? + needle.len()..];
    rest[..rest.find('"')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_comes_from_the_event_id() {
        let record = br#"{"kind":"score_change","lead_id":"L-1","version":3,"event_id":"e-1a7-17","score":1.0}"#;
        assert_eq!(sequence(record, "\"event_id\":\"e-1a7-"), Some(17));
        assert_eq!(sequence(record, "\"event_id\":\"e-2a-"), None);
    }
}
