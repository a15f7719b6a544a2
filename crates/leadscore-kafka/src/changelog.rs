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
        let mut config = config.clone();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed");
        // A group id is required by the client, never used: this reader assigns.
        if config.get("group.id").is_none() {
            config.set("group.id", "leadscore-restore");
        }
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
            let header = |name: &str| {
                m.headers().and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value.map(<[u8]>::to_vec)))
            };
            let key = m.key().unwrap_or_default().to_vec();
            let kind = ChangelogKind::of(&key, header(headers::CHANGELOG_RECORD).as_deref());
            let epoch = header(headers::CHANGELOG_EPOCH)
                .and_then(|v| String::from_utf8(v).ok())
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
