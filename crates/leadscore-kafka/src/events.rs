//! Producing input events (raw bytes keyed by lead id) to any broker: the
//! demo's generator, `leadscore gen` and the benchmark's load, and tests.
//! Failed deliveries are counted and reported by [`EventProducer::flush`], so a
//! load that did not arrive is an error, not a silent shortfall.

use crate::sink::{send_waiting, wait_delivered};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counts failed deliveries; the first error is kept for the report.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// See the module documentation.
pub struct EventProducer {
    producer: ThreadedProducer<Deliveries>,
}

impl EventProducer {
    /// An idempotent producer with a 5 ms linger and the Java client's
    /// partitioner (as most producers of a platform team's topics use).
    pub fn new(bootstrap_servers: &str) -> Result<EventProducer, KafkaError> {
        EventProducer::with_options(bootstrap_servers, &[])
    }

    /// [`EventProducer::new`] with librdkafka options added or overridden
    /// (batching, queue sizes, security).
    pub fn with_options(bootstrap_servers: &str, options: &[(String, String)]) -> Result<EventProducer, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("partitioner", crate::client::JAVA_COMPATIBLE_PARTITIONER);
        for (k, v) in options {
            config.set(k, v);
        }
        Ok(EventProducer { producer: config.create_with_context(Deliveries::default())? })
    }

    /// Queues one message, waiting while the local queue is full.
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), KafkaError> {
        send_waiting(&self.producer, BaseRecord::to(topic).key(key).payload(payload))
    }

    /// [`EventProducer::send`] to a given partition.
    pub fn send_to(&self, topic: &str, partition: i32, key: &[u8], payload: &[u8]) -> Result<(), KafkaError> {
        send_waiting(&self.producer, BaseRecord::to(topic).partition(partition).key(key).payload(payload))
    }

    /// Waits until every queued message is acknowledged; fails if any was not
    /// delivered since the producer was created.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        wait_delivered(&self.producer, timeout).map_err(|e| format!("not delivered within {timeout:?}: {e}"))?;
        let ctx = self.producer.context();
        match ctx.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => {
                let first = ctx.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
                Err(format!("{n} messages were not delivered (first error: {first})"))
            }
        }
    }
}
