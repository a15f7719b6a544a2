//! One step's working set: the leads it touches, loaded once from the store,
//! the records they emit, and the state writes and changelog records it ends
//! with.

use super::leads::{Leads, Pos};
use super::remodel::switch_model;
use super::{Processor, Step, StepContext, StepError, TimeMode, TIMER_LOOKAHEAD};
use crate::admission::UnknownKinds;
use crate::aligner::Arrival;
use crate::messages::InputMessage;
use leadscore_codec::{DecodeError, ErrorClass};
use leadscore_core::engine::{apply, Outcome};
use leadscore_core::prefetch::DISTANCE;
use leadscore_core::state::prefetch_slot;
use leadscore_core::{Event, LeadId, LeadState, Millis, Outputs};
use leadscore_store::{decode_migrating, Checkpoint, Partition};
use leadscore_telemetry::{EventOutcome, SkipReason};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One lead of the working set.
pub(super) struct Slot {
    pub(super) lead: LeadId,
    pub(super) state: Option<LeadState>,
    /// The timer as the store has it.
    pub(super) stored_due: Option<Millis>,
    /// As loaded: whether the lead existed, and its segments (for the counts).
    pub(super) existed: bool,
    pub(super) member: u128,
    pub(super) dirty: bool,
    /// The store lags behind `state` (a cached state changed since written).
    pub(super) lagging: bool,
    /// Loaded by the current step (a cached lead that is not is only kept).
    pub(super) in_step: bool,
    /// Loaded by some step since the cache's last flush: a cache over its
    /// budget drops the others first.
    pub(super) used: bool,
}

impl Slot {
    /// A cached lead, not part of a step.
    #[cfg(test)]
    pub(super) fn cached(lead: LeadId, state: Option<LeadState>) -> Slot {
        Slot {
            lead,
            state,
            stored_due: None,
            existed: false,
            member: 0,
            dirty: false,
            lagging: false,
            in_step: false,
            used: false,
        }
    }
}

/// The working set of one step.
pub(super) struct Work<'p, 'a> {
    pub(super) p: &'p Processor<'a>,
    pub(super) partition: Partition,
    pub(super) ctx: StepContext<'p>,
    /// With a cache, also the cached leads this step does not touch.
    pub(super) leads: Leads,
    /// The leads this step loaded, in the order it did.
    pub(super) touched: Vec<Pos>,
    /// Timers known to be due soon, by due instant, each with its lead's
    /// place in the working set (the leads of timers due together fire in
    /// id order: see `fire_due`); stale and repeated entries are skipped
    /// when they come up. A heap, not an ordered set: nearly every event
    /// pushes a timer and most are never popped before the step ends, and a
    /// push into a heap is a few moves where an insert into a B-tree was a
    /// search and a shift. By position, not id: an entry is half the size,
    /// and firing one goes straight to its lead instead of through the index.
    pub(super) queue: BinaryHeap<Reverse<(Millis, Pos)>>,
    /// The leads whose timers are due at the instant being fired (reused).
    pub(super) due_now: Vec<Pos>,
    /// The lead of the first queued timer when the cache was last hinted
    /// to fetch its slot (see [`Work::prefetch`]).
    pub(super) timer_hinted: Option<Pos>,
    /// Store timers up to and including this instant are in `queue`.
    pub(super) loaded_up_to: Option<Millis>,
    /// The last store timer read (scans resume after it).
    pub(super) scanned: Option<(Millis, LeadId)>,
    /// How far beyond the instant asked for the next scan reads: doubled
    /// by every scan of the step (see `load_store_timers`).
    pub(super) lookahead: Millis,
    /// No timer due after this instant can fire in this step (the latest
    /// instant the step may fire up to): later ones are not queued. Nearly
    /// every event sets its lead a timer weeks ahead, and a step of live
    /// events spans seconds; queued, each was a push, and popped as stale
    /// or dropped with the step.
    pub(super) horizon: Millis,
    pub(super) base: Checkpoint,
    pub(super) checkpoint: Checkpoint,
    pub(super) out: Outputs,
    pub(super) step: Step,
}

impl<'p, 'a> Work<'p, 'a> {
    /// A step over `messages` input messages: its buffers are sized for
    /// them up front (grown by doubling, a large step's buffers were copied
    /// several times over, each copy into pages the kernel had to fault in).
    pub(super) fn new(
        p: &'p Processor<'a>,
        partition: Partition,
        ctx: StepContext<'p>,
        messages: usize,
    ) -> Result<Self, StepError> {
        let base = p.checkpoint(partition)?;
        let mut checkpoint = base.clone();
        switch_model(&mut checkpoint, p.model, ctx.tick.or(base.watermark));
        Ok(Work {
            p,
            partition,
            ctx,
            leads: p.cache().map(|c| c.take(partition)).unwrap_or_default(),
            touched: Vec::with_capacity(messages),
            queue: BinaryHeap::new(),
            due_now: Vec::new(),
            timer_hinted: None,
            loaded_up_to: None,
            scanned: None,
            lookahead: TIMER_LOOKAHEAD,
            horizon: Millis::MAX,
            checkpoint,
            base,
            out: Outputs::default(),
            step: Step::sized_for(messages),
        })
    }

    /// When the partition switched to the current model, if it ever did.
    pub(super) fn switched_at(&self) -> Option<Millis> {
        self.checkpoint.switched_at
    }

    /// Whether `m` is at or after the checkpoint (not applied before).
    pub(super) fn fresh(&self, m: &InputMessage) -> bool {
        m.offset >= self.checkpoint.next_offsets.get(&m.topic).copied().unwrap_or(0)
    }

    /// Queues a timer of the step, unless it is due after anything the step
    /// can fire (`horizon`). Every timer the step may fire comes through here.
    pub(super) fn queue_timer(&mut self, due: Millis, pos: Pos) {
        if due <= self.horizon {
            self.queue.push(Reverse((due, pos)));
        }
    }

    /// Loads the states of `leads` not yet in the working set: from the
    /// cache, else in one read of the store.
    pub(super) fn load(&mut self, leads: &[&str]) -> Result<(), StepError> {
        let mut missing: Vec<&str> = Vec::with_capacity(leads.len());
        for lead in leads {
            match self.leads.position(lead) {
                Some(pos) => self.join(pos),
                None => missing.push(lead),
            }
        }
        missing.sort_unstable();
        missing.dedup();
        self.read(&missing)
    }

    /// Where `lead` is in the working set, if it is there (in the step or
    /// cached).
    pub(super) fn position(&self, lead: &str) -> Option<Pos> {
        self.leads.position(lead)
    }

    /// [`Work::load`] of one lead, at `known` if the caller found it there
    /// earlier in the step; where it is in the working set.
    pub(super) fn load_one(&mut self, lead: &str, known: Option<Pos>) -> Result<Pos, StepError> {
        debug_assert!(known.is_none_or(|pos| self.leads.at(pos).lead.as_str() == lead));
        if let Some(pos) = known.or_else(|| self.leads.position(lead)) {
            self.join(pos);
            return Ok(pos);
        }
        self.read(&[lead])?;
        Ok(self.leads.position(lead).expect("a lead read is in the working set"))
    }

    /// A cached lead joins the step (if it has not yet) as the store has it,
    /// but for the state (which the store's timer index follows every step).
    pub(super) fn join(&mut self, pos: Pos) {
        let slot = self.leads.at_mut(pos);
        if slot.in_step {
            return;
        }
        let state = slot.state.as_ref().expect("cached leads have a state");
        slot.stored_due = state.next_due;
        slot.member = state.member;
        slot.existed = true;
        slot.in_step = true;
        slot.used = true;
        if let Some(due) = slot.stored_due {
            self.queue_timer(due, pos);
        }
        self.touched.push(pos);
    }

    /// Reads `missing` (none of them in the working set, each once) from the
    /// store into the step.
    pub(super) fn read(&mut self, missing: &[&str]) -> Result<(), StepError> {
        if missing.is_empty() {
            return Ok(());
        }
        self.leads.reserve(missing.len());
        let values = self.p.store.get_states(self.partition, missing)?;
        for (lead, value) in missing.iter().zip(values) {
            let lead = LeadId::from(*lead);
            let (mut state, retired) = match value {
                Some(bytes) => {
                    let (state, retired) =
                        decode_migrating(&bytes, self.p.model, &self.checkpoint.layouts).map_err(|source| {
                            StepError::CorruptState { lead: lead.to_string(), partition: self.partition, source }
                        })?;
                    (Some(state), retired)
                }
                None => (None, None),
            };
            let stored_due = state.as_ref().and_then(|s| s.next_due);
            // As loaded, in the current model's segment order (the counts are).
            let (existed, member) = (state.is_some(), state.as_ref().map_or(0, |s| s.member));
            let migrated = retired.is_some();
            if let (Some(s), Some(retired)) = (state.as_mut(), retired) {
                self.remodel(&lead, s, retired)?;
            }
            let slot = Slot {
                lead,
                state,
                stored_due,
                existed,
                member,
                dirty: migrated,
                lagging: false,
                in_step: true,
                used: true,
            };
            let pos = self.leads.insert(slot);
            self.touched.push(pos);
            // Its timer is queued here, because the store scan skips the
            // leads of the working set (whose timers it may no longer know).
            if let Some(due) = self.leads.at(pos).state.as_ref().and_then(|s| s.next_due) {
                self.queue_timer(due, pos);
            }
        }
        Ok(())
    }

    /// Reads from the store, in one batch, the states of those of `leads`
    /// that are neither cached nor in the step. Cached leads join the step
    /// when first used: until then the store's timer index, which follows
    /// their cached states, is what the step knows of their timers.
    pub(super) fn read_uncached(&mut self, leads: &[&str]) -> Result<(), StepError> {
        let mut missing: Vec<&str> = leads.iter().copied().filter(|l| self.leads.position(l).is_none()).collect();
        missing.sort_unstable();
        missing.dedup();
        self.read(&missing)
    }

    /// Hints the cache to fetch the leads of the messages to come (the
    /// first of `upcoming` is the next one): the two stages of
    /// `leadscore_core::prefetch`, so that a step over more leads than the
    /// cache holds does not wait on memory for each lead in turn (in one
    /// that fits, they cost about nothing: 1k leads measured alike).
    /// `positions` are the upcoming leads' places in the working set, as
    /// found at the start of the step.
    ///
    /// The lead of the first queued timer is hinted too: in event time
    /// timers fire at about the rate events come, each at one of the next
    /// few messages. Its slot first, its state at a later message once the
    /// slot is here (reading the slot to find the state would itself wait).
    pub(super) fn prefetch(&mut self, upcoming: &[Arrival], positions: &[Option<Pos>]) {
        if let Some(&Reverse((_, pos))) = self.queue.peek() {
            if self.timer_hinted == Some(pos) {
                if let Some(state) = self.leads.at(pos).state.as_ref() {
                    state.prefetch();
                }
            } else {
                prefetch_slot(&self.leads.at(pos).state);
                self.timer_hinted = Some(pos);
            }
        }
        let event = |i: usize| upcoming.get(i).and_then(|a| a.event.as_ref().ok());
        let slot = |i: usize| positions.get(i).copied().flatten().map(|pos| self.leads.at(pos));
        if let Some(e) = event(2 * DISTANCE - 1) {
            if let Some(slot) = slot(2 * DISTANCE - 1) {
                prefetch_slot(&slot.state);
            }
            e.prefetch_properties();
        }
        if let Some(e) = event(DISTANCE - 1) {
            if let Some(state) = slot(DISTANCE - 1).and_then(|s| s.state.as_ref()) {
                state.prefetch();
            }
            e.prefetch_texts();
        }
    }

    /// Moves the event-time watermark to `t` if later.
    pub(super) fn advance_watermark(&mut self, t: Millis) -> Millis {
        let watermark = self.checkpoint.watermark.map_or(t, |w| w.max(t));
        self.checkpoint.watermark = Some(watermark);
        watermark
    }

    /// Applies, dead-letters or skips one released message; `known` is
    /// where its lead was in the working set at the start of the step.
    pub(super) fn message(&mut self, arrival: &Arrival, known: Option<Pos>) -> Result<(), StepError> {
        let m = &arrival.message;
        let topic = self.p.topics.input_index(&m.topic).unwrap_or(u16::MAX);
        let fresh = self.fresh(m);
        self.step.messages += 1;
        let seen = &mut self.step.observations;
        if let (true, Some(t)) = (fresh, m.timestamp) {
            seen.broker_times.push(t);
        }
        // Well-formed but implausible times are bad input too.
        let reference = match self.p.mode {
            // The broker timestamp rather than the step's tick: a replay after
            // an outage ticks at the original step's instant, and must decide
            // alike for messages that step never saw.
            TimeMode::WallClock => m.timestamp.or(self.ctx.tick),
            TimeMode::EventTime => self.checkpoint.watermark,
        };
        // Borrowed, not moved: an arrival is about 200 bytes, and copying it
        // down this path cost a few percent of a step.
        let late;
        let event: Result<&Event, &DecodeError> = match &arrival.event {
            Ok(e) => match self.p.admission.check_time(e.timestamp, reference, self.p.mode) {
                Ok(()) => Ok(e),
                Err(e) => {
                    late = e;
                    Err(&late)
                }
            },
            Err(e) => Err(e),
        };
        let skip_unknown = self.p.admission.unknown_kinds == UnknownKinds::Skip;
        match event {
            _ if !fresh => {
                self.step.stats.skipped += 1;
                *seen.events.entry((topic, None, EventOutcome::Skipped)).or_default() += 1;
                *seen.skipped.entry((topic, SkipReason::AlreadyApplied)).or_default() += 1;
            }
            Err(e) if skip_unknown && e.class == ErrorClass::UnknownKind => {
                self.step.stats.skipped += 1;
                *seen.events.entry((topic, None, EventOutcome::Skipped)).or_default() += 1;
                *seen.skipped.entry((topic, SkipReason::UnknownKind)).or_default() += 1;
            }
            Err(e) => {
                *seen.events.entry((topic, None, EventOutcome::DeadLettered)).or_default() += 1;
                *seen.dead_letters.entry(e.class.as_str()).or_default() += 1;
                self.dead_letter(m, e);
            }
            Ok(event) => {
                if self.p.mode == TimeMode::EventTime {
                    let watermark = self.advance_watermark(event.timestamp);
                    self.fire_due(watermark, false)?;
                }
                let outcome = match self.apply(event, known)? {
                    Outcome::Applied => {
                        self.step.observations.event_times.push(event.timestamp);
                        EventOutcome::Applied
                    }
                    Outcome::Duplicate => EventOutcome::Duplicate,
                    Outcome::Erased => EventOutcome::Erased,
                    Outcome::UnknownLead => EventOutcome::UnknownLead,
                };
                *self.step.observations.events.entry((topic, Some(event.kind), outcome)).or_default() += 1;
            }
        }
        // Never backwards: a re-delivered, skipped message is behind it.
        let offsets = &mut self.checkpoint.next_offsets;
        match offsets.get_mut(&m.topic) {
            Some(next) => *next = (*next).max(m.offset + 1),
            None => {
                offsets.insert(m.topic.clone(), m.offset + 1);
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: &Event, known: Option<Pos>) -> Result<Outcome, StepError> {
        let pos = self.load_one(event.lead_id.as_str(), known)?;
        let slot = self.leads.at_mut(pos);
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
            self.queue_timer(next, pos);
        }
        self.emit(&event.lead_id, Some(event))?;
        Ok(outcome)
    }
}
