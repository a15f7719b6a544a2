//! The simulated local store of an instance, whose unsynced writes a crash
//! may lose, checking online that a checkpoint never runs ahead of its
//! acknowledged outputs.

use super::*;

/// The instance's local store.
#[derive(Clone, Copy)]
pub struct SimStoreHandle<'s> {
    pub caller: Caller<'s>,
}

fn store_error(e: PortError) -> StoreError {
    StoreError(e.to_string())
}

impl SimStoreHandle<'_> {
    /// The online invariant: a checkpoint that moves an input offset forward
    /// is written only after every record sent is acknowledged (or its
    /// transaction committed).
    fn check_commit_order(w: &mut World, slot: usize, batch: &WriteBatch) {
        for op in &batch.ops {
            let Op::Checkpoint { partition, checkpoint } = op else { continue };
            let stored = w.slots[slot].store.current.checkpoint(*partition).ok().flatten().unwrap_or_default();
            let advances =
                checkpoint.next_offsets.iter().any(|(t, o)| stored.next_offsets.get(t).is_none_or(|s| o > s));
            let s = &w.slots[slot];
            if advances && checkpoint.replay.is_none() && (s.unacked > 0 || s.failed || s.in_transaction) {
                let what = format!(
                    "slot {slot} checkpointed partition {partition} to {:?} with {} records unacknowledged{}",
                    checkpoint.next_offsets,
                    s.unacked,
                    if s.in_transaction { " in an open transaction" } else { "" }
                );
                w.violations.push(what);
            }
        }
    }
}

impl SimStoreHandle<'_> {
    /// Writes the batch, checking first (if `check`) that the commit order
    /// holds.
    fn write_checked(&self, batch: &WriteBatch, check: bool) -> Result<(), StoreError> {
        self.caller
            .call(|w| {
                let slot = self.caller.slot;
                // A crash may come before or after the write.
                if w.slots[slot].crash.is_some() && w.rng.chance(0.5) {
                    return Ok(());
                }
                if check {
                    Self::check_commit_order(w, slot, batch);
                }

                if crate::world::tracing() {
                    for op in &batch.ops {
                        let line = match op {
                            Op::Checkpoint { partition, checkpoint: c } => format!(
                                "slot {slot} store: partition {partition} checkpoint {:?} changelog {:?} replay {:?}",
                                c.next_offsets, c.changelog_next_offset, c.replay
                            ),
                            Op::PutState { lead, .. } => format!("slot {slot} store: put {lead}"),
                            Op::DeleteState { lead, .. } => format!("slot {slot} store: delete {lead}"),
                            Op::MoveTimer { .. } => continue,
                        };
                        w.note(line);
                    }
                }
                let sync = w.faults.sync_writes || w.rng.chance(w.faults.os_sync);
                w.slots[slot].store.write(batch, sync);
                Ok(())
            })
            .map_err(store_error)
    }
}

/// The store writer of the simulation: a write handed over lands at a later
/// turn the scheduler picks (as a writer thread's would, while the loop goes
/// on), or when the loop waits for it. The commit order is checked when the
/// write is handed over: then every record sent must be acknowledged.
pub struct SimWriter<'s> {
    pub store: SimStoreHandle<'s>,
    pub pending: Option<Pending>,
}

/// A write started and not landed yet.
pub enum Pending {
    Commit(SealedWrite),
    /// A restore's batch, commit order checked at the start like a commit's.
    Batch(WriteBatch),
}

impl SimWriter<'_> {
    fn check_order(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.store
            .caller
            .call(|w| {
                SimStoreHandle::check_commit_order(w, self.store.caller.slot, batch);
                Ok(())
            })
            .map_err(store_error)
    }
}

impl StoreWriter for SimWriter<'_> {
    fn start(&mut self, write: SealedWrite) -> Result<(), StoreError> {
        self.check_order(&write.batch())?;
        self.pending = Some(Pending::Commit(write));
        Ok(())
    }

    fn start_batch(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check_order(&batch)?;
        self.pending = Some(Pending::Batch(batch));
        Ok(())
    }

    fn finished(&mut self, wait: bool) -> Result<Option<Duration>, StoreError> {
        let Some(pending) = &self.pending else { return Ok(Some(Duration::ZERO)) };
        if !wait && self.store.caller.call(|w| Ok(w.rng.chance(0.5))).map_err(store_error)? {
            return Ok(None);
        }
        match pending {
            Pending::Commit(write) => self.store.write_checked(&write.batch(), false)?,
            Pending::Batch(batch) => self.store.write_checked(batch, false)?,
        }
        self.pending = None;
        Ok(Some(Duration::ZERO))
    }
}

impl StateStore for SimStoreHandle<'_> {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.caller
            .call(|w| Ok(w.slots[self.caller.slot].store.current.get_states(partition, leads)))
            .map_err(store_error)?
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        self.caller
            .call(|w| Ok(w.slots[self.caller.slot].store.current.due_timers(partition, after, up_to, limit)))
            .map_err(store_error)?
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        self.caller
            .call(|w| Ok(w.slots[self.caller.slot].store.current.lead_ids(partition, after, limit)))
            .map_err(store_error)?
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        self.caller.call(|w| Ok(w.slots[self.caller.slot].store.current.checkpoint(partition))).map_err(store_error)?
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.write_checked(batch, true)
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        self.caller
            .call(|w| {
                let sync = w.faults.sync_writes;
                w.slots[self.caller.slot].store.drop_partition(partition, sync);
                Ok(())
            })
            .map_err(store_error)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.caller.call(|w| Ok(w.slots[self.caller.slot].store.current.partitions())).map_err(store_error)?
    }
}
