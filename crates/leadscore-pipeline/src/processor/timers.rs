//! Firing due timers: the store's timer index is read page by page, a little
//! ahead of the instant asked for, into the step's queue, which also holds
//! the timers the step itself sets.

use super::work::Work;
use super::{StepError, TimeMode, MAX_TIMER_LOOKAHEAD, TIMER_PAGE};
use leadscore_core::engine::advance;
use leadscore_core::Millis;
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;

impl Work<'_, '_> {
    /// Fires, in (due, lead) order, every timer due before `bound` (or at it,
    /// when `inclusive`), including timers that firing sets.
    pub(super) fn fire_due(&mut self, bound: Millis, inclusive: bool) -> Result<(), StepError> {
        let last = if inclusive { bound } else { bound.saturating_sub(1) };
        loop {
            self.load_store_timers(last)?;
            let Some(first) = self.queue.peek_mut().filter(|first| first.0 .0 <= last) else {
                return Ok(());
            };
            let Reverse((due, lead)) = PeekMut::pop(first);
            let pos = self.load_one(lead.as_str(), None)?;
            let slot = self.leads.at_mut(pos);
            let Some(state) = slot.state.as_mut().filter(|s| s.next_due == Some(due)) else {
                continue; // stale (the lead moved on in this step) or repeated
            };
            advance(self.p.model, state, due, &mut self.out);
            slot.dirty = true;
            if inclusive && self.p.mode == TimeMode::WallClock {
                self.step.observations.timer_delays.push(bound.saturating_sub(due));
            }
            let next = state.next_due;
            self.step.stats.timers_fired += 1;
            self.emit(&lead, None)?;
            if let Some(next) = next {
                self.queue_timer(next, lead);
            }
        }
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
    fn load_store_timers(&mut self, last: Millis) -> Result<(), StepError> {
        while self.loaded_up_to.is_none_or(|l| l < last) {
            let up_to = last.saturating_add(self.lookahead);
            self.lookahead = self.lookahead.saturating_mul(2).min(MAX_TIMER_LOOKAHEAD);
            let after = self.scanned.as_ref().map(|(d, l)| (*d, l.as_str()));
            let page = self.p.store.due_timers(self.partition, after, up_to, TIMER_PAGE)?;
            let full = page.len() == TIMER_PAGE;
            for (due, lead) in page {
                self.scanned = Some((due, lead.clone()));
                // A lead already in the working set has its current timer queued.
                if !self.has(lead.as_str()) {
                    self.queue_timer(due, lead);
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
}
