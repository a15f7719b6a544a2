//! The consume, process, produce, commit loop (at least once here; `commit` also
//! runs it as one Kafka transaction per batch for exactly once).
//!
//! Each poll batch is decoded into the [`Aligner`], which releases each
//! partition group's messages in event-time order across the input topics
//! (waiting at most `max_idle` for a topic that is behind). For each partition
//! with released messages: the processor computes the outputs and the state
//! write; the outputs are published and flushed (every
//! record acknowledged); then states, timers and input offsets are written to
//! the store in one batch; then the offsets are committed to Kafka,
//! asynchronously. A crash anywhere replays from the store's checkpoint: outputs
//! may repeat (same `lead_id`, `version`), state is never applied twice. Kafka's
//! committed offsets are never ahead of the store, and the processor skips what
//! the store has already applied.
//!
//! The loop runs on its own thread with a blocking consumer: rebalance callbacks
//! then run inside `poll`, between batches, so a revoked partition never has
//! work in flight. A newly assigned partition is paused in the callback; before
//! the next batch is processed, its state is restored from the changelog
//! ([`crate::restore`]) and it is resumed. Messages of a partition revoked
//! while a batch was being polled are dropped unprocessed: the new owner reads
//! them again from the last committed step.
//!
//! The default assignor is `range`: it gives the same-numbered partitions of
//! all input topics to one member, which co-partitioned topics need (one lead,
//! one owner). `cooperative-sticky` does not promise that; it is safe with a
//! single input topic (set `partition.assignment.strategy` in the librdkafka map).

use crate::counters::Counters;
use crate::producer::OutputProducer;
use crate::restore::Restorer;
use leadscore_core::{Millis, Model};
use leadscore_pipeline::{Aligner, Formats, InputMessage, Processor, Step, TimeMode, Topics};
use leadscore_store::{Counts, Op, Partition, StateStore, StoreError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topics: Topics,
    pub time_mode: TimeMode,
    /// Raw librdkafka options for both consumer and producer (security, tuning).
    pub librdkafka: BTreeMap<String, String>,
    /// Most messages per poll batch.
    pub max_batch: usize,
    /// How long a poll waits for the first message.
    pub poll_timeout: Duration,
    /// How often timers are checked with no input.
    pub tick_interval: Duration,
    /// How long a partition group waits for an input topic that is behind
    /// (see [`leadscore_pipeline::aligner`]).
    pub max_idle: Duration,
    pub delivery_timeout: Duration,
    /// How long a changelog restore may make no progress before it fails.
    pub restore_stall_timeout: Duration,
    pub formats: Formats,
    pub guarantee: Guarantee,
    /// The circuit breaker: the loop stops with an error when more than this
    /// share of `dead_letter_window` consecutive messages were dead-lettered
    /// (a topic mapped to the wrong kind or format). 1.0 never trips.
    pub dead_letter_max_share: f64,
    pub dead_letter_window: u64,
    /// The producer's transactional.id in exactly-once mode: stable per
    /// instance, so that a restarted instance fences its crashed predecessor
    /// and aborts its open transaction at once.
    pub transactional_id: String,
}

/// The processing guarantee (see the private `commit` function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

impl RunSettings {
    pub fn new(bootstrap_servers: &str, group_id: &str) -> RunSettings {
        RunSettings {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            topics: Topics::default(),
            time_mode: TimeMode::WallClock,
            librdkafka: BTreeMap::new(),
            max_batch: 5000,
            poll_timeout: Duration::from_millis(100),
            tick_interval: Duration::from_millis(100),
            max_idle: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(30),
            restore_stall_timeout: Duration::from_secs(60),
            formats: Formats::default(),
            guarantee: Guarantee::AtLeastOnce,
            dead_letter_max_share: 0.5,
            dead_letter_window: 1000,
            transactional_id: format!("{group_id}-leadscore"),
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing outputs: {0}")]
    Delivery(String),
    #[error("{0}")]
    TooManyDeadLetters(String),
}

pub(crate) fn kafka(e: impl std::fmt::Display) -> RunError {
    RunError::Kafka(e.to_string())
}

/// Options of the group consumer only: librdkafka warns when other clients
/// (the producer, the changelog reader) are given them.
const GROUP_CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
];

/// The input consumer's configuration: offsets committed by the loop, not
/// automatically; a new group starts at the earliest offset; only committed
/// transactional records; the range assignor unless `librdkafka` says
/// otherwise (co-partitioned topics need it). Also what `leadscore bench`'s
/// ceiling consumer uses, so that the two read alike.
pub fn group_consumer_config(bootstrap: &str, group: &str, librdkafka: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in librdkafka {
        c.set(k, v);
    }
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    for (key, default) in [("partition.assignment.strategy", "range"), ("statistics.interval.ms", "5000")] {
        if !librdkafka.contains_key(key) {
            c.set(key, default);
        }
    }
    c
}

/// The shared options (security, tuning) without the group consumer's.
fn client_config(s: &RunSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.bootstrap_servers);
    for (k, v) in s.librdkafka.iter().filter(|(k, _)| !GROUP_CONSUMER_ONLY.contains(&k.as_str())) {
        c.set(k, v);
    }
    c
}

/// A group membership change, seen in a rebalance callback and handled by the
/// loop between batches.
enum Change {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Records rebalances and pauses newly assigned partitions until restored;
/// keeps the consumer lag from librdkafka's statistics and whether every
/// broker is down.
#[derive(Default)]
struct Rebalances {
    changes: Mutex<Vec<Change>>,
    /// (topic, partition, messages behind the end).
    lag: Mutex<Vec<(String, i32, i64)>>,
    brokers_down: AtomicBool,
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: Statistics) {
        let mut lag = Vec::new();
        for (name, topic) in &statistics.topics {
            for (&p, partition) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if p >= 0 && partition.consumer_lag >= 0 {
                    lag.push((name.clone(), p, partition.consumer_lag));
                }
            }
        }
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
        self.brokers_down.store(false, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, consumer: &BaseConsumer<Rebalances>, rebalance: &Rebalance<'_>) {
        let elements = |tpl: &TopicPartitionList| -> Vec<(String, i32)> {
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
        };
        let change = match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = consumer.pause(tpl) {
                    tracing::error!(error = %e, "cannot pause newly assigned partitions");
                }
                Change::Assigned(elements(tpl))
            }
            Rebalance::Revoke(tpl) => Change::Revoked(elements(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.changes.lock().unwrap_or_else(|p| p.into_inner()).push(change);
    }
}

/// Runs until `shutdown` is set, then finishes the batch in hand and returns.
/// `clock` is the wall clock (the demo passes a compressed one).
pub fn run(
    settings: &RunSettings,
    model: &Model,
    store: &dyn StateStore,
    clock: &(dyn Fn() -> Millis + Sync),
    shutdown: &AtomicBool,
    counters: &Counters,
) -> Result<(), RunError> {
    let consumer_config = group_consumer_config(&settings.bootstrap_servers, &settings.group_id, &settings.librdkafka);
    counters.metrics.describe_model(model);
    let consumer: BaseConsumer<Rebalances> =
        consumer_config.create_with_context(Rebalances::default()).map_err(kafka)?;
    let inputs: Vec<&str> = settings.topics.inputs.keys().map(String::as_str).collect();
    check_co_partitioned(&consumer, settings)?;
    consumer.subscribe(&inputs).map_err(kafka)?;
    let transactional = (settings.guarantee == Guarantee::ExactlyOnce).then_some(settings.transactional_id.as_str());
    let producer = OutputProducer::new(&client_config(settings), settings.topics.clone(), transactional)?;
    let restorer = Restorer::new(&client_config(settings), &settings.topics.changelog, settings.restore_stall_timeout)?;
    let processor = Processor {
        formats: settings.formats.clone(),
        ..Processor::new(model, store, &settings.topics, settings.time_mode)
    };
    tracing::info!(group = %settings.group_id, topics = ?inputs, "consuming");
    let mut owned: BTreeMap<Partition, Counts> = BTreeMap::new();
    let mut dead_letters = DeadLetterLog::default();
    let mut breaker = (0u64, 0u64); // messages, dead letters in the current window
    let mut last_tick = Instant::now();
    // Holds co-partitioned topics' messages until they can go in event-time order.
    let mut aligner = Aligner::new(settings.topics.inputs.keys().cloned(), settings.max_idle.as_millis() as Millis);
    let started = Instant::now();
    // Logged at shutdown, for capacity planning and benchmarks.
    let mut time = LoopTime::default();
    while !shutdown.load(Ordering::Relaxed) {
        let polling = Instant::now();
        let batch = poll_batch(&consumer, settings)?;
        time.poll += polling.elapsed();
        if !batch.is_empty() {
            time.batches += 1;
            time.messages += batch.len() as u64;
            consumer.context().brokers_down.store(false, Ordering::Relaxed);
        }
        counters.brokers_down.store(consumer.context().brokers_down.load(Ordering::Relaxed), Ordering::Relaxed);
        let restoring = Instant::now();
        rebalanced(&consumer, &restorer, model, store, counters, &mut owned, &mut aligner)?;
        time.rebalance += restoring.elapsed();
        let processing = Instant::now();
        for m in batch {
            // A partition revoked mid-poll: its new owner processes these.
            if owned.contains_key(&m.partition) {
                aligner.push(processor.decode(m));
            }
        }
        let mut steps = Vec::new();
        let mut next_offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let now = started.elapsed().as_millis() as Millis;
        for partition in aligner.pending() {
            let mut ready = Vec::new();
            let mut caught_up = |topic: &str, next: Option<i64>| caught_up(&consumer, topic, partition, next);
            if aligner.release(partition, now, &mut caught_up, &mut ready).idle_expired {
                counters.metrics.merge_idle_expired.inc();
            }
            if ready.is_empty() {
                continue;
            }
            for a in &ready {
                next_offsets.insert((a.message.topic.clone(), partition as i32), a.message.offset + 1);
            }
            let messages = ready.len();
            let step = processor.process_arrivals(partition, ready, clock())?;
            dead_letters.add(&step.observations.dead_letters);
            steps.push((partition, step, messages));
        }
        counters.metrics.merge_held.set(aligner.buffered() as i64);
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &next_offsets {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next)).map_err(kafka)?;
        }
        for (_, step, messages) in &steps {
            breaker.0 += *messages as u64;
            breaker.1 += step.stats.dead_lettered;
        }
        let tripped = trips(&mut breaker, settings);
        time.process += processing.elapsed();
        let committing = Instant::now();
        if !steps.is_empty() {
            commit(steps, &offsets, &consumer, &producer, store, settings, counters, clock, &mut owned)?;
            if settings.guarantee == Guarantee::AtLeastOnce {
                // Best effort: the store's checkpoint is what restarts trust.
                if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
                    tracing::warn!(error = %e, "offset commit failed; the store checkpoint stays authoritative");
                }
            }
        }
        time.commit += committing.elapsed();
        if let Some(why) = tripped {
            // After the commit: the bad messages are in the dead-letter topic.
            tracing::error!(reason = %why, "stopping: too much bad input");
            return Err(RunError::TooManyDeadLetters(why));
        }
        if last_tick.elapsed() >= settings.tick_interval {
            last_tick = Instant::now();
            if settings.time_mode == TimeMode::WallClock {
                let mut steps = Vec::new();
                for &partition in owned.keys() {
                    let step = processor.tick(partition, clock())?;
                    if step.stats.timers_fired > 0 {
                        steps.push((partition, step, 0));
                    }
                }
                time.timers += last_tick.elapsed();
                if !steps.is_empty() {
                    let committing = Instant::now();
                    let none = TopicPartitionList::new();
                    commit(steps, &none, &consumer, &producer, store, settings, counters, clock, &mut owned)?;
                    time.commit += committing.elapsed();
                }
            }
            export_lag(&consumer, settings, counters);
            dead_letters.report();
        }
    }
    tracing::info!(
        poll_seconds = time.poll.as_secs_f64(),
        process_seconds = time.process.as_secs_f64(),
        wall_clock_timer_seconds = time.timers.as_secs_f64(),
        commit_seconds = time.commit.as_secs_f64(),
        rebalance_and_restore_seconds = time.rebalance.as_secs_f64(),
        batches = time.batches,
        messages = time.messages,
        "where the time went since the start"
    );
    tracing::info!("shutting down: the last batch is committed");
    producer.flush(settings.delivery_timeout).map_err(RunError::Delivery)?;
    Ok(())
}

/// Where the loop's time went: polling (waiting included), processing input,
/// firing wall-clock timers, committing (both kinds of step), and handling
/// rebalances (changelog restores included).
#[derive(Default)]
struct LoopTime {
    poll: Duration,
    process: Duration,
    timers: Duration,
    commit: Duration,
    rebalance: Duration,
    batches: u64,
    messages: u64,
}

/// Partition `p` of every input topic is one partition group with one state
/// and one changelog partition: the input topics and the changelog must exist
/// with the same number of partitions.
fn check_co_partitioned(consumer: &BaseConsumer<Rebalances>, settings: &RunSettings) -> Result<(), RunError> {
    let mut counts = Vec::new();
    let topics = settings.topics.inputs.keys().chain(std::iter::once(&settings.topics.changelog));
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).map_err(kafka)?;
        let t = metadata.topics().iter().find(|t| t.name() == topic);
        match t.filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
            Some(t) => counts.push((topic.as_str(), t.partitions().len())),
            None => {
                return Err(RunError::Kafka(format!(
                    "topic {topic:?} does not exist on {}: create the input topics and the changelog \
                     (compacted) with the same number of partitions",
                    settings.bootstrap_servers
                )))
            }
        }
    }
    if counts.iter().any(|(_, n)| *n != counts[0].1) {
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        return Err(RunError::Kafka(format!(
            "the input topics and the changelog must have the same number of partitions (partition p of each \
             is one lead's home); found {}",
            list.join(", ")
        )));
    }
    Ok(())
}

/// Applies the group changes seen since the last batch: forgets revoked
/// partitions, restores newly assigned ones from the changelog, then resumes
/// them.
fn rebalanced(
    consumer: &BaseConsumer<Rebalances>,
    restorer: &Restorer,
    model: &Model,
    store: &dyn StateStore,
    counters: &Counters,
    owned: &mut BTreeMap<Partition, Counts>,
    aligner: &mut Aligner,
) -> Result<(), RunError> {
    let changes = std::mem::take(&mut *consumer.context().changes.lock().unwrap_or_else(|p| p.into_inner()));
    let mut assigned: BTreeMap<Partition, Vec<(String, i32)>> = BTreeMap::new();
    for change in changes {
        let kind = if matches!(change, Change::Assigned(_)) { "assigned" } else { "revoked" };
        counters.metrics.rebalances.with_label_values(&[kind]).inc();
        match change {
            Change::Assigned(tps) => {
                // Joined the group (even with nothing to own): ready once restored.
                counters.consuming.store(true, Ordering::Relaxed);
                for (topic, p) in tps {
                    assigned.entry(p as Partition).or_default().push((topic, p));
                }
            }
            Change::Revoked(tps) => {
                let lost: BTreeSet<Partition> = tps.iter().map(|(_, p)| *p as Partition).collect();
                tracing::info!(partitions = ?lost, "partitions revoked");
                for p in lost {
                    owned.remove(&p);
                    assigned.remove(&p);
                    aligner.forget(p);
                }
                for (topic, p) in &tps {
                    let _ = counters.metrics.consumer_lag.remove_label_values(&[topic.as_str(), &p.to_string()]);
                }
            }
        }
    }
    let (mut restored, mut records) = (Vec::new(), 0);
    for (partition, tps) in assigned {
        records += restorer.restore(partition, store, model, counters)?.records;
        let checkpoint = store.checkpoint(partition)?.unwrap_or_default();
        aligner.assign(partition, &checkpoint.next_offsets);
        owned.insert(partition, checkpoint.counts);
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &tps {
            tpl.add_partition(topic, *p);
        }
        consumer.resume(&tpl).map_err(kafka)?;
        restored.push(partition);
    }
    if !restored.is_empty() {
        let all: Vec<&Partition> = owned.keys().collect();
        tracing::info!(
            assigned = ?restored, owned = ?all, restored_records = records,
            "partitions assigned, state restored from the changelog; consuming"
        );
    }
    counters.metrics.assigned_partitions.set(owned.len() as i64);
    *counters.owned.lock().unwrap_or_else(|p| p.into_inner()) = owned.keys().copied().collect();
    export_counts(owned, counters);
    Ok(())
}

/// Whether the broker has nothing at or after `next` in this topic-partition,
/// as of its last fetch response (librdkafka's cached high watermark: no
/// request is made). Unknown counts as not caught up, so the group waits (at
/// most `max_idle`). With transactional producers upstream the high watermark
/// includes the last commit marker, which is never fetched as a message: such
/// a topic counts as behind when it is not, and costs `max_idle` of latency
/// when it is the only one with nothing new.
fn caught_up(consumer: &BaseConsumer<Rebalances>, topic: &str, partition: Partition, next: Option<i64>) -> bool {
    let Ok(name) = std::ffi::CString::new(topic) else { return false };
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle is the live client owned by `consumer`; `name` and the
    // two out-parameters outlive the call, which only reads librdkafka's cache.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            name.as_ptr(),
            partition as i32,
            &mut low,
            &mut high,
        )
    };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
        return false;
    }
    match next {
        Some(next) => next >= high,
        // Nothing fetched and no checkpoint: caught up only if the partition is empty.
        None => low >= high,
    }
}

/// The circuit breaker's verdict on a full window, which it then resets.
fn trips(window: &mut (u64, u64), settings: &RunSettings) -> Option<String> {
    let (messages, dead) = *window;
    if messages < settings.dead_letter_window {
        return None;
    }
    *window = (0, 0);
    let share = dead as f64 / messages as f64;
    (share > settings.dead_letter_max_share).then(|| {
        format!(
            "{dead} of the last {messages} messages ({:.0}%) were bad input, more than \
             processing.dead_letter_max_share = {}: is an input topic mapped to the wrong kind or format? \
             They are in the dead-letter topic with their error classes.",
            share * 100.0,
            settings.dead_letter_max_share
        )
    })
}

/// Dead letters are reported in one line at most every ten seconds: the first
/// after a quiet spell at once, a burst as a summary by error class.
#[derive(Default)]
struct DeadLetterLog {
    pending: BTreeMap<&'static str, u64>,
    last_line: Option<Instant>,
}

impl DeadLetterLog {
    fn add(&mut self, classes: &std::collections::HashMap<&'static str, u64>) {
        for (class, n) in classes {
            *self.pending.entry(class).or_default() += n;
        }
        self.report();
    }

    fn report(&mut self) {
        if self.pending.is_empty() || self.last_line.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        let total: u64 = self.pending.values().sum();
        // Info, not warn: some bad input is normal (the breaker handles floods),
        // and the demo's live view shows warnings.
        tracing::info!(
            dead_letters = total, by_class = ?self.pending,
            "bad input sent to the dead-letter topic (see its leadscore.error.* headers)"
        );
        self.pending.clear();
        self.last_line = Some(Instant::now());
    }
}

fn export_counts(owned: &BTreeMap<Partition, Counts>, counters: &Counters) {
    let mut total = Counts::default();
    for c in owned.values() {
        total.add(c);
    }
    counters.metrics.set_counts(&total);
}

/// Copies the latest consumer lag of the input partitions into the metrics.
fn export_lag(consumer: &BaseConsumer<Rebalances>, settings: &RunSettings, counters: &Counters) {
    let lag = consumer.context().lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (topic, partition, behind) in lag {
        if settings.topics.inputs.contains_key(&topic) {
            counters.metrics.consumer_lag.with_label_values(&[topic.as_str(), &partition.to_string()]).set(behind);
        }
    }
}

/// Publishes the steps' outputs and makes them durable, then writes each
/// step's states with the changelog offset its marker got.
///
/// At least once: publish, wait until every record is acknowledged, then write
/// the store (input offsets are in it). Exactly once: outputs, changelog and
/// the input offsets go in one Kafka transaction; the store is written after
/// the commit (a crash in between is repaired by the changelog restore, which
/// reads committed records only). A transaction that fails is aborted and the
/// loop stops with the error: a restart resumes from the last commit.
#[allow(clippy::too_many_arguments)]
fn commit(
    mut steps: Vec<(Partition, Step, usize)>,
    offsets: &TopicPartitionList,
    consumer: &BaseConsumer<Rebalances>,
    producer: &OutputProducer,
    store: &dyn StateStore,
    settings: &RunSettings,
    counters: &Counters,
    clock: &(dyn Fn() -> Millis + Sync),
    owned: &mut BTreeMap<Partition, Counts>,
) -> Result<(), RunError> {
    let started = Instant::now();
    match settings.guarantee {
        Guarantee::AtLeastOnce => {
            for (_, step, _) in &steps {
                producer.send_all(&step.outputs).map_err(RunError::Delivery)?;
            }
            producer.flush(settings.delivery_timeout).map_err(RunError::Delivery)?;
        }
        Guarantee::ExactlyOnce => {
            let transaction = || -> Result<(), String> {
                producer.begin().map_err(|e| e.to_string())?;
                for (_, step, _) in &steps {
                    producer.send_all(&step.outputs)?;
                }
                if offsets.count() > 0 {
                    let group = consumer.group_metadata().ok_or("no consumer group metadata")?;
                    producer.send_offsets(offsets, &group, settings.delivery_timeout).map_err(|e| e.to_string())?;
                }
                producer.commit(settings.delivery_timeout).map_err(|e| e.to_string())
            };
            if let Err(e) = transaction() {
                let aborted = producer.abort(settings.delivery_timeout);
                return Err(RunError::Delivery(format!(
                    "transaction failed and was {}: {e}",
                    if aborted.is_ok() { "aborted" } else { "not even aborted" }
                )));
            }
        }
    }
    // One store write for the whole poll batch: with many partitions, a
    // write (and its WAL append) per partition step was a large share of the
    // loop's time. It is also atomic across the batch's partitions.
    let writing = Instant::now();
    let mut batch = leadscore_store::WriteBatch::default();
    let mut counts = Vec::with_capacity(steps.len());
    for (partition, step, _) in &mut steps {
        if let Some(offset) = producer.take_marker_offset(*partition) {
            step.write.set_changelog_next_offset(*partition, offset + 1);
        }
        counts.push(step.write.ops.iter().rev().find_map(|op| match op {
            Op::Checkpoint { partition: p, checkpoint } if p == partition => Some(checkpoint.counts.clone()),
            _ => None,
        }));
        batch.ops.append(&mut step.write.ops);
    }
    store.write(&batch)?;
    let m = &counters.metrics;
    m.store_write_duration.observe(writing.elapsed().as_secs_f64());
    m.commit_duration.observe(started.elapsed().as_secs_f64());
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let now = clock();
    for ((partition, mut step, messages), counts) in steps.into_iter().zip(counts) {
        m.observe(&settings.topics, &step.observations, step.stats.score_changes, now, wall as Millis);
        counters.add(messages, &step.stats);
        counters.note_published(std::mem::take(&mut step.observations.published));
        if let (Some(counts), Some(at)) = (counts, owned.get_mut(&partition)) {
            *at = counts;
        }
    }
    // Once per batch: the totals sum every owned partition.
    export_counts(owned, counters);
    Ok(())
}

/// Up to `max_batch` messages: waits up to `poll_timeout` for the first, then
/// takes what is already fetched.
fn poll_batch(consumer: &BaseConsumer<Rebalances>, settings: &RunSettings) -> Result<Vec<InputMessage>, RunError> {
    let mut out = Vec::new();
    let mut timeout = settings.poll_timeout;
    while out.len() < settings.max_batch {
        match consumer.poll(timeout) {
            None => break,
            Some(Err(e)) => {
                // Transient broker errors are reported here; librdkafka retries.
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Some(Ok(m)) => out.push(InputMessage {
                topic: m.topic().to_string(),
                partition: m.partition() as u32,
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis(),
            }),
        }
        timeout = Duration::ZERO;
    }
    Ok(out)
}
