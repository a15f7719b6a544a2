//! leadscore's Kafka adapter: the runtime's ports on rdkafka. rdkafka types
//! stop here: messages become [`leadscore_pipeline::InputMessage`]s at the
//! edge, and the loop itself lives in `leadscore-pipeline`.
//!
//! # Layout
//!
//! - [`client`]: client configurations.
//! - [`source`]: the input consumer group ([`leadscore_pipeline::ports::Source`]).
//! - [`sink`]: the output producer, transactions included ([`leadscore_pipeline::ports::Sink`]).
//! - [`batch`]: the sink's records queued through topic handles it keeps (runs in librdkafka's batch call).
//! - [`changelog`]: the changelog reader for restores ([`leadscore_pipeline::ports::Changelog`]).
//! - [`embedded`]: the in-process broker of `leadscore demo` and `dev-broker`.
//! - [`events`]: producing input events (demo, `leadscore gen`, benchmarks, tests).
//! - [`topics`]: the topics a deployment needs, created and checked.

pub mod batch;
pub mod changelog;
pub mod client;
pub mod embedded;
pub mod events;
pub mod sink;
pub mod source;
pub mod topics;

pub use client::{client_config, group_consumer_config, KafkaSettings};

use leadscore_core::Model;
use leadscore_pipeline::ports::{Clock, PortError};
use leadscore_pipeline::runtime::{Guarantee, Ports, RunError, Runtime, RuntimeSettings};
use leadscore_store::writer::BackgroundWriter;
use leadscore_store::StateStore;
use leadscore_telemetry::Telemetry;
use std::sync::atomic::AtomicBool;

/// Kafka's default `max.message.bytes` of a topic.
const KAFKA_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Runs the runtime against Kafka until `shutdown` is set (then returns
/// `Ok`, everything taken committed) or it stops with an error.
pub fn run(
    kafka: &KafkaSettings,
    settings: &RuntimeSettings,
    model: &Model,
    store: &dyn StateStore,
    clock: &dyn Clock,
    shutdown: &AtomicBool,
    telemetry: &Telemetry,
) -> Result<(), RunError> {
    let config = group_consumer_config(&kafka.bootstrap_servers, &kafka.group_id, &kafka.librdkafka);
    let consumer: rdkafka::consumer::BaseConsumer<source::SourceContext> = config
        .create_with_context(source::SourceContext::default())
        .map_err(|e| RunError::Source(PortError::Fatal(format!("creating the consumer: {e}"))))?;
    let inputs: Vec<String> = settings.topics.inputs.keys().cloned().collect();
    let layout = topics::Layout::of(&settings.topics);
    let admin = topics::admin_client(&client_config(kafka)).map_err(|e| RunError::Source(PortError::Fatal(e)))?;
    let partitions = |topic: &str| topics::partitions_of(&consumer, topic);
    topics::check_for_run(&partitions, &admin, &layout, kafka.check_changelog_policy).map_err(|e| {
        let on = &kafka.bootstrap_servers;
        RunError::Source(match e {
            PortError::Fatal(m) => PortError::Fatal(format!("on {on}: {m}")),
            PortError::Retriable(m) => PortError::Retriable(format!("on {on}: {m}")),
            other => other,
        })
    })?;
    drop(admin);
    let mut source = source::KafkaSource::new(consumer, inputs).map_err(RunError::Source)?;
    let settle = leadscore_pipeline::ports::Source::settle(&source);
    let transactional = match settings.guarantee {
        Guarantee::ExactlyOnce => {
            Some(kafka.transactional_id.clone().unwrap_or_else(|| format!("{}-leadscore", kafka.group_id)))
        }
        Guarantee::AtLeastOnce => None,
    };
    let shared = client_config(kafka);
    let largest = leadscore_pipeline::messages::largest_record(model, &settings.limits);
    let max_bytes = client::producer_message_max_bytes(largest, &kafka.librdkafka)
        .map_err(|e| RunError::Sink(PortError::Fatal(e)))?;
    if largest > KAFKA_MAX_MESSAGE_BYTES {
        tracing::warn!(
            largest_record = largest,
            "records may be larger than Kafka's default max.message.bytes ({KAFKA_MAX_MESSAGE_BYTES}): raise it on \
             the dead-letter and changelog topics"
        );
    }
    let producer = client::producer_config(kafka, max_bytes);
    let mut sink =
        sink::KafkaSink::new(&producer, settings.topics.clone(), transactional.as_deref()).map_err(RunError::Sink)?;
    let mut changelog =
        changelog::KafkaChangelog::new(&shared, &settings.topics.changelog, std::time::Duration::from_secs(30))
            .map_err(RunError::Changelog)?;
    tracing::info!(group = %kafka.group_id, bootstrap = %kafka.bootstrap_servers, "joining the consumer group");
    // The store writes of commits go to their own thread; the scope ends
    // (the thread with it) once the runtime has returned.
    std::thread::scope(|scope| {
        let mut writer = BackgroundWriter::spawn(scope, store)?;
        let mut ports =
            Ports { source: &mut source, sink: &mut sink, changelog: &mut changelog, clock, writer: &mut writer };
        Runtime::new(settings, model, store, telemetry, settle).run(&mut ports, shutdown)
    })
}
