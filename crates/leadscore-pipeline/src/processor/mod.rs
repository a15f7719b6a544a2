//! The processing step: turns the released messages of one partition (and the
//! passage of time) into the output records to publish and one
//! [`WriteBatch`] (states, timers, the checkpoint) to commit once the outputs
//! are delivered. Committing state and offsets together, after the outputs,
//! is what gives exactly-once state: a crash before the commit replays the step
//! against the old state and publishes the same records with the same
//! `(lead_id, version)`.
//!
//! Timers: in event-time mode the watermark is the latest event time of the
//! partition, and before each event every timer due strictly before it fires,
//! in (due, lead) order. In wall-clock mode the runtime says when a step
//! "ticks": its timers due by then fire before its events.
//!
//! - `work`: one step's working set of leads, from loading to its writes.
//! - `emit`: the records a step publishes, and its dead letters.
//! - `leads`: the slots of a working set, by position and by id.
//! - `timers`: firing due timers from the store's timer index.
//! - `remodel`: switching a partition to a changed model, and migrating its
//!   leads as they are loaded.
//! - `cache`: decoded states kept between steps.

mod cache;
mod chunked;
mod emit;
mod finish;
mod leads;
mod remodel;
mod timers;
mod work;

use crate::admission::Admission;
use crate::aligner::{merge_all, Arrival, SchemaWait};
use crate::messages::{InputMessage, OutputRecord, Topics};
pub use cache::StateCache;
pub use emit::DEAD_LETTER_SAMPLE_BYTES;
use leads::Pos;
use leadscore_codec::{decode_json, AvroCodec, AvroError, DecodeError, ErrorClass, Limits};
use leadscore_core::{Millis, Model};
use leadscore_store::{Checkpoint, DecodeStateError, Partition, StateStore, StoreError, WriteBatch};
use leadscore_telemetry::{Observations, StepStats};
pub use remodel::SWEEP_LEADS;
use std::sync::Arc;
use work::Work;

/// Which clock drives timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    /// Timers fire when the wall clock passes them, with or without input.
    WallClock,
    /// Timers fire when event time passes them: deterministic replays.
    EventTime,
}

/// The result of a step: publish `outputs` (in order), then commit `write`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub outputs: Vec<OutputRecord>,
    /// States, timers and, last, the new checkpoint of the partition.
    pub write: WriteBatch,
    /// The checkpoint the step started from.
    pub base: Checkpoint,
    /// The checkpoint it ends with (also the last op of `write`).
    pub checkpoint: Checkpoint,
    pub stats: StepStats,
    pub observations: Observations,
    /// Input messages it consumed (applied, dead-lettered or skipped).
    pub messages: u64,
    /// It moved the sweep of leads of an earlier model on (its checkpoint
    /// must be committed even without messages or timers).
    pub swept: bool,
}

impl Step {
    /// An empty step with room for what `messages` input messages usually
    /// give: about 1.6 records per event (score changes and transitions),
    /// and with a changelog per step a state per lead.
    fn sized_for(messages: usize) -> Step {
        let mut step = Step { outputs: Vec::with_capacity(2 * messages), ..Step::default() };
        let o = &mut step.observations;
        o.event_times.reserve(messages);
        o.broker_times.reserve(messages);
        o.published.reserve(2 * messages);
        step
    }
}

/// What the runtime decides for a step besides its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepContext<'r> {
    /// Wall-clock mode: fire the timers due at or before this instant first.
    pub tick: Option<Millis>,
    /// This owner's epoch of the partition, written into the changelog (see
    /// [`Checkpoint::epoch`]).
    pub epoch: Option<i64>,
    /// A replay under way must also apply the inputs below these offsets
    /// before any tick: the step's checkpoint keeps saying so until it has.
    pub replay_until: Option<&'r std::collections::BTreeMap<String, i64>>,
}

/// Why a step could not be computed. None of these is caused by input: bad
/// input becomes dead letters.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state of lead {lead} in partition {partition} cannot be decoded: {source}")]
    CorruptState { lead: String, partition: Partition, source: DecodeStateError },
}

/// How many store timers are read at a time.
const TIMER_PAGE: usize = 1024;
/// How far beyond the instant asked for a step's first timer scan reads.
const TIMER_LOOKAHEAD: Millis = 60_000;
/// How far beyond it any scan reads, at most: a day.
const MAX_TIMER_LOOKAHEAD: Millis = 86_400_000;

/// Wire formats: JSON unless an Avro codec is given for inputs or outputs.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    pub avro_input: Option<Arc<AvroCodec>>,
    pub avro_output: Option<Arc<AvroCodec>>,
}

/// Turns released messages into outputs and state writes; see the module docs.
#[derive(Clone)]
pub struct Processor<'a> {
    pub model: &'a Model,
    pub store: &'a dyn StateStore,
    pub topics: &'a Topics,
    pub limits: Limits,
    pub mode: TimeMode,
    pub formats: Formats,
    pub admission: Admission,
    /// Whether each step ends with its changelog records and checkpoint
    /// marker. Off when the runtime publishes the changelog once per commit
    /// (at least once, event time: see `runtime::commit`).
    pub changelog_per_step: bool,
    /// Decoded states kept between steps, so that a lead's next step need
    /// not read and decode it. Without a per-step changelog they are also
    /// encoded only when the cache is flushed; with one, every step still
    /// encodes the states it changed (the changelog needs the bytes).
    pub cache: Option<&'a StateCache>,
    /// Whether score changes and transitions become encoded `outputs`. Off
    /// for tools that take them typed from `observations.published` (the
    /// offline scorer encodes them on a thread of its own).
    pub encode_records: bool,
}

impl<'a> Processor<'a> {
    /// A processor of JSON with the default limits and admission rules.
    pub fn new(model: &'a Model, store: &'a dyn StateStore, topics: &'a Topics, mode: TimeMode) -> Processor<'a> {
        Processor {
            model,
            store,
            topics,
            limits: Limits::default(),
            mode,
            formats: Formats::default(),
            admission: Admission::default(),
            changelog_per_step: true,
            cache: None,
            encode_records: true,
        }
    }

    /// The state cache, if there is one.
    fn cache(&self) -> Option<&'a StateCache> {
        self.cache
    }

    /// Processes a batch of one partition (messages in offset order per
    /// topic), merged across topics by event time within the batch, ticking
    /// at `now` in wall-clock mode. For tests and tools; the runtime orders
    /// messages across batches with an [`crate::Aligner`].
    pub fn process(&self, partition: Partition, messages: &[InputMessage], now: Millis) -> Result<Step, StepError> {
        let arrivals = messages.iter().map(|m| self.decode(m.clone())).collect();
        let ordered = merge_all(self.topics.inputs.keys().cloned(), arrivals);
        let tick = (self.mode == TimeMode::WallClock).then_some(now);
        self.process_arrivals(partition, &ordered, StepContext { tick, ..StepContext::default() })
    }

    /// Processes decoded messages of one partition in the order given.
    /// Messages below the partition's checkpoint were applied before: skipped.
    ///
    /// The arrivals are borrowed: the caller decides where they are dropped
    /// (freeing on the thread that allocated them is cheaper).
    pub fn process_arrivals(
        &self,
        partition: Partition,
        arrivals: &[Arrival],
        ctx: StepContext<'_>,
    ) -> Result<Step, StepError> {
        let mut w = Work::new(self, partition, ctx, arrivals.len())?;
        // The latest instant this step fires timers up to: in event time
        // the watermark, which at most reaches the latest event; in wall
        // clock the tick, once, before any message.
        w.horizon = match self.mode {
            TimeMode::EventTime => {
                let latest = arrivals.iter().filter_map(|a| a.event.as_ref().ok()).map(|e| e.timestamp).max();
                latest.into_iter().chain(w.checkpoint.watermark).max().unwrap_or(Millis::MIN)
            }
            TimeMode::WallClock => ctx.tick.unwrap_or(Millis::MIN),
        };
        if self.store.reads_in_batches() {
            let leads: Vec<&str> = arrivals
                .iter()
                .filter(|a| w.fresh(&a.message))
                .filter_map(|a| a.event.as_ref().ok())
                .map(|e| e.lead_id.as_str())
                .collect();
            w.read_uncached(&leads)?;
        }
        if let (TimeMode::WallClock, Some(tick)) = (self.mode, ctx.tick) {
            w.fire_due(tick, true)?;
        }
        // Each lead is looked up once here, where the lookups do not wait on
        // one another, and the loop below goes by position. Positions hold
        // for the whole step (leads only join it until `finish`); a lead not
        // yet in the working set is found when it is applied.
        let positions: Vec<Option<Pos>> =
            arrivals.iter().map(|a| a.event.as_ref().ok().and_then(|e| w.position(e.lead_id.as_str()))).collect();
        for (i, arrival) in arrivals.iter().enumerate() {
            w.prefetch(&arrivals[i + 1..], &positions[i + 1..]);
            w.message(arrival, positions[i])?;
        }
        w.sweep()?;
        Ok(w.finish())
    }

    /// Fires the timers due at or before `now`: the wall clock in wall-clock
    /// mode; in event-time mode, an explicit instant (like `--until`), which
    /// then also moves the watermark.
    pub fn tick(&self, partition: Partition, now: Millis) -> Result<Step, StepError> {
        self.tick_with(partition, StepContext { tick: Some(now), ..StepContext::default() })
    }

    /// [`Processor::tick`] with the runtime's context (`ctx.tick` is the instant).
    pub fn tick_with(&self, partition: Partition, ctx: StepContext<'_>) -> Result<Step, StepError> {
        let mut w = Work::new(self, partition, ctx, 0)?;
        w.horizon = ctx.tick.unwrap_or(Millis::MIN);
        if let Some(now) = ctx.tick {
            w.fire_due(now, true)?;
            if self.mode == TimeMode::EventTime {
                w.advance_watermark(now);
            }
        }
        w.sweep()?;
        Ok(w.finish())
    }

    /// Decodes a fetched message by its topic's kind and the input format.
    pub fn decode(&self, m: InputMessage) -> Arrival {
        let kind = self.topics.inputs.get(&m.topic).copied().flatten();
        let payload = m.payload.as_deref().unwrap_or_default();
        let size = payload.len() + m.key.as_ref().map_or(0, Vec::len);
        let max = self.limits.max_message_bytes;
        let mut schema_wait = None;
        let event = match &self.formats.avro_input {
            _ if size > max => Err(DecodeError::new(
                ErrorClass::Oversize,
                format!("message of {size} bytes (key and value) is above processing.max_message_bytes = {max}"),
            )),
            Some(avro) => match avro.decode(payload, m.key.as_deref(), kind, &self.limits) {
                Ok(event) => Ok(event),
                Err(AvroError::Bad(e)) => Err(e),
                Err(AvroError::Wait { schema_id, why }) => {
                    schema_wait = Some(SchemaWait { schema_id, why: why.clone() });
                    Err(DecodeError::new(ErrorClass::InvalidAvro, why))
                }
            },
            None => decode_json(payload, m.key.as_deref(), kind, &self.limits),
        };
        Arrival { message: m, event, fetched_at: 0, schema_wait }
    }

    /// The partition's checkpoint, or a fresh one for this model.
    fn checkpoint(&self, partition: Partition) -> Result<Checkpoint, StoreError> {
        Ok(self
            .store
            .checkpoint(partition)?
            .unwrap_or_else(|| Checkpoint { model_version: self.model.version.clone(), ..Checkpoint::default() }))
    }
}
