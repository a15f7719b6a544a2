//! One layer of staged writes read on top of whatever is below it (the
//! durable store, or an older layer): a staged state hides the one below, a
//! staged deletion hides the lead, and a staged timer move hides where the
//! layer below has that lead's timer. Layers stack, so the runtime can keep
//! a sealed commit readable while the next one is staged on top of it.

use super::Staged;
use crate::{Checkpoint, LeadId, Partition, StateStore, StoreError, WriteBatch};
use leadscore_core::Millis;
use std::collections::BTreeSet;
use std::ops::Bound;

/// `staged`, read on top of `below`.
pub(super) struct Layer<'x> {
    pub staged: &'x Staged,
    pub below: &'x dyn StateStore,
}

impl StateStore for Layer<'_> {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let staged = self.staged;
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
        if missing.is_empty() {
            return Ok(found.into_iter().map(|v| v.flatten()).collect());
        }
        let mut durable = self.below.get_states(partition, &missing)?.into_iter();
        Ok(found.into_iter().map(|v| v.unwrap_or_else(|| durable.next().flatten())).collect())
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let staged = self.staged;
        let states = staged.states.get(&partition);
        let mut cursor = after.map(LeadId::from);
        loop {
            let page = self.below.lead_ids(partition, cursor.as_ref().map(|l| l.as_str()), limit)?;
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
        let staged = self.staged;
        let moves = staged.moves.get(&partition);
        let moved_away =
            |due: Millis, lead: &str| moves.and_then(|m| m.get(lead)).is_some_and(|m| m.durable == Some(due));
        // Durable timers, without those that moved; read on until `limit` are
        // left or the durable store has no more.
        let mut durable = Vec::new();
        let mut cursor: Option<(Millis, LeadId)> = after.map(|(d, l)| (d, LeadId::from(l)));
        loop {
            let page =
                self.below.due_timers(partition, cursor.as_ref().map(|(d, l)| (*d, l.as_str())), up_to, limit)?;
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
        match self.staged.checkpoints.get(&partition) {
            Some(c) => Ok(Some(c.clone())),
            None => self.below.checkpoint(partition),
        }
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut all: BTreeSet<Partition> = self.below.partitions()?.into_iter().collect();
        all.extend(self.staged.checkpoints.keys().copied());
        Ok(all.into_iter().collect())
    }

    /// A layer is a read-only view; the overlay stages writes itself.
    fn write(&self, _batch: &WriteBatch) -> Result<(), StoreError> {
        Err(StoreError("a staged layer is read only".into()))
    }

    fn drop_partition(&self, _partition: Partition) -> Result<(), StoreError> {
        Err(StoreError("a staged layer is read only".into()))
    }
}
