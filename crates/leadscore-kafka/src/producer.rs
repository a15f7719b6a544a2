//! Publishing output records: an idempotent producer whose delivery reports are
//! served by its own thread, and a flush that tells whether every record of a
//! batch was delivered (the loop commits state only after that).

use leadscore_pipeline::{OutputRecord, Topics};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counts failed deliveries and keeps the last error.
#[derive(Default)]
pub struct DeliveryTracker {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// The output producer.
pub struct OutputProducer {
    producer: ThreadedProducer<DeliveryTracker>,
    topics: Topics,
}

impl OutputProducer {
    pub fn new(config: &ClientConfig, topics: Topics) -> Result<OutputProducer, KafkaError> {
        let mut config = config.clone();
        // Idempotence: retries never duplicate or reorder a lead's records.
        config.set("enable.idempotence", "true").set("linger.ms", "5");
        Ok(OutputProducer { producer: config.create_with_context(DeliveryTracker::default())?, topics })
    }

    /// Queues every record, in order.
    pub fn send_all(&self, records: &[OutputRecord]) -> Result<(), String> {
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(self.topics.name(r.topic)).headers(headers);
            if let Some(k) = &r.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p as i32);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // Backpressure: the local queue is full; wait for deliveries.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(format!("cannot queue a record for {}: {e}", self.topics.name(r.topic))),
                }
            }
        }
        Ok(())
    }

    /// Waits until every queued record is delivered; fails if any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        let before = self.producer.context().failed.load(Ordering::Relaxed);
        self.producer.flush(timeout).map_err(|e| format!("outputs not delivered within {timeout:?}: {e}"))?;
        let ctx = self.producer.context();
        if ctx.failed.load(Ordering::Relaxed) != before {
            let last = ctx.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
            return Err(format!("some outputs were not delivered: {last}"));
        }
        Ok(())
    }
}
