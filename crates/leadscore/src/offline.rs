//! Offline scoring: reads JSON events in order and writes every output record the
//! streaming service would publish, one JSON object per line.
//!
//! Timers run in event time. The watermark is the latest event time seen; before
//! each event is applied, every lead's timers due strictly before the watermark
//! fire (in due order, ties by lead id), so a timer due before an event fires
//! before that event. At the end, `until` fires the timers due up to and including
//! that instant.

use leadscore_codec::{decode_json, encode_json, Limits, RecordContext};
use leadscore_core::engine::{advance, apply, Outcome};
use leadscore_core::output::{Cause, Record};
use leadscore_core::{Event, LeadId, LeadState, Millis, Model, Outputs};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// What a run did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub events_read: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub erased: u64,
    pub score_changes: u64,
    pub transitions: u64,
    pub timer_transitions: u64,
    pub leads: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events read: {} applied, {} duplicates, {} rejected; {} leads erased; \
             {} score changes, {} segment transitions ({} by timer); {} leads in state",
            self.events_read,
            self.applied,
            self.duplicates,
            self.rejected,
            self.erased,
            self.score_changes,
            self.transitions,
            self.timer_transitions,
            self.leads
        )
    }
}

/// Leads, their timers, and the event-time watermark.
pub struct Scorer<'m> {
    model: &'m Model,
    leads: HashMap<LeadId, LeadState>,
    /// `(due, lead)`; an entry is stale when the lead's `next_due` differs.
    timers: BinaryHeap<Reverse<(Millis, LeadId)>>,
    watermark: Option<Millis>,
    outputs: Outputs,
    line: Vec<u8>,
    pub summary: Summary,
}

impl<'m> Scorer<'m> {
    pub fn new(model: &'m Model) -> Scorer<'m> {
        Scorer {
            model,
            leads: HashMap::new(),
            timers: BinaryHeap::new(),
            watermark: None,
            outputs: Outputs::default(),
            line: Vec::with_capacity(512),
            summary: Summary::default(),
        }
    }

    /// The state of a lead, if it exists.
    pub fn lead(&self, id: &str) -> Option<&LeadState> {
        self.leads.get(id)
    }

    fn write_outputs(&mut self, lead: &str, event: Option<&Event>, out: &mut impl Write) -> io::Result<()> {
        let ctx =
            RecordContext { model: self.model, lead_id: lead, event: event.map(|e| (e.event_id.as_str(), e.kind)) };
        for r in &self.outputs.records {
            match r {
                Record::ScoreChange(_) => self.summary.score_changes += 1,
                Record::Transition(t) => {
                    self.summary.transitions += 1;
                    if t.cause == Cause::Timer {
                        self.summary.timer_transitions += 1;
                    }
                }
            }
            self.line.clear();
            encode_json(&mut self.line, &ctx, r, &self.outputs.reasons);
            self.line.push(b'\n');
            out.write_all(&self.line)?;
        }
        self.outputs.clear();
        Ok(())
    }

    fn schedule(&mut self, lead: &LeadId, before: Option<Millis>) {
        if let Some(state) = self.leads.get(lead) {
            if let Some(due) = state.next_due.filter(|&d| Some(d) != before) {
                self.timers.push(Reverse((due, lead.clone())));
            }
        }
    }

    /// Fires every timer due before `limit` (or at it, when `inclusive`).
    pub fn fire_timers(&mut self, limit: Millis, inclusive: bool, out: &mut impl Write) -> io::Result<()> {
        while let Some(Reverse((due, _))) = self.timers.peek() {
            let due = *due;
            if due > limit || (due == limit && !inclusive) {
                break;
            }
            let Reverse((due, lead)) = self.timers.pop().expect("peeked");
            let Some(state) = self.leads.get_mut(&lead) else {
                continue;
            };
            if state.next_due != Some(due) {
                continue;
            }
            advance(self.model, state, due, &mut self.outputs);
            self.write_outputs(lead.as_str(), None, out)?;
            self.schedule(&lead, None);
        }
        Ok(())
    }

    /// Applies one event, firing the timers due before it first.
    pub fn push(&mut self, event: &Event, out: &mut impl Write) -> io::Result<Outcome> {
        let watermark = self.watermark.map_or(event.timestamp, |w| w.max(event.timestamp));
        self.watermark = Some(watermark);
        self.fire_timers(watermark, false, out)?;

        let mut slot = self.leads.remove(event.lead_id.as_str());
        let before = slot.as_ref().and_then(|s| s.next_due);
        let outcome = apply(self.model, &mut slot, event, &mut self.outputs);
        if let Some(state) = slot {
            self.leads.insert(event.lead_id.clone(), state);
        }
        match outcome {
            Outcome::Applied => self.summary.applied += 1,
            Outcome::Duplicate => self.summary.duplicates += 1,
            Outcome::Erased => self.summary.erased += 1,
            Outcome::UnknownLead => {}
        }
        self.write_outputs(event.lead_id.as_str(), Some(event), out)?;
        self.schedule(&event.lead_id, before);
        self.summary.leads = self.leads.len() as u64;
        Ok(outcome)
    }
}

/// Scores every line of `input`, writing records to `out` and problems, progress
/// and the summary to `err`.
pub fn run(
    model: &Model,
    input: impl BufRead,
    until: Option<Millis>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Summary> {
    let mut scorer = Scorer::new(model);
    let limits = Limits::default();
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_report = started;
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        scorer.summary.events_read += 1;
        match decode_json(line, None, None, &limits) {
            Ok(event) => {
                scorer.push(&event, out)?;
            }
            Err(e) => {
                scorer.summary.rejected += 1;
                writeln!(err, "line {}: {}: {}", n + 1, e.class, e.message)?;
            }
        }
        if progress
            && scorer.summary.events_read.is_multiple_of(65_536)
            && last_report.elapsed() > Duration::from_secs(2)
        {
            last_report = Instant::now();
            let rate = scorer.summary.events_read as f64 / started.elapsed().as_secs_f64();
            writeln!(err, "leadscore: {} events read ({rate:.0}/s)", scorer.summary.events_read)?;
        }
    }
    if let Some(until) = until {
        scorer.fire_timers(until, true, out)?;
    }
    scorer.summary.leads = scorer.leads.len() as u64;
    out.flush()?;
    writeln!(err, "leadscore: {}", scorer.summary)?;
    Ok(scorer.summary)
}
