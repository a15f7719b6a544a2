//! Firing due timers: the store's timer index is read page by page, a little
//! ahead of the instant asked for, into the step's queue, which also holds
//! the timers the step itself sets.

use super::leads::Pos;
use super::work::Work;
use super::{StepError, TimeMode, MAX_TIMER_LOOKAHEAD, TIMER_PAGE};
use leadscore_core::engine::advance;
use leadscore_core::Millis;
use std::cmp::Reverse;

impl Work<'_, '_> {
    /// Fires, in (due, lead) order, every timer due before `bound` (or at it,
    /// when `inclusive`), including timers that firing sets.
    ///
    /// The queue orders by (due, position): the leads due at one instant are
    /// taken out together and put in id order here. Firing sets a lead's
    /// next timer strictly later, so none joins the instant being fired.
    pub(super) fn fire_due(&mut self, bound: Millis, inclusive: bool) -> Result<(), StepError> {
        let last = if inclusive { bound } else { bound.saturating_sub(1) };
        let mut due_now = std::mem::take(&mut self.due_now);
        loop {
            self.load_store_timers(last)?;
            let Some(&Reverse((due, _))) = self.queue.peek().filter(|first| first.0 .0 <= last) else {
                break;
            };
            due_now.clear();
            while let Some(&Reverse((at, pos))) = self.queue.peek() {
                if at != due {
                    break;
                }
                self.queue.pop();
                due_now.push(pos);
            }
            if due_now.len() > 1 {
                let leads = &self.leads;
                due_now.sort_unstable_by(|a, b| leads.at(*a).lead.cmp(&leads.at(*b).lead));
                due_now.dedup();
            }
            for &pos in &due_now {
                self.fire_one(pos, due, bound, inclusive)?;
            }
        }
        self.due_now = due_now;
        Ok(())
    }

    /// Fires the timer of the lead at `pos` due at `due`, unless it is stale
    /// (the lead moved on in this step) or repeated.
    fn fire_one(&mut self, pos: Pos, due: Millis, bound: Millis, inclusive: bool) -> Result<(), StepError> {
        let slot = self.leads.at_mut(pos);
        let Some(state) = slot.state.as_mut().filter(|s| s.next_due == Some(due)) else {
            return Ok(());
        };
        advance(self.p.model, state, due, &mut self.out);
        slot.dirty = true;
        let next = state.next_due;
        let lead = slot.lead.clone();
        if inclusive && self.p.mode == TimeMode::WallClock {
            self.step.observations.timer_delays.push(bound.saturating_sub(due));
        }
        self.step.stats.timers_fired += 1;
        self.emit(&lead, None)?;
        if let Some(next) = next {
            self.queue_timer(next, pos);
        }
        Ok(())
    }

    /// Makes sure every store timer due at or before `last` is in the queue.
    ///
    /// Scans ahead of `last`: in event time `last` moves with every event,
    /// and a store scan per event was a large share of a step. The first scan
    /// of a step reads `TIMER_LOOKAHEAD` ahead; each further one twice as far
    /// as the one before, up to `MAX_TIMER_LOOKAHEAD`. So a step of live
    /// events scans once, and one that covers days of history (a backfill,
    /// the offline scorer: a minute or more between events) a few times, not
    /// once per event, while reading at most about its own span beyond it.
    /// Scanning resumes after the last timer read, so no timer is read twice.
    ///
    /// The leads of the timers the step may fire (up to its horizon) join
    /// the step here, which queues their timers: the cached ones as they
    /// are, the others read from the store in one batch per page.
    fn load_store_timers(&mut self, last: Millis) -> Result<(), StepError> {
        while self.loaded_up_to.is_none_or(|l| l < last) {
            let up_to = last.saturating_add(self.lookahead);
            self.lookahead = self.lookahead.saturating_mul(2).min(MAX_TIMER_LOOKAHEAD);
            let after = self.scanned.as_ref().map(|(d, l)| (*d, l.as_str()));
            let page = self.p.store.due_timers(self.partition, after, up_to, TIMER_PAGE)?;
            let full = page.len() == TIMER_PAGE;
            let horizon = self.horizon;
            let mut missing: Vec<&str> = Vec::new();
            for (_, lead) in page.iter().filter(|(due, _)| *due <= horizon) {
                // A lead already in the step has its current timer queued.
                match self.position(lead.as_str()) {
                    Some(pos) => self.join(pos),
                    None => missing.push(lead.as_str()),
                }
            }
            // Each lead has one store timer: no lead is listed twice.
            missing.sort_unstable();
            self.read(&missing)?;
            self.scanned = page.last().cloned().or(self.scanned.take());
            // A full page may stop amid timers of one instant: only those before
            // it are surely all read.
            self.loaded_up_to = Some(match (&self.scanned, full) {
                (Some((due, _)), true) => due.saturating_sub(1),
                _ => up_to,
            });
        }
        Ok(())
    }
}
