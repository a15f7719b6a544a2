//! The embedded broker of `leadscore demo`: librdkafka's in-process mock cluster
//! with leadscore's topics. (Input events are produced with
//! [`crate::events::EventProducer`].)
//!
//! The mock cluster is not `Send` (it owns a librdkafka handle): keep it on the
//! thread that created it; clients on other threads reach it through
//! [`EmbeddedBroker::bootstrap_servers`].

use leadscore_pipeline::Topics;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

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
