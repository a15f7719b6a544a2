//! Writing what a restore has read: the committed states of a chunk, their
//! timers moved from the states they replace, and the last marker's
//! checkpoint, in one store write, on the store writer's thread while the
//! restore reads on (the RocksDB write was two fifths of the loop's time in a
//! restore).

use super::{RestoreEnv, RestoreTask};
use crate::runtime::RunError;
use leadscore_core::{LeadId, Millis};
use leadscore_store::{peek_next_due, Checkpoint, WriteBatch};

impl RestoreTask {
    /// Writes the committed states (and their timers), with `checkpoint`.
    pub(super) fn write(&mut self, env: &mut RestoreEnv<'_>, checkpoint: Option<Checkpoint>) -> Result<(), RunError> {
        let partition = self.partition;
        // The previous chunk first: the states read below may be its.
        env.writer.finished(true)?;
        let mut leads: Vec<(LeadId, Option<Vec<u8>>)> = self.committed.drain().collect();
        leads.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let old = if self.kept_local || self.written {
            let names: Vec<&str> = leads.iter().map(|(l, _)| l.as_str()).collect();
            env.store.get_states(partition, &names)?
        } else {
            vec![None; leads.len()]
        };
        self.written = true;
        let due = |lead: &LeadId, bytes: Option<&Vec<u8>>| -> Result<Option<Millis>, RunError> {
            match bytes {
                None => Ok(None),
                Some(b) => peek_next_due(b).map_err(|source| {
                    RunError::Step(crate::processor::StepError::CorruptState {
                        lead: lead.to_string(),
                        partition,
                        source,
                    })
                }),
            }
        };
        let mut batch = WriteBatch::default();
        for ((lead, value), old) in leads.into_iter().zip(old) {
            let old_due = due(&lead, old.as_ref())?;
            let new_due = due(&lead, value.as_ref())?;
            batch.move_timer(partition, lead.clone(), old_due, new_due);
            match value {
                Some(v) => batch.put_state(partition, lead, v),
                None => batch.delete_state(partition, lead),
            }
        }
        match checkpoint {
            Some(c) => batch.checkpoint(partition, c),
            // States with no checkpoint of their partition are invisible to
            // a restart that drops the partitions owned elsewhere now: a
            // checkpoint without a changelog offset marks them as leftovers
            // (a crash after an early write left them for good; the
            // simulation found it once its restores wrote early).
            None if !self.checkpointed => batch.checkpoint(partition, Checkpoint::default()),
            None => {}
        }
        self.checkpointed = true;
        env.writer.start_batch(batch)?;
        Ok(())
    }
}
