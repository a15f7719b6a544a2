//! The processing step: see the crate documentation.

use crate::aligner::{merge_all, Arrival};
use crate::messages::{headers, InputMessage, OutputRecord, OutputTopic, Topics};
use crate::observations::{EventOutcome, Observations, Published};
use leadscore_codec::{decode_json, encode_json, AvroCodec, DecodeError, Limits, RecordContext};
use leadscore_core::engine::{advance, apply, Outcome};
use leadscore_core::output::{Cause, Direction, Record};
use leadscore_core::{Event, LeadId, LeadState, Millis, Model, Outputs};
use leadscore_store::{decode_state, encode_state, Checkpoint, Partition, StateStore, StoreError, WriteBatch};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Which clock drives timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// Timers fire when the wall clock passes them ([`Processor::tick`]).
    WallClock,
    /// Timers fire when event time passes them: deterministic replays.
    EventTime,
}

/// Counts of one step, for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub applied: u64,
    pub duplicates: u64,
    pub erased: u64,
    pub dead_lettered: u64,
    /// Messages below the checkpoint: applied before, skipped.
    pub skipped: u64,
    pub score_changes: u64,
    pub transitions: u64,
    pub timer_transitions: u64,
    pub timers_fired: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.erased += o.erased;
        self.dead_lettered += o.dead_lettered;
        self.skipped += o.skipped;
        self.score_changes += o.score_changes;
        self.transitions += o.transitions;
        self.timer_transitions += o.timer_transitions;
        self.timers_fired += o.timers_fired;
    }
}

/// The result of a step: publish `outputs` (in order), then commit `write`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub outputs: Vec<OutputRecord>,
    pub write: WriteBatch,
    pub stats: Stats,
    pub observations: Observations,
}

/// How many store timers are read at a time.
const TIMER_PAGE: usize = 1024;
/// How far beyond the instant asked for a timer scan reads (milliseconds).
const TIMER_LOOKAHEAD: Millis = 60_000;

/// Wire formats: JSON unless an Avro codec is given for inputs or outputs.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    pub avro_input: Option<Arc<AvroCodec>>,
    pub avro_output: Option<Arc<AvroCodec>>,
}

/// Turns poll batches into outputs and state writes; see the crate docs.
pub struct Processor<'a> {
    pub model: &'a Model,
    pub store: &'a dyn StateStore,
    pub topics: &'a Topics,
    pub limits: Limits,
    pub mode: TimeMode,
    pub formats: Formats,
}

/// One lead of the working set.
struct Slot {
    state: Option<LeadState>,
    /// The timer as the store has it.
    stored_due: Option<Millis>,
    /// As loaded: whether the lead existed, and its segments (for the counts).
    existed: bool,
    member: u128,
    dirty: bool,
}

/// The working set of one step.
struct Work<'p, 'a> {
    p: &'p Processor<'a>,
    partition: Partition,
    leads: HashMap<LeadId, Slot>,
    /// Timers known to be due soon: `(due, lead)`; stale entries are skipped.
    queue: BTreeSet<(Millis, LeadId)>,
    /// Store timers up to and including this instant are in `queue`.
    loaded_up_to: Option<Millis>,
    /// The last store timer read (scans resume after it).
    scanned: Option<(Millis, LeadId)>,
    checkpoint: Checkpoint,
    out: Outputs,
    step: Step,
}

impl<'a> Processor<'a> {
    /// A processor of JSON with the default limits.
    pub fn new(model: &'a Model, store: &'a dyn StateStore, topics: &'a Topics, mode: TimeMode) -> Processor<'a> {
        Processor { model, store, topics, limits: Limits::default(), mode, formats: Formats::default() }
    }

    /// Processes a poll batch of one partition (messages in offset order per
    /// topic), merged across topics by event time within the batch. `now` is
    /// the wall clock, used in wall-clock mode for timers.
    pub fn process(&self, partition: Partition, messages: &[InputMessage], now: Millis) -> Result<Step, StoreError> {
        let arrivals = messages.iter().map(|m| self.decode(m.clone())).collect();
        let ordered = merge_all(self.topics.inputs.keys().cloned(), arrivals);
        self.process_arrivals(partition, ordered, now)
    }

    /// Processes decoded messages of one partition in the order given (see
    /// [`crate::aligner`] for how the service orders them across batches).
    /// Messages below the partition's checkpoint were applied before: skipped.
    pub fn process_arrivals(
        &self,
        partition: Partition,
        arrivals: Vec<Arrival>,
        now: Millis,
    ) -> Result<Step, StoreError> {
        let mut w = self.work(partition)?;
        let fresh =
            |w: &Work, m: &InputMessage| m.offset >= w.checkpoint.next_offsets.get(&m.topic).copied().unwrap_or(0);
        let leads: Vec<&str> = arrivals
            .iter()
            .filter(|a| fresh(&w, &a.message))
            .filter_map(|a| a.event.as_ref().ok())
            .map(|e| e.lead_id.as_str())
            .collect();
        w.load(&leads)?;
        if self.mode == TimeMode::WallClock {
            w.fire_due(now, true)?;
        }
        for Arrival { message: m, event } in arrivals {
            let topic = self.topics.input_index(&m.topic).unwrap_or(u16::MAX);
            let fresh = fresh(&w, &m);
            let seen = &mut w.step.observations;
            if let (true, Some(t)) = (fresh, m.timestamp) {
                seen.broker_times.push(t);
            }
            match event {
                _ if !fresh => {
                    w.step.stats.skipped += 1;
                    *seen.events.entry((topic, None, EventOutcome::Skipped)).or_default() += 1;
                }
                Err(e) => {
                    *seen.events.entry((topic, None, EventOutcome::DeadLettered)).or_default() += 1;
                    *seen.dead_letters.entry(e.class.as_str()).or_default() += 1;
                    w.dead_letter(&m, &e);
                }
                Ok(event) => {
                    if self.mode == TimeMode::EventTime {
                        let watermark = w.checkpoint.watermark.map_or(event.timestamp, |x| x.max(event.timestamp));
                        w.checkpoint.watermark = Some(watermark);
                        w.fire_due(watermark, false)?;
                    }
                    let outcome = match w.apply(&event)? {
                        Outcome::Applied => {
                            w.step.observations.event_times.push(event.timestamp);
                            EventOutcome::Applied
                        }
                        Outcome::Duplicate => EventOutcome::Duplicate,
                        Outcome::Erased => EventOutcome::Erased,
                        Outcome::UnknownLead => EventOutcome::UnknownLead,
                    };
                    *w.step.observations.events.entry((topic, Some(event.kind), outcome)).or_default() += 1;
                }
            }
            // Never backwards: a re-delivered, skipped message is behind it.
            let next = w.checkpoint.next_offsets.entry(m.topic).or_insert(0);
            *next = (*next).max(m.offset + 1);
        }
        Ok(w.finish())
    }

    /// Fires the timers due at or before `now`: the wall clock in wall-clock
    /// mode; in event-time mode, an explicit instant (like `--until`).
    pub fn tick(&self, partition: Partition, now: Millis) -> Result<Step, StoreError> {
        let mut w = self.work(partition)?;
        w.fire_due(now, true)?;
        if self.mode == TimeMode::EventTime {
            w.checkpoint.watermark = Some(w.checkpoint.watermark.map_or(now, |x| x.max(now)));
        }
        Ok(w.finish())
    }

    fn work(&self, partition: Partition) -> Result<Work<'_, 'a>, StoreError> {
        let checkpoint = self
            .store
            .checkpoint(partition)?
            .unwrap_or_else(|| Checkpoint { model_version: self.model.version.clone(), ..Checkpoint::default() });
        Ok(Work {
            p: self,
            partition,
            leads: HashMap::new(),
            queue: BTreeSet::new(),
            loaded_up_to: None,
            scanned: None,
            checkpoint,
            out: Outputs::default(),
            step: Step::default(),
        })
    }

    /// Decodes a fetched message by its topic's kind and the input format.
    pub fn decode(&self, m: InputMessage) -> Arrival {
        let kind = self.topics.inputs.get(&m.topic).copied().flatten();
        let payload = m.payload.as_deref().unwrap_or_default();
        let event = match &self.formats.avro_input {
            Some(avro) => avro.decode(payload, m.key.as_deref(), kind, &self.limits),
            None => decode_json(payload, m.key.as_deref(), kind, &self.limits),
        };
        Arrival { message: m, event }
    }
}

impl Work<'_, '_> {
    /// Loads the states of `leads` not yet in the working set, in one read.
    fn load(&mut self, leads: &[&str]) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = leads.iter().copied().filter(|l| !self.leads.contains_key(*l)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let values = self.p.store.get_states(self.partition, &missing)?;
        for (lead, value) in missing.into_iter().zip(values) {
            let state =
                match value {
                    Some(bytes) => Some(decode_state(&bytes, self.p.model).map_err(|e| {
                        StoreError(format!("state of lead {lead} in partition {}: {e}", self.partition))
                    })?),
                    None => None,
                };
            let stored_due = state.as_ref().and_then(|s| s.next_due);
            // Its timer is queued here, because the store scan below skips the
            // leads of the working set (whose timers it may no longer know).
            if let Some(due) = stored_due {
                self.queue.insert((due, LeadId::from(lead)));
            }
            let (existed, member) = (state.is_some(), state.as_ref().map_or(0, |s| s.member));
            self.leads.insert(LeadId::from(lead), Slot { state, stored_due, existed, member, dirty: false });
        }
        Ok(())
    }

    /// Fires, in (due, lead) order, every timer due before `bound` (or at it,
    /// when `inclusive`), including timers that firing sets.
    fn fire_due(&mut self, bound: Millis, inclusive: bool) -> Result<(), StoreError> {
        let last = if inclusive { bound } else { bound.saturating_sub(1) };
        loop {
            self.load_store_timers(last)?;
            let Some((due, lead)) = self.queue.first().cloned().filter(|(d, _)| *d <= last) else {
                return Ok(());
            };
            self.queue.pop_first();
            self.load(&[lead.as_str()])?;
            let slot = self.leads.get_mut(&lead).expect("loaded");
            let Some(state) = slot.state.as_mut().filter(|s| s.next_due == Some(due)) else {
                continue; // stale: the lead moved on in this step
            };
            advance(self.p.model, state, due, &mut self.out);
            slot.dirty = true;
            if inclusive && self.p.mode == TimeMode::WallClock {
                self.step.observations.timer_delays.push(bound - due);
            }
            let next = state.next_due;
            self.step.stats.timers_fired += 1;
            self.emit(&lead, None)?;
            if let Some(next) = next {
                self.queue.insert((next, lead));
            }
        }
    }

    /// Makes sure every store timer due at or before `last` is in the queue.
    ///
    /// Scans `TIMER_LOOKAHEAD` beyond `last`: in event time `last` moves with
    /// every event, and a store scan per event was a large share of a step.
    /// Scanning resumes after the last timer read, so no timer is read twice.
    fn load_store_timers(&mut self, last: Millis) -> Result<(), StoreError> {
        while self.loaded_up_to.is_none_or(|l| l < last) {
            let up_to = last.saturating_add(TIMER_LOOKAHEAD);
            let after = self.scanned.as_ref().map(|(d, l)| (*d, l.as_str()));
            let page = self.p.store.due_timers(self.partition, after, up_to, TIMER_PAGE)?;
            let full = page.len() == TIMER_PAGE;
            for (due, lead) in page {
                self.scanned = Some((due, lead.clone()));
                // A lead already in the working set has its current timer queued.
                if !self.leads.contains_key(&lead) {
                    self.queue.insert((due, lead));
                }
            }
            // A full page may stop amid timers of one instant: only those before
            // it are surely all read.
            self.loaded_up_to = Some(match (&self.scanned, full) {
                (Some((due, _)), true) => due.saturating_sub(1),
                _ => up_to,
            });
        }
        Ok(())
    }

    fn apply(&mut self, event: &Event) -> Result<Outcome, StoreError> {
        self.load(&[event.lead_id.as_str()])?;
        let slot = self.leads.get_mut(&event.lead_id).expect("loaded");
        let before = slot.state.as_ref().and_then(|s| s.next_due);
        let outcome = apply(self.p.model, &mut slot.state, event, &mut self.out);
        let stats = &mut self.step.stats;
        match outcome {
            Outcome::Applied => stats.applied += 1,
            Outcome::Duplicate => stats.duplicates += 1,
            Outcome::Erased => stats.erased += 1,
            Outcome::UnknownLead => {}
        }
        if matches!(outcome, Outcome::Applied | Outcome::Erased) {
            slot.dirty = true;
        }
        let after = slot.state.as_ref().and_then(|s| s.next_due);
        if let Some(next) = after.filter(|_| after != before) {
            self.queue.insert((next, event.lead_id.clone()));
        }
        self.emit(&event.lead_id, Some(event))?;
        Ok(outcome)
    }

    /// Turns the records in `out` into output records.
    fn emit(&mut self, lead: &LeadId, event: Option<&Event>) -> Result<(), StoreError> {
        let ctx = RecordContext {
            model: self.p.model,
            lead_id: lead.as_str(),
            event: event.map(|e| (e.event_id.as_str(), e.kind)),
        };
        for r in &self.out.records {
            let transition = match r {
                Record::Transition(t) => Some((t.segment, t.direction == Direction::Entered)),
                Record::ScoreChange(_) => None,
            };
            let topic = match r {
                Record::ScoreChange(_) => {
                    self.step.stats.score_changes += 1;
                    OutputTopic::ScoreChanges
                }
                Record::Transition(t) => {
                    self.step.stats.transitions += 1;
                    *self.step.observations.transitions.entry((t.segment, t.direction, t.cause)).or_default() += 1;
                    if t.cause == Cause::Timer {
                        self.step.stats.timer_transitions += 1;
                    }
                    OutputTopic::Transitions
                }
            };
            let mut value = Vec::with_capacity(320);
            encode_json(&mut value, &ctx, r, &self.out.reasons);
            let json = match &self.p.formats.avro_output {
                Some(avro) => {
                    // Our own records always fit our schemas; a failure is a bug,
                    // reported as an error that stops the step, not a panic.
                    let avro_value = avro
                        .encode_output(&value, topic == OutputTopic::Transitions)
                        .map_err(|e| StoreError(format!("encoding an output record of lead {lead} in Avro: {e}")))?;
                    std::mem::replace(&mut value, avro_value)
                }
                None => value.clone(),
            };
            let json = String::from_utf8(json).map_err(|e| StoreError(format!("output record not UTF-8: {e}")))?;
            self.step.observations.published.push(Published { lead: lead.clone(), json, transition });
            self.step.outputs.push(OutputRecord {
                topic,
                key: Some(lead.as_str().as_bytes().to_vec()),
                value: Some(value),
                headers: Vec::new(),
                partition: None,
            });
        }
        self.out.clear();
        Ok(())
    }

    fn dead_letter(&mut self, m: &InputMessage, e: &DecodeError) {
        self.step.stats.dead_lettered += 1;
        self.step.outputs.push(OutputRecord {
            topic: OutputTopic::DeadLetters,
            key: m.key.clone(),
            value: m.payload.clone(),
            headers: vec![
                (headers::ERROR_CLASS, e.class.as_str().as_bytes().to_vec()),
                (headers::ERROR_MESSAGE, e.message.as_bytes().to_vec()),
                (headers::SOURCE_TOPIC, m.topic.as_bytes().to_vec()),
                (headers::SOURCE_PARTITION, m.partition.to_string().into_bytes()),
                (headers::SOURCE_OFFSET, m.offset.to_string().into_bytes()),
            ],
            partition: None,
        });
    }

    /// The state writes and changelog records of the dirty leads, and the
    /// checkpoint (in the store, and as the changelog's closing marker).
    fn finish(mut self) -> Step {
        let mut dirty: Vec<(LeadId, Slot)> = self.leads.into_iter().filter(|(_, s)| s.dirty).collect();
        // A stable order keeps batches and changelogs reproducible.
        dirty.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let p = self.partition;
        for (lead, slot) in dirty {
            let value = slot.state.as_ref().map(|s| {
                let mut buf = Vec::with_capacity(256);
                encode_state(s, &mut buf);
                buf
            });
            let next_due = slot.state.as_ref().and_then(|s| s.next_due);
            let counts = &mut self.checkpoint.counts;
            counts.leads += i64::from(slot.state.is_some()) - i64::from(slot.existed);
            counts.timers += i64::from(next_due.is_some()) - i64::from(slot.stored_due.is_some());
            let member = slot.state.as_ref().map_or(0, |s| s.member);
            let mut changed = member ^ slot.member;
            while changed != 0 {
                let i = changed.trailing_zeros() as usize;
                changed &= changed - 1;
                if counts.members.len() <= i {
                    counts.members.resize(self.p.model.segments.len().max(i + 1), 0);
                }
                counts.members[i] += if member >> i & 1 == 1 { 1 } else { -1 };
            }
            match &value {
                Some(v) => self.step.write.put_state(p, lead.clone(), v.clone()),
                None => self.step.write.delete_state(p, lead.clone()),
            }
            self.step.write.move_timer(p, lead.clone(), slot.stored_due, next_due);
            self.step.outputs.push(OutputRecord {
                topic: OutputTopic::Changelog,
                key: Some(lead.as_str().as_bytes().to_vec()),
                value,
                headers: Vec::new(),
                partition: Some(p),
            });
        }
        // The marker carries no changelog offset: it learns its own on delivery.
        let marker = Checkpoint { changelog_next_offset: None, ..self.checkpoint.clone() };
        self.step.outputs.push(OutputRecord::checkpoint_marker(p, &marker));
        self.step.write.checkpoint(p, self.checkpoint);
        self.step
    }
}
