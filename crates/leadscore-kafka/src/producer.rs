//! Publishing output records: an idempotent producer whose delivery reports are
//! served by its own thread, and a flush that tells whether every record of a
//! batch was delivered (the loop commits state only after that) and at which
//! changelog offset each partition's step ended.

use leadscore_pipeline::{OutputRecord, Topics};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Waits until nothing `producer` queued is in flight, with librdkafka's own
/// flush. Every producer of leadscore flushes with this.
///
/// rdkafka's `flush` calls `rd_kafka_flush` with no wait and then polls the
/// event queue for up to 100 ms at a time; but a `ThreadedProducer`'s own
/// thread serves that queue, so the poll sleeps its full 100 ms. Measured with
/// `leadscore bench`: a mean commit of 105 ms per batch, which capped the
/// pipeline at about 30k events/s. librdkafka's flush, with delivery reports
/// as events, waits on its message count instead, and also makes `linger.ms`
/// immediate while it waits.
pub fn wait_delivered<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the handle is the live client owned by `producer`, valid for the
    // duration of the call; rd_kafka_flush is thread-safe.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::Flush(code)),
    }
}

/// Queues one record, waiting while the local queue is full (backpressure:
/// deliveries make room).
pub fn send_waiting<'a, C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Counts failed deliveries, keeps the last error, and the offsets of the
/// delivered changelog checkpoint markers.
#[derive(Default)]
pub struct DeliveryTracker {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Partition -> offset of its latest delivered checkpoint marker.
    markers: Mutex<HashMap<u32, i64>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    /// 0, or 1 + the partition of a checkpoint marker.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, marker: usize) {
        match result {
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            Ok(m) if marker > 0 => {
                let mut markers = self.markers.lock().unwrap_or_else(|p| p.into_inner());
                let at = markers.entry(marker as u32 - 1).or_insert(m.offset());
                *at = (*at).max(m.offset());
            }
            Ok(_) => {}
        }
    }
}

/// The output producer.
pub struct OutputProducer {
    producer: ThreadedProducer<DeliveryTracker>,
    topics: Topics,
}

impl OutputProducer {
    /// With a `transactional_id`, the producer is transactional: its
    /// transactions are initialised here (fencing an earlier producer with the
    /// same id and aborting what it left open).
    pub fn new(
        config: &ClientConfig,
        topics: Topics,
        transactional_id: Option<&str>,
    ) -> Result<OutputProducer, crate::RunError> {
        let kafka = |e: KafkaError| crate::RunError::Kafka(e.to_string());
        let mut config = config.clone();
        // Idempotence: retries never duplicate or reorder a lead's records.
        config.set("enable.idempotence", "true").set("linger.ms", "5");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        let producer: ThreadedProducer<DeliveryTracker> =
            config.create_with_context(DeliveryTracker::default()).map_err(kafka)?;
        if transactional_id.is_some() {
            producer.init_transactions(Duration::from_secs(60)).map_err(|e| {
                crate::RunError::Kafka(format!("initialising transactions (does the broker support them?): {e}"))
            })?;
        }
        Ok(OutputProducer { producer, topics })
    }

    pub fn begin(&self) -> Result<(), KafkaError> {
        self.producer.begin_transaction()
    }

    /// Adds the consumer's input offsets to the open transaction.
    pub fn send_offsets(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        self.producer.send_offsets_to_transaction(offsets, group, timeout)
    }

    /// Commits the open transaction (flushing its records first).
    pub fn commit(&self, timeout: Duration) -> Result<(), KafkaError> {
        // rdkafka's commit_transaction flushes with its slow flush first; with
        // nothing left in flight that returns at once.
        wait_delivered(&self.producer, timeout)?;
        self.producer.commit_transaction(timeout)
    }

    pub fn abort(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.abort_transaction(timeout)
    }

    /// Queues every record, in order.
    pub fn send_all(&self, records: &[OutputRecord]) -> Result<(), String> {
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            let opaque = if r.is_checkpoint_marker() { r.partition.map_or(0, |p| p as usize + 1) } else { 0 };
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(self.topics.name(r.topic), opaque).headers(headers);
            if let Some(k) = &r.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p as i32);
            }
            send_waiting(&self.producer, record)
                .map_err(|e| format!("cannot queue a record for {}: {e}", self.topics.name(r.topic)))?;
        }
        Ok(())
    }

    /// The offset of the latest delivered checkpoint marker of `partition`
    /// since the last call.
    pub fn take_marker_offset(&self, partition: u32) -> Option<i64> {
        self.producer.context().markers.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition)
    }

    /// Waits until every queued record is delivered; fails if any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        let before = self.producer.context().failed.load(Ordering::Relaxed);
        wait_delivered(&self.producer, timeout)
            .map_err(|e| format!("outputs not delivered within {timeout:?}: {e}"))?;
        let ctx = self.producer.context();
        if ctx.failed.load(Ordering::Relaxed) != before {
            let last = ctx.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
            return Err(format!("some outputs were not delivered: {last}"));
        }
        Ok(())
    }
}
