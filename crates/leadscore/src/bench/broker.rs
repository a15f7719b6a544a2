//! The broker a benchmark runs on: the in-process mock cluster, or an external
//! Kafka-protocol broker (tansu, Kafka) reached at a bootstrap address, where
//! the run's topics are created through the admin API.

use anyhow::{bail, Context};
use leadscore_kafka::embedded::EmbeddedBroker;
use leadscore_pipeline::Topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;

/// See the module documentation.
pub enum Broker {
    Embedded(EmbeddedBroker),
    External(String),
}

impl Broker {
    /// The mock cluster when `bootstrap` is `None`.
    pub fn new(bootstrap: Option<&str>, partitions: i32) -> anyhow::Result<Broker> {
        Ok(match bootstrap {
            Some(b) => Broker::External(b.to_string()),
            None => {
                let none = Topics { inputs: Default::default(), ..Topics::default() };
                let broker = EmbeddedBroker::start(&none, partitions).map_err(anyhow::Error::msg)?;
                Broker::Embedded(broker)
            }
        })
    }

    pub fn bootstrap_servers(&self) -> String {
        match self {
            Broker::Embedded(b) => b.bootstrap_servers(),
            Broker::External(b) => b.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Broker::Embedded(_) => "the in-process mock broker (librdkafka's mock cluster)".to_string(),
            Broker::External(b) => format!("the broker at {b}"),
        }
    }

    /// Creates `names` with `partitions` partitions each; those also in
    /// `compacted` with cleanup.policy=compact (the changelog: `run` refuses
    /// one that is not).
    pub fn create_topics(&self, names: &[String], partitions: i32, compacted: &[&str]) -> anyhow::Result<()> {
        match self {
            Broker::Embedded(b) => {
                for n in names {
                    b.create_topic(n, partitions).map_err(anyhow::Error::msg)?;
                }
                Ok(())
            }
            Broker::External(bootstrap) => create_external(bootstrap, names, partitions, compacted),
        }
    }

    /// Whether the broker has transactions; `Err` says why not. A whole
    /// transaction (one record to `probe_topic`, then commit), because some
    /// brokers hand out producer ids but have no EndTxn (tansu 0.6).
    pub fn transactions(&self, run: &str, probe_topic: &str) -> Result<(), String> {
        if let Broker::Embedded(_) = self {
            return Ok(());
        }
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("transactional.id", format!("{run}-probe"))
            .create()
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(10);
        let no = |e: rdkafka::error::KafkaError| format!("the broker has no transactions ({e})");
        producer.init_transactions(timeout).map_err(no)?;
        producer.begin_transaction().map_err(no)?;
        producer.send(BaseRecord::<[u8], [u8]>::to(probe_topic).payload(b"probe")).map_err(|(e, _)| no(e))?;
        producer.commit_transaction(timeout).map_err(no)
    }
}

fn create_external(bootstrap: &str, names: &[String], partitions: i32, compacted: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating an admin client")?;
    // tansu needs an explicit retention for topics that are read back.
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            let topic = NewTopic::new(n, partitions, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
            if compacted.contains(&n.as_str()) {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics(&topics, &options))
        .with_context(|| format!("creating the benchmark's topics on {bootstrap}"))?;
    for r in results {
        if let Err((topic, e)) = r {
            bail!("creating topic {topic} on {bootstrap}: {e}");
        }
    }
    Ok(())
}
