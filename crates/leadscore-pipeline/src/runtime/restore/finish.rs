//! The end of a restore: the end of a read (a probe's, or the last), its
//! last write, the leads left in doubt, its time and count; and its
//! cancellation when the partition is revoked.

use super::{Phase, RestoreEnv, RestoreTask};
use crate::runtime::RunError;
use leadscore_store::Checkpoint;

impl RestoreTask {
    pub(super) fn end_of_read(&mut self, env: &mut RestoreEnv<'_>) -> Result<(), RunError> {
        match self.phase {
            Phase::Probe { window, resume, epoch } => {
                if self.last_marker.is_none() && self.high.saturating_sub(window) > resume {
                    return self.probe(env, resume, epoch, window.saturating_mul(4));
                }
                // Epochs are read again from where the read stopped.
                self.highest_epoch = epoch;
                self.phase = Phase::Apply;
                self.at = resume;
                env.changelog.start(self.partition, resume).map_err(RunError::Changelog)?;
            }
            Phase::Apply => {
                if let Some(offset) = self.opened.take() {
                    // Exactly once, a former owner's opener: its transaction
                    // committed (this reader reads committed records only),
                    // with its states and markers sent at the commit,
                    // possibly after the end was read. They are all before
                    // the end now; the reader may have read past the old
                    // end already, and starts again where the restore is.
                    let (_, high) = env.changelog.watermarks(self.partition).map_err(RunError::Changelog)?;
                    if high > self.high {
                        self.high = high;
                        env.changelog.start(self.partition, self.at).map_err(RunError::Changelog)?;
                        return Ok(());
                    }
                    tracing::warn!(
                        partition = self.partition,
                        offset,
                        "a committed changelog opener without a checkpoint marker after it; restored up to the marker before it"
                    );
                }
                self.finish(env)?
            }
            Phase::Plan | Phase::Done => self.phase = Phase::Done,
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, env: &mut RestoreEnv<'_>) -> Result<(), RunError> {
        // A chunk's checkpoint may be in the write under way.
        env.writer.finished(true)?;
        // The unfinished step's replay record, for the runtime, in the
        // checkpoint of the last marker.
        let checkpoint = match (self.checkpoint.take(), self.replay.take()) {
            (checkpoint, None) => checkpoint,
            (Some(c), Some(replay)) => Some(Checkpoint { replay: Some(replay), ..c }),
            (None, Some(replay)) => {
                let c = env.store.checkpoint(self.partition)?.unwrap_or_default();
                Some(Checkpoint { replay: Some(replay), ..c })
            }
        };
        if checkpoint.is_some() || !self.committed.is_empty() {
            self.write(env, checkpoint)?;
        }
        // Nothing left to read meanwhile; and the restore's time includes it.
        env.writer.finished(true)?;
        env.changelog.stop();
        self.phase = Phase::Done;
        let ignored = self.pending.len();
        self.in_doubt = self.pending.drain().map(|(lead, _)| lead).chain(std::mem::take(&mut self.rejected)).collect();
        self.uncount(env);
        env.telemetry.counters.restores.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seconds = env.clock.elapsed().saturating_sub(self.started).as_secs_f64();
        env.telemetry.metrics.restore_duration.observe(seconds);
        tracing::info!(
            partition = self.partition,
            from = self.from,
            to = self.high,
            records = self.records,
            ignored,
            kept_local = self.kept_local,
            seconds,
            "restored state from the changelog"
        );
        Ok(())
    }

    /// Cancels a restore under way (its partition was revoked), once the
    /// chunk it was writing, if any, is written.
    pub(crate) fn cancel(&mut self, env: &mut RestoreEnv<'_>) {
        if let Err(e) = env.writer.finished(true) {
            // Atomic: nothing of the chunk was written, and the partition
            // is another owner's now.
            tracing::warn!(partition = self.partition, error = %e, "a cancelled restore's last write failed");
        }
        if matches!(self.phase, Phase::Probe { .. } | Phase::Apply) {
            env.changelog.stop();
        }
        self.uncount(env);
        self.phase = Phase::Done;
    }

    pub(super) fn uncount(&mut self, env: &mut RestoreEnv<'_>) {
        if std::mem::take(&mut self.counted) {
            env.telemetry.metrics.restoring_partitions.dec();
            env.telemetry.metrics.restore_remaining.set(0);
        }
    }
}
