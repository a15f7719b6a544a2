//! The changelog topic as the runtime's [`Changelog`]: a consumer that joins
//! no group, assigns one changelog partition at a time and reads committed
//! records only (a restore never sees an aborted transaction's states). The
//! end of a partition comes from a second, read_uncommitted client: its high
//! watermark includes transactions still open, which a restore waits for.

use leadscore_pipeline::messages::headers;
use leadscore_pipeline::ports::{Changelog, ChangelogRecord, PortError};
use leadscore_pipeline::ChangelogKind;
use leadscore_store::Partition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// The reader's `fetch.wait.max.ms` unless `kafka.librdkafka` sets one.
pub const READER_FETCH_WAIT_MS: u32 = 10;

/// See the module documentation.
pub struct KafkaChangelog {
    consumer: BaseConsumer,
    /// Asks for offsets only (read_uncommitted: the high watermark).
    offsets: BaseConsumer,
    topic: String,
    partition: Option<Partition>,
    /// How long a metadata request may take.
    timeout: Duration,
    /// Watermarks asked for ahead, each used once.
    prepared: HashMap<Partition, (i64, i64)>,
}

fn retriable(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> PortError + '_ {
    move |e| PortError::Retriable(format!("{what}: {e}"))
}

impl KafkaChangelog {
    /// `config` is the client configuration shared with the main consumer
    /// (bootstrap servers, security).
    pub fn new(config: &ClientConfig, topic: &str, timeout: Duration) -> Result<KafkaChangelog, PortError> {
        let config = reader_config(config);
        let create = |c: &ClientConfig| -> Result<BaseConsumer, PortError> {
            c.create().map_err(|e| PortError::Fatal(format!("creating the changelog reader: {e}")))
        };
        let consumer = create(&config)?;
        let offsets = create(config.clone().set("isolation.level", "read_uncommitted"))?;
        Ok(KafkaChangelog {
            consumer,
            offsets,
            topic: topic.to_string(),
            partition: None,
            timeout,
            prepared: HashMap::new(),
        })
    }
}

/// The reader's configuration: the shared one, never committing, committed
/// records only, and a short fetch wait unless one is set.
fn reader_config(shared: &ClientConfig) -> ClientConfig {
    let mut config = shared.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    // A restore reads up to a known end as fast as the broker serves it.
    // Kafka answers a fetch as soon as it has data, whatever the wait;
    // some brokers (tansu 0.6) hold every fetch for the full wait, 500 ms
    // by default, which made a restore 10× slower there. An empty fetch at
    // the end of a partition is all a short wait costs elsewhere.
    if config.get("fetch.wait.max.ms").is_none() {
        config.set("fetch.wait.max.ms", READER_FETCH_WAIT_MS.to_string());
    }
    // The restore polls as fast as the input loop does (see
    // FETCH_QUEUE_BACKOFF) and receives into reused pages (FETCH_MAX_BYTES).
    for (key, default) in [crate::client::FETCH_QUEUE_BACKOFF, crate::client::FETCH_MAX_BYTES] {
        if config.get(key).is_none() {
            config.set(key, default);
        }
    }
    // A group id is required by the client, never used: this reader assigns.
    if config.get("group.id").is_none() {
        config.set("group.id", "leadscore-restore");
    }
    config
}

impl Changelog for KafkaChangelog {
    fn watermarks(&mut self, partition: Partition) -> Result<(i64, i64), PortError> {
        if let Some(known) = self.prepared.remove(&partition) {
            return Ok(known);
        }
        // A read_uncommitted client's end is the high watermark.
        self.offsets
            .fetch_watermarks(&self.topic, partition as i32, self.timeout)
            .map_err(retriable("reading the changelog's offsets"))
    }

    fn prepare(&mut self, partitions: &[Partition]) -> Result<(), PortError> {
        // Two ListOffsets requests (earliest, latest) for all of them: asked
        // one by one, 67 partitions took 1.7 s.
        let ask = |offset: Offset| -> Result<HashMap<Partition, i64>, PortError> {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition_offset(&self.topic, *p as i32, offset)
                    .map_err(retriable("asking for the changelog's offsets"))?;
            }
            let found = self
                .offsets
                .offsets_for_times(tpl, self.timeout)
                .map_err(retriable("reading the changelog's offsets"))?;
            Ok(found
                .elements()
                .iter()
                .filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0).map(|o| (e.partition() as Partition, o)))
                .collect())
        };
        let (low, high) = (ask(Offset::Beginning)?, ask(Offset::End)?);
        // The reader's own connection and the topic's leaders, before the
        // first assign: without them the first partition's restore took a
        // second longer than the next ones (on the mock broker, 1.0 s for
        // 1,822 records, then 6-22 ms each). A failure here is not one: the
        // read finds the leaders itself, only later.
        if let Err(e) = self.consumer.fetch_metadata(Some(&self.topic), self.timeout) {
            tracing::debug!(error = %e, "the changelog reader could not fetch the topic's metadata ahead");
        }
        for p in partitions {
            if let (Some(l), Some(h)) = (low.get(p), high.get(p)) {
                self.prepared.insert(*p, (*l, *h));
            }
        }
        Ok(())
    }

    fn start(&mut self, partition: Partition, from: i64) -> Result<(), PortError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(from))
            .map_err(retriable("assigning the changelog"))?;
        self.consumer.assign(&tpl).map_err(retriable("assigning the changelog"))?;
        self.partition = Some(partition);
        Ok(())
    }

    fn read(&mut self, timeout: Duration, max: usize, out: &mut Vec<ChangelogRecord>) -> Result<(), PortError> {
        let mut timeout = timeout;
        while out.len() < max {
            let m = match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "changelog read error; retrying");
                    break;
                }
                Some(Ok(m)) => m,
            };
            timeout = Duration::ZERO;
            // Read in place: a restore reads millions of these.
            let header = |name: &str| m.headers().and_then(|h| h.iter().find(|h| h.key == name)?.value);
            let key = m.key().unwrap_or_default().to_vec();
            let kind = ChangelogKind::of(&key, header(headers::CHANGELOG_RECORD));
            let epoch = header(headers::CHANGELOG_EPOCH)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse::<i64>().ok());
            out.push(ChangelogRecord {
                offset: m.offset(),
                key,
                value: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis(),
                kind,
                epoch,
            });
        }
        Ok(())
    }

    fn position(&mut self) -> Option<i64> {
        let partition = self.partition? as i32;
        let tpl = self.consumer.position().ok()?;
        tpl.find_partition(&self.topic, partition).and_then(|e| e.offset().to_raw())
    }

    fn stop(&mut self) {
        self.partition = None;
        let _ = self.consumer.unassign();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_waits_briefly_and_fetches_at_most_4_mib_unless_told_otherwise() {
        let shared = ClientConfig::new();
        let reader = reader_config(&shared);
        assert_eq!(reader.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(reader.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(reader.get("fetch.max.bytes"), Some("4194304"));
        assert_eq!(reader.get("isolation.level"), Some("read_committed"));
        assert_eq!(reader.get("enable.auto.commit"), Some("false"));
        let mut told = ClientConfig::new();
        told.set("fetch.wait.max.ms", "250").set("group.id", "g").set("fetch.max.bytes", "1048576");
        let reader = reader_config(&told);
        assert_eq!(reader.get("fetch.wait.max.ms"), Some("250"), "kafka.librdkafka's own value");
        assert_eq!(reader.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(reader.get("group.id"), Some("g"));
    }
}
