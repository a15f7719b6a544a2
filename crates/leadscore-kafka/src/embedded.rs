//! The embedded broker of `leadscore demo`: librdkafka's in-process mock cluster
//! with leadscore's topics, and a producer of input events.
//!
//! The mock cluster is not `Send` (it owns a librdkafka handle): keep it on the
//! thread that created it; clients on other threads reach it through
//! [`EmbeddedBroker::bootstrap_servers`].

use leadscore_pipeline::Topics;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::Duration;

/// See the module documentation.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster and creates the input topics (with
    /// `partitions` partitions), the output topics and the changelog.
    pub fn start(topics: &Topics, partitions: i32) -> Result<EmbeddedBroker, String> {
        let cluster = MockCluster::new(1).map_err(|e| format!("cannot start the embedded broker: {e}"))?;
        let create =
            |t: &str, p: i32| cluster.create_topic(t, p, 1).map_err(|e| format!("cannot create topic {t}: {e}"));
        for t in topics.inputs.keys() {
            create(t, partitions)?;
        }
        create(&topics.changelog, partitions)?;
        for t in [&topics.score_changes, &topics.transitions, &topics.dead_letters] {
            create(t, partitions)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    /// Creates one more topic (e.g. per run of a benchmark).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        self.cluster.create_topic(name, partitions, 1).map_err(|e| format!("cannot create topic {name}: {e}"))
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// Produces raw input messages (JSON bytes keyed by lead id).
pub struct EventProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl EventProducer {
    pub fn new(bootstrap_servers: &str) -> Result<EventProducer, KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(EventProducer { producer })
    }

    /// Queues one message, waiting while the local queue is full.
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), KafkaError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
