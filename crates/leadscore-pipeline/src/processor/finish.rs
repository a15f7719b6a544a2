//! The end of a step: the state writes and changelog records of the leads it
//! left dirty, the cache handed back, and the checkpoint that closes it.

use super::leads::Pos;
use super::work::Work;
use super::Step;
use crate::messages::OutputRecord;
use leadscore_core::prefetch::DISTANCE;
use leadscore_store::encode_state;

impl Work<'_, '_> {
    /// The state writes and changelog records of the dirty leads, and the
    /// checkpoint (in the store, and as the changelog's closing marker).
    pub(super) fn finish(mut self) -> Step {
        let p = self.partition;
        // With a cache, states stay in it decoded; without a changelog per
        // step the store gets only their timer moves and deletions.
        let cache = self.p.cache();
        // A published changelog lists a step's leads in a stable order, so
        // that a replayed step publishes it alike whatever the cache held.
        // The store's writes need none (a lead is written once per step):
        // without a changelog the sort, a fortieth of the offline scorer's
        // time, is skipped, and the leads go in the order the step loaded them.
        let mut touched = std::mem::take(&mut self.touched);
        if self.p.changelog_per_step {
            let leads = &self.leads;
            touched.sort_unstable_by(|a, b| leads.at(*a).lead.cmp(&leads.at(*b).lead));
        }
        // Leads without a state leave the cache once the positions are no
        // longer needed (a removal moves another lead's slot).
        let mut gone: Vec<Pos> = Vec::new();
        // A timer move and a state per lead at most, then the checkpoint.
        self.step.write.ops.reserve(2 * touched.len() + 1);
        for (i, &pos) in touched.iter().enumerate() {
            // The step touched these slots thousands of events ago: they
            // have left the cache, and each waited on memory in turn.
            if let Some(&ahead) = touched.get(i + 2 * DISTANCE) {
                leadscore_core::prefetch::value(self.leads.at(ahead));
            }
            let slot = self.leads.at_mut(pos);
            slot.in_step = false;
            if !slot.dirty {
                if slot.state.is_none() {
                    gone.push(pos);
                }
                continue;
            }
            let lead = slot.lead.clone();
            slot.dirty = false;
            let next_due = slot.state.as_ref().and_then(|s| s.next_due);
            let member = slot.state.as_ref().map_or(0, |s| s.member);
            let counts = &mut self.checkpoint.counts;
            counts.leads += i64::from(slot.state.is_some()) - i64::from(slot.existed);
            counts.timers += i64::from(next_due.is_some()) - i64::from(slot.stored_due.is_some());
            let mut changed = member ^ slot.member;
            while changed != 0 {
                let i = changed.trailing_zeros() as usize;
                changed &= changed - 1;
                if counts.members.len() <= i {
                    counts.members.resize(self.p.model.segments.len().max(i + 1), 0);
                }
                counts.members[i] += if member >> i & 1 == 1 { 1 } else { -1 };
            }
            self.step.write.move_timer(p, lead.clone(), slot.stored_due, next_due);
            if let (Some(_), Some(state)) = (cache, slot.state.as_ref()) {
                // Kept decoded for the next step. With a changelog per step
                // its bytes go out (and into the store) now, so the cache
                // only saves the next read and decode; otherwise the cache's
                // flush encodes it once per commit.
                if self.p.changelog_per_step {
                    let mut value = Vec::with_capacity(256);
                    encode_state(state, self.p.model, &mut value);
                    self.step.write.put_state(p, lead.clone(), value.clone());
                    self.step.outputs.push(OutputRecord::changelog_state(
                        p,
                        lead.as_str(),
                        Some(value),
                        self.ctx.epoch,
                    ));
                } else {
                    slot.lagging = true;
                }
                continue;
            }
            let state = slot.state.take();
            gone.push(pos);
            let mut value = state.as_ref().map(|s| {
                let mut buf = Vec::with_capacity(256);
                encode_state(s, self.p.model, &mut buf);
                buf
            });
            // The bytes go to the changelog too, unless the runtime publishes
            // it per commit.
            let stored = if self.p.changelog_per_step { value.clone() } else { value.take() };
            match stored {
                Some(v) => self.step.write.put_state(p, lead.clone(), v),
                None => self.step.write.delete_state(p, lead.clone()),
            }
            if self.p.changelog_per_step {
                self.step.outputs.push(OutputRecord::changelog_state(p, lead.as_str(), value, self.ctx.epoch));
            }
        }
        if let Some(cache) = cache {
            // From the last position down: each removal moves a slot from
            // beyond the positions still to remove.
            gone.sort_unstable_by(|a, b| b.cmp(a));
            for pos in gone {
                self.leads.remove(pos);
            }
            cache.put(p, std::mem::take(&mut self.leads));
        }
        self.checkpoint.epoch = self.ctx.epoch.or(self.checkpoint.epoch);
        // A replay under way that this step does not finish stays recorded, so
        // that a crash now still replays the rest before ticking.
        let offsets = &self.checkpoint.next_offsets;
        self.checkpoint.replay = self
            .ctx
            .replay_until
            .filter(|until| until.iter().any(|(t, u)| offsets.get(t).copied().unwrap_or(0) < *u))
            .map(|until| leadscore_store::Replay { tick: None, until: until.clone() });
        if self.p.changelog_per_step {
            self.step.outputs.push(OutputRecord::changelog_marker(p, &self.checkpoint, self.ctx.epoch));
        }
        self.step.write.checkpoint(p, self.checkpoint.clone());
        // The published records wait for the commit, unlike the other
        // buffers: what was reserved and not used is given back (a large
        // allocation shrinks in place).
        self.step.observations.published.shrink_to_fit();
        self.step.base = self.base;
        self.step.checkpoint = self.checkpoint;
        self.step
    }
}
