//! Restoring a partition's state from the changelog topic when the partition is
//! assigned, before any of its input is processed (pause, restore, resume).
//!
//! The changelog has one partition per input partition; each processing step
//! publishes the full state of every lead it changed (a tombstone for an erased
//! lead) and closes with a checkpoint marker (empty key, the step's input
//! offsets). The local store remembers the changelog offset its states reach, so
//! a restart on the same machine reads only the tail written since (usually
//! nothing), and a new owner with no local state reads the whole (compacted)
//! partition.
//!
//! Records are applied up to the last marker: records after it belong to a step
//! whose outputs were published but whose commit did not happen (a crash, a lost
//! partition); the new owner replays that step from the inputs, exactly once.

use crate::counters::Counters;
use crate::runtime::{kafka, RunError};
use leadscore_core::{LeadId, Millis, Model};
use leadscore_pipeline::messages::headers;
use leadscore_store::{decode_state, Checkpoint, Partition, StateStore, StoreError, WriteBatch};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Leads buffered before an early write (bounds memory on a full restore).
const CHUNK: usize = 20_000;

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// The changelog offsets read: `from..to`.
    pub from: i64,
    pub to: i64,
    /// Records applied to the local store.
    pub records: u64,
    /// Records after the last checkpoint marker, left for the replay.
    pub ignored: u64,
}

/// Reads changelog partitions into the local store; see the module docs.
pub struct Restorer {
    consumer: BaseConsumer,
    topic: String,
    /// How long a read may make no progress before the restore fails.
    stall_timeout: Duration,
}

impl Restorer {
    /// `config` is the client configuration shared with the main consumer
    /// (bootstrap servers, security); this reader joins no group.
    pub fn new(config: &ClientConfig, topic: &str, stall_timeout: Duration) -> Result<Restorer, RunError> {
        let mut config = config.clone();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed");
        // A group id is required by the client, never used: this reader assigns.
        if config.get("group.id").is_none() {
            config.set("group.id", "leadscore-restore");
        }
        Ok(Restorer { consumer: config.create().map_err(kafka)?, topic: topic.to_string(), stall_timeout })
    }

    /// Brings the local state of `partition` up to the changelog's last marker.
    pub fn restore(
        &self,
        partition: Partition,
        store: &dyn StateStore,
        model: &Model,
        counters: &Counters,
    ) -> Result<Restored, RunError> {
        let local = store.checkpoint(partition)?;
        let (low, high) =
            self.consumer.fetch_watermarks(&self.topic, partition as i32, self.stall_timeout).map_err(kafka)?;
        let from = match local.as_ref().map(|c| c.changelog_next_offset) {
            None => low,
            Some(Some(next)) if next > high => {
                // Dropping local state here could lose everything if the topic was
                // recreated empty: keep it, say so, and let new markers follow.
                tracing::error!(
                    topic = %self.topic, partition, local = next, high,
                    "the changelog ends before the local state: was the changelog topic recreated? keeping local state"
                );
                return Ok(Restored { from: next, to: next, ..Restored::default() });
            }
            Some(Some(next)) if next < low => {
                tracing::warn!(
                    topic = %self.topic, partition, local = next, low,
                    "changelog records after the local checkpoint were deleted by retention; restoring from the earliest"
                );
                low
            }
            Some(Some(next)) => next,
            // Local state from before the changelog was recorded: it stays unless
            // the changelog has something to say.
            Some(None) if high > low => low,
            Some(None) => return Ok(Restored { from: low, to: high, ..Restored::default() }),
        };
        let mut done = Restored { from, to: high, ..Restored::default() };
        if from >= high {
            return Ok(done);
        }
        tracing::debug!(topic = %self.topic, partition, from, to = high, "restoring state from the changelog");
        counters.metrics.restoring_partitions.inc();
        let started = Instant::now();
        let result = self.read(partition, from, high, store, model, counters, &mut done);
        counters.metrics.restoring_partitions.dec();
        counters.metrics.restore_remaining.set(0);
        let _ = self.consumer.unassign();
        result?;
        counters.restores.fetch_add(1, Relaxed);
        tracing::info!(
            topic = %self.topic, partition, records = done.records, ignored = done.ignored,
            seconds = started.elapsed().as_secs_f64(), "restored state from the changelog"
        );
        Ok(done)
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        partition: Partition,
        from: i64,
        high: i64,
        store: &dyn StateStore,
        model: &Model,
        counters: &Counters,
        done: &mut Restored,
    ) -> Result<(), RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(from)).map_err(kafka)?;
        self.consumer.assign(&tpl).map_err(kafka)?;
        let mut pending: HashMap<LeadId, Option<Vec<u8>>> = HashMap::new();
        let mut last_progress = Instant::now();
        let mut at = from;
        while at < high {
            let m = match self.consumer.poll(Duration::from_millis(200)) {
                None => {
                    // Transaction markers and aborted records take offsets but
                    // are never delivered: the position tells how far we are.
                    let position = self.consumer.position().ok().and_then(|tpl| {
                        tpl.find_partition(&self.topic, partition as i32).and_then(|e| e.offset().to_raw())
                    });
                    if let Some(p) = position.filter(|p| *p > at) {
                        at = p;
                        last_progress = Instant::now();
                        continue;
                    }
                    if last_progress.elapsed() > self.stall_timeout {
                        return Err(RunError::Kafka(format!(
                            "changelog restore of {} partition {partition} made no progress for {:?} at offset {at} \
                             (reading up to {high})",
                            self.topic, self.stall_timeout
                        )));
                    }
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "changelog read error; retrying");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            last_progress = Instant::now();
            tracing::trace!(offset = m.offset(), key_bytes = m.key().map_or(0, <[u8]>::len), "changelog record");
            at = m.offset() + 1;
            counters.metrics.restore_records.inc();
            counters.metrics.restore_remaining.set(high - at);
            let key = m.key().unwrap_or_default();
            if key.is_empty() {
                let marked = m.headers().is_some_and(|h| {
                    h.iter().any(|h| h.key == headers::CHANGELOG_RECORD && h.value == Some(b"checkpoint"))
                });
                if !marked {
                    tracing::warn!(offset = m.offset(), "changelog record without a key and not a marker; ignored");
                    continue;
                }
                let mut checkpoint = Checkpoint::decode(m.payload().unwrap_or_default()).map_err(|e| {
                    StoreError(format!("checkpoint marker at {} offset {}: {e}", self.topic, m.offset()))
                })?;
                checkpoint.changelog_next_offset = Some(m.offset() + 1);
                done.records += pending.len() as u64;
                apply(partition, store, model, &mut pending, Some(checkpoint))?;
            } else {
                let lead = LeadId::from(String::from_utf8_lossy(key).into_owned());
                pending.insert(lead, m.payload().map(<[u8]>::to_vec));
                if pending.len() >= CHUNK {
                    done.records += pending.len() as u64;
                    apply(partition, store, model, &mut pending, None)?;
                }
            }
        }
        done.ignored = pending.len() as u64;
        Ok(())
    }
}

/// Writes `pending` states (and their timers) to the store, with `checkpoint`.
fn apply(
    partition: Partition,
    store: &dyn StateStore,
    model: &Model,
    pending: &mut HashMap<LeadId, Option<Vec<u8>>>,
    checkpoint: Option<Checkpoint>,
) -> Result<(), StoreError> {
    let mut leads: Vec<(LeadId, Option<Vec<u8>>)> = pending.drain().collect();
    leads.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = leads.iter().map(|(l, _)| l.as_str()).collect();
    let old = store.get_states(partition, &names)?;
    let due = |lead: &LeadId, bytes: Option<&Vec<u8>>| -> Result<Option<Millis>, StoreError> {
        match bytes {
            None => Ok(None),
            Some(b) => decode_state(b, model)
                .map(|s| s.next_due)
                .map_err(|e| StoreError(format!("state of lead {lead} in partition {partition}: {e}"))),
        }
    };
    let mut batch = WriteBatch::default();
    for ((lead, value), old) in leads.into_iter().zip(old) {
        let old_due = due(&lead, old.as_ref())?;
        let new_due = due(&lead, value.as_ref())?;
        batch.move_timer(partition, lead.clone(), old_due, new_due);
        match value {
            Some(v) => batch.put_state(partition, lead, v),
            None => batch.delete_state(partition, lead),
        }
    }
    if let Some(c) = checkpoint {
        batch.checkpoint(partition, c);
    }
    store.write(&batch)
}
