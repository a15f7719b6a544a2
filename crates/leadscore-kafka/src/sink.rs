//! The output producer as the runtime's [`Sink`]: an idempotent (or, for
//! exactly once, transactional) producer whose delivery reports are served by
//! its own thread; a flush that tells whether every record since the last one
//! was delivered and at which changelog offset each partition's step ended.

use crate::batch::{self, Batcher};
use leadscore_pipeline::ports::{Acked, GroupMetadata, Mark, PortError, Sink, TopicOffset};
use leadscore_pipeline::{OutputRecord, OutputTopic, Topics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
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

/// What the delivery reports said of the records of one epoch (those sent
/// between two [`Sink::mark`]s).
#[derive(Default)]
struct Epoch {
    /// Sent and not yet reported.
    in_flight: AtomicU64,
    failed: AtomicU64,
    /// Partition -> offset of its latest delivered checkpoint marker.
    markers: Mutex<BTreeMap<u32, i64>>,
}

/// Counts the records in flight and the failed deliveries of the current
/// epoch and the one before it (at most two are open: an epoch is marked
/// only once the one before it was found delivered), keeps the last error,
/// and the offsets of the delivered changelog checkpoint markers.
#[derive(Default)]
pub struct DeliveryTracker {
    epochs: [Epoch; 2],
    /// Records of [`Sink::send_awaited`] not yet reported, and how many of
    /// them failed.
    awaited: AtomicU64,
    awaited_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record's delivery opaque: the parity of its epoch (bit 0), whether
/// [`Sink::send_awaited`] waits for it (bit 1), and 1 + the partition of a
/// checkpoint marker (0 for any other record) above those.
fn opaque(epoch: u64, awaited: bool, marker: Option<u32>) -> usize {
    (epoch & 1) as usize | (awaited as usize) << 1 | marker.map_or(0, |p| p as usize + 1) << 2
}

const AWAITED: usize = 2;

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    /// The parity of the record's epoch, whether it is awaited, and its
    /// marker's partition (see `opaque`).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let epoch = &self.epochs[opaque & 1];
        let marker = opaque >> 2;
        match result {
            Err((e, _)) => {
                epoch.failed.fetch_add(1, Ordering::Relaxed);
                if opaque & AWAITED != 0 {
                    self.awaited_failed.fetch_add(1, Ordering::Relaxed);
                }
                *lock(&self.last_error) = Some(e.to_string());
            }
            Ok(m) if marker > 0 => {
                let mut markers = lock(&epoch.markers);
                let at = markers.entry(marker as u32 - 1).or_insert(m.offset());
                *at = (*at).max(m.offset());
            }
            Ok(_) => {}
        }
        // Last, so that whoever sees the epoch drained sees its failures
        // and markers too.
        epoch.in_flight.fetch_sub(1, Ordering::AcqRel);
        if opaque & AWAITED != 0 {
            self.awaited.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl DeliveryTracker {
    /// Failures reported for the epoch of parity `parity` since the last
    /// call, and its marker offsets delivered meanwhile.
    fn take(&self, parity: usize) -> (u64, Acked) {
        let epoch = &self.epochs[parity];
        let failed = epoch.failed.swap(0, Ordering::Relaxed);
        (failed, Acked { markers: std::mem::take(&mut *lock(&epoch.markers)) })
    }

    /// The same for both epochs (any record sent since the previous flush).
    fn take_all(&self) -> (u64, Acked) {
        let (mut failed, mut acked) = self.take(0);
        let (more, other) = self.take(1);
        failed += more;
        for (partition, offset) in other.markers {
            let at = acked.markers.entry(partition).or_insert(offset);
            *at = (*at).max(offset);
        }
        (failed, acked)
    }

    fn in_flight(&self, parity: usize) -> u64 {
        self.epochs[parity].in_flight.load(Ordering::Acquire)
    }
}

/// See the module documentation.
pub struct KafkaSink {
    /// Declared before the producer: its topic handles close first.
    batcher: Batcher,
    producer: ThreadedProducer<DeliveryTracker>,
    topics: Topics,
    /// The epoch of the records sent now (see [`Sink::mark`]).
    epoch: u64,
}

/// The order in which a send queues its records' topics.
const TOPICS: [OutputTopic; 4] =
    [OutputTopic::ScoreChanges, OutputTopic::Transitions, OutputTopic::DeadLetters, OutputTopic::Changelog];

/// A Kafka error as a port error: fenced by a newer producer, fatal, or
/// worth a restart from the last commit.
fn port_error(what: &str, e: KafkaError) -> PortError {
    let message = format!("{what}: {e}");
    if let KafkaError::Transaction(t) = &e {
        if matches!(t.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) {
            return PortError::Fenced(message);
        }
        if t.is_fatal() {
            return PortError::Fatal(message);
        }
    }
    PortError::Retriable(message)
}

impl KafkaSink {
    /// With a `transactional_id`, the producer is transactional: its
    /// transactions are initialised here (fencing an earlier producer with the
    /// same id and aborting what it left open).
    pub fn new(config: &ClientConfig, topics: Topics, transactional_id: Option<&str>) -> Result<KafkaSink, PortError> {
        let mut config = config.clone();
        // Idempotence: retries never duplicate or reorder a lead's records.
        // Gapless: a record that fails makes every later one fail too (the
        // producer stops with a fatal error), so a changelog checkpoint marker
        // never lands after a state record of its step that did not: a
        // restore that trusts the marker would skip that lead's events.
        config.set("enable.idempotence", "true").set("enable.gapless.guarantee", "true").set("linger.ms", "5");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        let producer: ThreadedProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| PortError::Fatal(format!("creating the producer: {e}")))?;
        if transactional_id.is_some() {
            producer
                .init_transactions(Duration::from_secs(60))
                .map_err(|e| port_error("initialising transactions (does the broker support them?)", e))?;
        }
        Ok(KafkaSink { batcher: Batcher::new(), producer, topics, epoch: 0 })
    }

    fn failures(&self) -> Result<Acked, PortError> {
        failed_or(self.producer.context().take_all(), self.producer.context())
    }

    /// Queues records, in order within each topic, counted in the current
    /// epoch (and as awaited).
    fn queue(&mut self, records: &[OutputRecord], awaited: bool) -> Result<(), PortError> {
        let tracker = self.producer.context();
        // Counted in flight once for the whole batch, before any is sent (a
        // delivery report must never find the count at zero), rather than
        // per record on counters the delivery thread writes too.
        let in_flight = &tracker.epochs[(self.epoch & 1) as usize].in_flight;
        let count = records.len() as u64;
        in_flight.fetch_add(count, Ordering::AcqRel);
        if awaited {
            tracker.awaited.fetch_add(count, Ordering::AcqRel);
        }
        let rk = self.producer.client().native_ptr();
        let mut queued = 0;
        let mut failed = None;
        // Topic by topic: Kafka orders records only within a partition, and
        // a topic's records keep their order here, so that each topic's runs
        // of batchable records are as long as the send allows (a step's
        // score changes and transitions alternate).
        'topics: for topic in TOPICS {
            let mut rest = records.iter().filter(|r| r.topic == topic).peekable();
            while rest.peek().is_some() {
                let run = std::iter::from_fn(|| rest.next_if(|r| batch::batchable(r)));
                let name = self.topics.name(topic);
                match self.batcher.produce(rk, topic, name, run, opaque(self.epoch, awaited, None)) {
                    Ok(n) => queued += n,
                    Err(refused) => {
                        queued += refused.queued;
                        failed = Some((topic, refused.error));
                        break 'topics;
                    }
                }
                let Some(r) = rest.next() else { break };
                let marker = if r.is_checkpoint_marker() { r.partition } else { None };
                let name = self.topics.name(topic);
                match self.batcher.produce_one(rk, topic, name, r, opaque(self.epoch, awaited, marker)) {
                    Ok(()) => queued += 1,
                    Err(e) => {
                        failed = Some((topic, e));
                        break 'topics;
                    }
                }
            }
        }
        if let Some((topic, e)) = failed {
            // The records librdkafka did not take will never be reported.
            let unsent = count - queued as u64;
            in_flight.fetch_sub(unsent, Ordering::AcqRel);
            if awaited {
                tracker.awaited.fetch_sub(unsent, Ordering::AcqRel);
            }
            return Err(port_error(&format!("queueing a record for {}", self.topics.name(topic)), e));
        }
        Ok(())
    }
}

/// The acknowledged markers, or an error if any delivery failed.
fn failed_or((failed, acked): (u64, Acked), tracker: &DeliveryTracker) -> Result<Acked, PortError> {
    if failed > 0 {
        let last = lock(&tracker.last_error).clone().unwrap_or_default();
        return Err(PortError::Retriable(format!("{failed} output record(s) were not delivered: {last}")));
    }
    Ok(acked)
}

impl Sink for KafkaSink {
    fn send(&mut self, records: &[OutputRecord]) -> Result<(), PortError> {
        self.queue(records, false)
    }

    fn flush(&mut self, timeout: Duration) -> Result<Acked, PortError> {
        wait_delivered(&self.producer, timeout)
            .map_err(|e| PortError::Retriable(format!("outputs not delivered within {timeout:?}: {e}")))?;
        self.failures()
    }

    /// Waits in slices of librdkafka's flush: while one runs, `linger.ms` is
    /// immediate, so the awaited records leave at once; between slices the
    /// awaited count says whether they are through.
    fn send_awaited(&mut self, records: &[OutputRecord], timeout: Duration) -> Result<Acked, PortError> {
        self.queue(records, true)?;
        let tracker = self.producer.context();
        let deadline = std::time::Instant::now() + timeout;
        while tracker.awaited.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                return Err(PortError::Retriable(format!("awaited records not delivered within {timeout:?}")));
            }
            // Times out as a rule (other records are in flight too): only
            // the awaited count matters.
            let _ = wait_delivered(&self.producer, Duration::from_millis(1));
        }
        let failed = tracker.awaited_failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = lock(&tracker.last_error).clone().unwrap_or_default();
            return Err(PortError::Retriable(format!("{failed} awaited record(s) were not delivered: {last}")));
        }
        Ok(Acked::default())
    }

    fn mark(&mut self) -> Mark {
        let mark = Mark(self.epoch);
        self.epoch += 1;
        mark
    }

    fn delivered(&mut self, mark: Mark, wait: bool, timeout: Duration) -> Result<Option<Acked>, PortError> {
        let parity = (mark.0 & 1) as usize;
        let tracker = self.producer.context();
        if tracker.in_flight(parity) > 0 {
            if !wait {
                return Ok(None);
            }
            // Waits for what was sent after the mark too: simpler than a
            // wait per epoch, and only the commit before a stop or a
            // rebalance waits.
            wait_delivered(&self.producer, timeout)
                .map_err(|e| PortError::Retriable(format!("outputs not delivered within {timeout:?}: {e}")))?;
        }
        failed_or(tracker.take(parity), tracker).map(Some)
    }

    fn begin(&mut self) -> Result<(), PortError> {
        // Failures of an earlier, aborted transaction are not this one's.
        let _ = self.producer.context().take_all();
        self.producer.begin_transaction().map_err(|e| port_error("beginning a transaction", e))
    }

    fn send_offsets(
        &mut self,
        offsets: &[TopicOffset],
        group: &GroupMetadata,
        timeout: Duration,
    ) -> Result<(), PortError> {
        let metadata = group
            .token
            .as_ref()
            .and_then(|t| t.downcast_ref::<ConsumerGroupMetadata>())
            .ok_or_else(|| PortError::Fatal("no Kafka consumer group metadata to commit offsets with".into()))?;
        let mut tpl = TopicPartitionList::new();
        for o in offsets {
            tpl.add_partition_offset(&o.topic, o.partition as i32, Offset::Offset(o.next))
                .map_err(|e| PortError::Fatal(e.to_string()))?;
        }
        self.producer
            .send_offsets_to_transaction(&tpl, metadata, timeout)
            .map_err(|e| port_error("adding the input offsets to the transaction", e))
    }

    fn commit(&mut self, timeout: Duration) -> Result<Acked, PortError> {
        // rdkafka's commit_transaction flushes with its slow flush first; with
        // nothing left in flight that returns at once.
        wait_delivered(&self.producer, timeout).map_err(|e| port_error("delivering the transaction", e))?;
        let acked = self.failures()?;
        self.producer.commit_transaction(timeout).map_err(|e| port_error("committing the transaction", e))?;
        Ok(acked)
    }

    fn abort(&mut self, timeout: Duration) -> Result<(), PortError> {
        let _ = self.producer.context().take_all();
        self.producer.abort_transaction(timeout).map_err(|e| port_error("aborting the transaction", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reported_while_sending_fails_the_next_flush() {
        // Delivery reports can arrive before the flush starts (defect 1 of the
        // runtime issue): they must not be missed.
        let tracker = DeliveryTracker::default();
        tracker.epochs[1].failed.fetch_add(1, Ordering::Relaxed);
        let (failed, _) = tracker.take_all();
        assert_eq!(failed, 1);
        assert_eq!(tracker.take_all().0, 0, "counted once");
    }
}
