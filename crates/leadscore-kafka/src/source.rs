//! The input consumer group as the runtime's [`Source`]: a blocking rdkafka
//! consumer whose rebalance callbacks run inside `poll`, so that assignments
//! and revocations are reported between the messages they came between.
//! Newly assigned partitions are paused in the callback until the runtime has
//! restored them.
//!
//! Where a topic-partition stands ([`Source::position`]) comes from
//! librdkafka's cached high watermark, updated by every fetch response (no
//! request is made). A fetch response is parsed partition by partition (each
//! partition's high watermark, then its messages), so a message of one
//! partition can be polled before the high watermark of the next one in the
//! same response is updated: a "caught up" verdict is only trusted for
//! messages polled at least [`SETTLE`] ago ([`Source::settle`]).

use leadscore_pipeline::ports::{GroupMetadata, PortError, Source, SourceEvent, SourceHealth, TopicOffset};
use leadscore_pipeline::{InputMessage, Position};
use leadscore_store::Partition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long after a message was polled a caught-up verdict about the other
/// topics of its group is trusted: far longer than parsing one fetch response.
pub const SETTLE: Duration = Duration::from_millis(10);

/// A group membership change, seen in a rebalance callback.
enum Change {
    Assigned(Vec<Partition>),
    Revoked(Vec<Partition>),
}

/// Records rebalances and pauses newly assigned partitions until restored;
/// keeps the consumer lag from librdkafka's statistics and whether every
/// broker is down.
#[derive(Default)]
pub struct SourceContext {
    changes: Mutex<Vec<Change>>,
    /// (topic, partition, messages behind the end).
    lag: Mutex<Vec<(String, Partition, i64)>>,
    brokers_down: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = Vec::new();
        for (name, topic) in &statistics.topics {
            for (&p, partition) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if p >= 0 && partition.consumer_lag >= 0 {
                    lag.push((name.clone(), p as Partition, partition.consumer_lag));
                }
            }
        }
        *lock(&self.lag) = lag;
        self.brokers_down.store(false, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    let mut v: Vec<Partition> = tpl.elements().iter().map(|e| e.partition() as Partition).collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<SourceContext>, rebalance: &Rebalance<'_>) {
        let change = match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = consumer.pause(tpl) {
                    tracing::error!(error = %e, "cannot pause newly assigned partitions");
                }
                Change::Assigned(partitions(tpl))
            }
            Rebalance::Revoke(tpl) => Change::Revoked(partitions(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        lock(&self.changes).push(change);
    }
}

/// See the module documentation.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topics: Vec<String>,
}

impl KafkaSource {
    /// Subscribes `consumer` to the input `topics`.
    pub fn new(consumer: BaseConsumer<SourceContext>, topics: Vec<String>) -> Result<KafkaSource, PortError> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| PortError::Fatal(format!("subscribing to {names:?}: {e}")))?;
        Ok(KafkaSource { consumer, topics })
    }

    pub fn consumer(&self) -> &BaseConsumer<SourceContext> {
        &self.consumer
    }

    fn take_changes(&self, out: &mut Vec<SourceEvent>) {
        for change in lock(&self.consumer.context().changes).drain(..) {
            out.push(match change {
                Change::Assigned(p) => SourceEvent::Assigned(p),
                Change::Revoked(p) => SourceEvent::Revoked(p),
            });
        }
    }

    fn group_tpl(&self, partition: Partition) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            tpl.add_partition(topic, partition as i32);
        }
        tpl
    }
}

/// The consumer group generation, read from librdkafka's serialized group
/// metadata ("CGMDv2:" then the generation id, native endian); 0 if unknown.
fn generation(consumer: &BaseConsumer<SourceContext>) -> i64 {
    use rdkafka::bindings as rd;
    // SAFETY: the handle is the live client owned by `consumer`. The metadata
    // object and the buffer are created, read and freed here; the buffer is
    // read only within its `size`.
    unsafe {
        let rk = consumer.client().native_ptr();
        let cgmd = rd::rd_kafka_consumer_group_metadata(rk);
        if cgmd.is_null() {
            return 0;
        }
        let mut buffer: *mut std::ffi::c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let error = rd::rd_kafka_consumer_group_metadata_write(cgmd, &mut buffer, &mut size);
        let mut generation = 0;
        if error.is_null() && !buffer.is_null() {
            let bytes = std::slice::from_raw_parts(buffer as *const u8, size);
            if let (Some(b"CGMDv2:"), Some(id)) = (bytes.get(..7), bytes.get(7..11)) {
                generation = i32::from_ne_bytes(id.try_into().expect("4 bytes")).max(0) as i64;
            }
            rd::rd_kafka_mem_free(rk, buffer);
        } else if !error.is_null() {
            rd::rd_kafka_error_destroy(error);
        }
        rd::rd_kafka_consumer_group_metadata_destroy(cgmd);
        generation
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, timeout: Duration, max: usize, out: &mut Vec<SourceEvent>) -> Result<(), PortError> {
        let mut timeout = timeout;
        let mut messages = 0;
        while messages < max {
            let polled = self.consumer.poll(timeout);
            // Rebalance callbacks ran inside that poll, before its message.
            self.take_changes(out);
            match polled {
                None => break,
                Some(Err(e)) => {
                    // Transient broker errors are reported here; librdkafka retries.
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    let partition = m.partition() as Partition;
                    messages += 1;
                    out.push(SourceEvent::Message(InputMessage {
                        topic: m.topic().to_string(),
                        partition,
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        timestamp: m.timestamp().to_millis(),
                    }));
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(())
    }

    fn position(&mut self, topic: &str, partition: Partition, next: Option<i64>) -> Position {
        let Ok(name) = std::ffi::CString::new(topic) else { return Position::Unknown };
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the handle is the live client owned by `consumer`; `name` and the
        // two out-parameters outlive the call, which only reads librdkafka's cache.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                name.as_ptr(),
                partition as i32,
                &mut low,
                &mut high,
            )
        };
        if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
            return Position::Unknown;
        }
        let behind = match next {
            Some(next) => next < high,
            // Nothing fetched and no checkpoint: caught up only if the partition is empty.
            None => low < high,
        };
        if behind {
            Position::Behind
        } else {
            Position::CaughtUp
        }
    }

    fn settle(&self) -> Duration {
        SETTLE
    }

    fn resume(&mut self, partition: Partition) -> Result<(), PortError> {
        self.consumer
            .resume(&self.group_tpl(partition))
            .map_err(|e| PortError::Retriable(format!("resuming partition {partition}: {e}")))
    }

    fn pause(&mut self, partition: Partition) -> Result<(), PortError> {
        self.consumer
            .pause(&self.group_tpl(partition))
            .map_err(|e| PortError::Retriable(format!("pausing partition {partition}: {e}")))
    }

    fn commit(&mut self, offsets: &[TopicOffset]) -> Result<(), PortError> {
        let mut tpl = TopicPartitionList::new();
        for o in offsets {
            tpl.add_partition_offset(&o.topic, o.partition as i32, Offset::Offset(o.next))
                .map_err(|e| PortError::Retriable(e.to_string()))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, CommitMode::Async).map_err(|e| PortError::Retriable(e.to_string()))
    }

    fn group(&self) -> Option<GroupMetadata> {
        let metadata = self.consumer.group_metadata()?;
        Some(GroupMetadata { generation: generation(&self.consumer), token: Some(Arc::new(metadata)) })
    }

    fn health(&mut self) -> SourceHealth {
        let ctx = self.consumer.context();
        SourceHealth { brokers_down: ctx.brokers_down.load(Ordering::Relaxed), lag: lock(&ctx.lag).clone() }
    }
}
