//! Writes that are done but not yet durable, in front of the durable store.
//!
//! The runtime commits its store once per commit interval, not once per poll
//! batch: every batch's writes are staged here ([`StateStore::write`]), the
//! next batches read through them (a lead touched again reads its newest
//! state, a moved timer is found where it is now), and once the batches'
//! outputs are acknowledged [`Overlay::take`] turns everything staged into one
//! [`WriteBatch`] for the durable store: each lead's latest state, each timer's
//! one move from where the durable store has it to where it is now, each
//! partition's latest checkpoint. A lead written in ten batches of an interval
//! is written to RocksDB once.
//!
//! Dropping a partition goes straight through: the runtime only drops
//! partitions it no longer owns, after committing what it staged.

use crate::{Checkpoint, LeadId, Op, Partition, StateStore, StoreError, WriteBatch};
use leadscore_core::Millis;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// A timer's pending move: where the durable store has it, where it is now.
#[derive(Debug, Clone, Copy)]
struct Move {
    durable: Option<Millis>,
    now: Option<Millis>,
}

/// Maps by partition, then by lead (looked up by `&str`, without allocating).
#[derive(Debug, Default)]
struct Staged {
    /// `None`: erased.
    states: HashMap<Partition, HashMap<LeadId, Option<Vec<u8>>>>,
    /// Every lead whose timer moved, from where the durable store has it
    /// (hidden from scans) to where it is now.
    moves: HashMap<Partition, HashMap<LeadId, Move>>,
    /// Timers where they are now, for scans.
    timers: BTreeMap<Partition, BTreeSet<(Millis, LeadId)>>,
    checkpoints: BTreeMap<Partition, Checkpoint>,
    /// Bytes of staged state values and keys, for the memory budget.
    bytes: usize,
}

/// See the module documentation.
pub struct Overlay<'s> {
    durable: &'s dyn StateStore,
    staged: Mutex<Staged>,
}

impl<'s> Overlay<'s> {
    pub fn new(durable: &'s dyn StateStore) -> Overlay<'s> {
        Overlay { durable, staged: Mutex::new(Staged::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staged writes are plain maps, consistent after any panic mid-call.
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.states.values().all(HashMap::is_empty) && s.moves.values().all(HashMap::is_empty) && s.checkpoints.is_empty()
    }

    /// Roughly how much memory the staged states take.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The staged checkpoints.
    pub fn checkpoints(&self) -> BTreeMap<Partition, Checkpoint> {
        self.lock().checkpoints.clone()
    }

    /// Stages the batch, taking its values (see the module documentation);
    /// [`StateStore::write`] does the same with copies.
    pub fn stage(&self, batch: WriteBatch) {
        let mut staged = self.lock();
        for op in batch.ops {
            staged.stage(op);
        }
    }

    /// Everything staged, as one batch for the durable store; the overlay is
    /// empty afterwards. Checkpoints come last, after the states they cover.
    pub fn take(&self) -> WriteBatch {
        let staged = std::mem::take(&mut *self.lock());
        let mut batch = WriteBatch::default();
        // In partition and lead order, whatever the hash maps' order: the
        // batch (and the changelog made of it) is the same on every run,
        // which keeps simulation seeds replayable.
        for (partition, lead, value) in sorted(staged.states) {
            match value {
                Some(value) => batch.put_state(partition, lead, value),
                None => batch.delete_state(partition, lead),
            }
        }
        for (partition, lead, m) in sorted(staged.moves) {
            batch.move_timer(partition, lead, m.durable, m.now);
        }
        for (partition, checkpoint) in staged.checkpoints {
            batch.checkpoint(partition, checkpoint);
        }
        batch
    }
}

/// The entries of per-partition maps, in partition and lead order.
fn sorted<V>(by: HashMap<Partition, HashMap<LeadId, V>>) -> Vec<(Partition, LeadId, V)> {
    let mut all: Vec<(Partition, LeadId, V)> =
        by.into_iter().flat_map(|(p, leads)| leads.into_iter().map(move |(l, v)| (p, l, v))).collect();
    all.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    all
}

impl Staged {
    fn stage(&mut self, op: Op) {
        match op {
            Op::PutState { partition, lead, value } => {
                let key = lead.as_str().len();
                self.bytes += value.len() + key;
                if let Some(Some(old)) = self.states.entry(partition).or_default().insert(lead, Some(value)) {
                    self.bytes -= old.len() + key;
                }
            }
            Op::DeleteState { partition, lead } => {
                let key = lead.as_str().len();
                if let Some(Some(old)) = self.states.entry(partition).or_default().insert(lead, None) {
                    self.bytes -= old.len() + key;
                }
            }
            Op::MoveTimer { partition, lead, old, new } => {
                let timers = self.timers.entry(partition).or_default();
                let moves = self.moves.entry(partition).or_default();
                match moves.get_mut(lead.as_str()) {
                    Some(m) => {
                        if let Some(at) = m.now {
                            timers.remove(&(at, lead.clone()));
                        }
                        m.now = new;
                    }
                    None => {
                        moves.insert(lead.clone(), Move { durable: old, now: new });
                    }
                }
                if let Some(new) = new {
                    timers.insert((new, lead));
                }
            }
            Op::Checkpoint { partition, checkpoint } => {
                self.checkpoints.insert(partition, checkpoint);
            }
        }
    }

    fn drop_partition(&mut self, partition: Partition) {
        self.states.remove(&partition);
        self.moves.remove(&partition);
        self.timers.remove(&partition);
        self.checkpoints.remove(&partition);
        self.bytes = self
            .states
            .values()
            .flat_map(|leads| leads.iter())
            .map(|(l, v)| v.as_ref().map_or(0, |v| v.len() + l.as_str().len()))
            .sum();
    }
}

impl StateStore for Overlay<'_> {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let staged = self.lock();
        let mut found: Vec<Option<Option<Vec<u8>>>> = Vec::with_capacity(leads.len());
        let mut missing = Vec::new();
        let states = staged.states.get(&partition);
        for lead in leads {
            match states.and_then(|s| s.get(*lead)) {
                Some(v) => found.push(Some(v.clone())),
                None => {
                    found.push(None);
                    missing.push(*lead);
                }
            }
        }
        drop(staged);
        if missing.is_empty() {
            return Ok(found.into_iter().map(|v| v.flatten()).collect());
        }
        let mut durable = self.durable.get_states(partition, &missing)?.into_iter();
        Ok(found.into_iter().map(|v| v.unwrap_or_else(|| durable.next().flatten())).collect())
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let staged = self.lock();
        let states = staged.states.get(&partition);
        let mut cursor = after.map(LeadId::from);
        loop {
            let page = self.durable.lead_ids(partition, cursor.as_ref().map(|l| l.as_str()), limit)?;
            let last = page.last().cloned();
            // Staged deletions hide durable leads; staged states add leads,
            // up to the durable page's last (or all, past the durable end).
            let mut merged: Vec<LeadId> =
                page.into_iter().filter(|l| !matches!(states.and_then(|s| s.get(l)), Some(None))).collect();
            if let Some(states) = states {
                merged.extend(
                    states
                        .iter()
                        .filter(|(l, v)| v.is_some() && cursor.as_ref().is_none_or(|c| *l > c))
                        .filter(|(l, _)| last.as_ref().is_none_or(|last| *l <= last))
                        .map(|(l, _)| l.clone()),
                );
            }
            merged.sort_unstable();
            merged.dedup();
            merged.truncate(limit);
            // Only an empty durable page ends the scan.
            if !merged.is_empty() || last.is_none() {
                return Ok(merged);
            }
            cursor = last;
        }
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let staged = self.lock();
        let moves = staged.moves.get(&partition);
        let moved_away =
            |due: Millis, lead: &str| moves.and_then(|m| m.get(lead)).is_some_and(|m| m.durable == Some(due));
        // Durable timers, without those that moved; read on until `limit` are
        // left or the durable store has no more.
        let mut durable = Vec::new();
        let mut cursor: Option<(Millis, LeadId)> = after.map(|(d, l)| (d, LeadId::from(l)));
        loop {
            let page =
                self.durable.due_timers(partition, cursor.as_ref().map(|(d, l)| (*d, l.as_str())), up_to, limit)?;
            let full = page.len() == limit;
            for (due, lead) in page {
                if !moved_away(due, lead.as_str()) {
                    durable.push((due, lead.clone()));
                }
                cursor = Some((due, lead));
            }
            if !full || durable.len() >= limit {
                break;
            }
        }
        let start = match &after {
            Some((d, l)) => Bound::Excluded((*d, LeadId::from(*l))),
            None => Bound::Unbounded,
        };
        let pending: Vec<(Millis, LeadId)> = staged
            .timers
            .get(&partition)
            .map(|t| t.range((start, Bound::Unbounded)).take_while(|(d, _)| *d <= up_to).take(limit).cloned().collect())
            .unwrap_or_default();
        let mut merged: Vec<(Millis, LeadId)> = durable.into_iter().chain(pending).collect();
        merged.sort_unstable();
        merged.dedup();
        merged.truncate(limit);
        Ok(merged)
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        if let Some(c) = self.lock().checkpoints.get(&partition) {
            return Ok(Some(c.clone()));
        }
        self.durable.checkpoint(partition)
    }

    /// Stages the batch (see the module documentation).
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.stage(batch.clone());
        Ok(())
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        self.lock().drop_partition(partition);
        self.durable.drop_partition(partition)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut all: BTreeSet<Partition> = self.durable.partitions()?.into_iter().collect();
        all.extend(self.lock().checkpoints.keys().copied());
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
