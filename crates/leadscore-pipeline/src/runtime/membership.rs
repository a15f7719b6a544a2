//! Partition ownership: what an assignment or a revocation changes, restoring
//! newly owned partitions a bounded amount per iteration, and activating them.
//!
//! Local state follows ownership: a revoked partition's state is kept only
//! until the next assignment says whether it comes back (an eager rebalance
//! revokes everything and then assigns most of it again); otherwise it is
//! dropped, so that no instance keeps state of a partition another owns (a
//! lead erased there would come back with it). At startup, local partitions
//! that the first assignment does not include are dropped for the same reason.

use super::restore::{RestoreEnv, RestoreTask};
use super::{Owned, Ports, RunError, Runtime};
use crate::messages::OutputRecord;
use crate::processor::TimeMode;
use crate::runtime::settings::Guarantee;
use leadscore_core::LeadId;
use leadscore_store::{Partition, WriteBatch};
use std::collections::BTreeSet;
use std::time::Duration;

/// Restore work per iteration: records, and time.
const RESTORE_RECORDS: usize = 20_000;
const RESTORE_TIME: Duration = Duration::from_millis(50);

impl Runtime<'_> {
    pub(super) fn assigned(&mut self, partitions: Vec<Partition>) -> Result<(), RunError> {
        let m = &self.telemetry.metrics;
        m.rebalances.with_label_values(&["assigned"]).inc();
        self.telemetry.status.consuming.store(true, std::sync::atomic::Ordering::Relaxed);
        let assigned: BTreeSet<Partition> = partitions.iter().copied().collect();
        let mut stale: BTreeSet<Partition> = self.revoked.difference(&assigned).copied().collect();
        if !self.joined {
            self.joined = true;
            stale.extend(self.store.partitions()?.into_iter().filter(|p| !assigned.contains(p)));
        }
        for p in stale {
            tracing::info!(partition = p, "dropping the local state of a partition owned elsewhere now");
            self.store.drop_partition(p)?;
        }
        self.revoked.clear();
        for p in partitions {
            if self.owned.contains_key(&p) {
                continue;
            }
            self.owned.insert(p, Owned::default());
        }
        tracing::info!(assigned = ?assigned, "partitions assigned; restoring their state");
        self.export_counts();
        Ok(())
    }

    pub(super) fn revoked(&mut self, ports: &mut Ports<'_>, partitions: Vec<Partition>) {
        self.telemetry.metrics.rebalances.with_label_values(&["revoked"]).inc();
        tracing::info!(partitions = ?partitions, "partitions revoked");
        // Flushed by the commit before the revocation. Dropped now so that
        // no memory holds a partition owned elsewhere; should it come back,
        // `activate` drops whatever is cached again (the simulation catches
        // the loss of both, defects/9-cache-outlives-ownership.patch).
        self.cache.forget(&partitions);
        for p in partitions {
            if self.owned.remove(&p).is_none() {
                continue;
            }
            self.aligner.forget(p);
            self.schema_paused.remove(&p);
            self.revoked.insert(p);
            if self.restoring.as_ref().is_some_and(|t| t.partition == p) {
                if let Some(mut task) = self.restoring.take() {
                    task.cancel(&mut self.restore_env(ports));
                }
            }
            for topic in self.settings.topics.inputs.keys() {
                let _ = self.telemetry.metrics.consumer_lag.remove_label_values(&[topic.as_str(), &p.to_string()]);
            }
        }
        self.export_counts();
    }

    fn restore_env<'e>(&'e self, ports: &'e mut Ports<'_>) -> RestoreEnv<'e> {
        RestoreEnv {
            changelog: &mut *ports.changelog,
            store: self.store,
            writer: &mut *ports.writer,
            clock: ports.clock,
            telemetry: self.telemetry,
            settings: self.settings,
        }
    }

    /// Restores owned partitions that are not active yet, one at a time, for
    /// a bounded amount of work; activates those that finish.
    pub(super) fn restore_some(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        if self.restoring.is_none() && !self.has_restores_queued() {
            return Ok(());
        }
        // A restore writes the store directly; staged work of the other
        // partitions is committed first, so that no checkpoint is ever
        // written while outputs it does not cover are in flight.
        self.commit_staged(ports)?;
        let started = ports.clock.elapsed();
        while ports.clock.elapsed().saturating_sub(started) < RESTORE_TIME {
            let mut task = match self.restoring.take() {
                Some(task) => task,
                None => match self.owned.iter().find(|(_, o)| !o.active) {
                    Some((&p, _)) => {
                        self.prepare(ports)?;
                        RestoreTask::new(p, ports.clock.elapsed())
                    }
                    None => return Ok(()),
                },
            };
            // A chunk it started writing may still be written when this
            // returns: the next chunk, the restore's end, a commit's write
            // and a revocation each wait for it.
            let done = task.step(&mut self.restore_env(ports), RESTORE_RECORDS, started + RESTORE_TIME)?;
            if !done {
                self.restoring = Some(task);
                return Ok(());
            }
            self.activate(ports, &task)?;
        }
        Ok(())
    }

    /// Tells the changelog reader every partition waiting for its restore.
    fn prepare(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        let waiting: Vec<Partition> =
            self.owned.iter().filter(|(_, o)| !o.active && !o.prepared).map(|(p, _)| *p).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        ports.changelog.prepare(&waiting).map_err(RunError::Changelog)?;
        for p in waiting {
            if let Some(o) = self.owned.get_mut(&p) {
                o.prepared = true;
            }
        }
        Ok(())
    }

    /// A restored partition starts consuming where its checkpoint says.
    fn activate(&mut self, ports: &mut Ports<'_>, task: &RestoreTask) -> Result<(), RunError> {
        let p = task.partition;
        // Nothing cached may shadow what was just restored.
        self.cache.forget(&[p]);
        let generation = ports.source.group().map_or(0, |g| g.generation);
        // The next owner's epoch: above every epoch it restored, and above a
        // concurrent owner that restored the same (a later group generation).
        let base = task.highest_epoch().map_or(0, |e| e >> 32) + 1;
        let epoch = (base << 32) | (generation & 0xffff_ffff);
        if self.settings.guarantee == Guarantee::AtLeastOnce && !task.in_doubt().is_empty() {
            self.repair(ports, p, task.in_doubt(), epoch)?;
        }
        let checkpoint = self.store.checkpoint(p)?.unwrap_or_default();
        self.aligner.assign(p, &checkpoint.next_offsets);
        // A replay record behind the checkpoint is stale (a former owner's,
        // written after its step was replayed and committed elsewhere).
        let ahead = |r: &leadscore_store::Replay| {
            r.until.iter().any(|(t, u)| checkpoint.next_offsets.get(t).copied().unwrap_or(0) < *u)
        };
        let replaying = self.settings.guarantee == Guarantee::AtLeastOnce
            && self.settings.time_mode == TimeMode::WallClock
            && checkpoint.replay.as_ref().is_some_and(ahead);
        let replay = if replaying { checkpoint.replay.clone() } else { None };
        if let Some(r) = &replay {
            tracing::info!(
                partition = p, tick = ?r.tick, until = ?r.until,
                "replaying the step in flight at the last stop with its recorded timers"
            );
        }
        let owned = self.owned.get_mut(&p).expect("restoring an owned partition");
        *owned = Owned {
            active: true,
            counts: checkpoint.counts.clone(),
            next_offsets: checkpoint.next_offsets.clone(),
            epoch: Some(epoch),
            replay_tick: replay.as_ref().and_then(|r| r.tick),
            replay,
            prepared: true,
        };
        ports.source.resume(p).map_err(RunError::Source)?;
        tracing::info!(partition = p, restored_records = task.records, "partition restored; consuming");
        self.export_counts();
        Ok(())
    }

    /// At least once: the changelog ends with records of a step that did not
    /// commit. Publishes the restored state of those leads again (a tombstone
    /// for a lead the checkpoint does not have) and a marker, so that every
    /// later restore reads the committed states after them.
    fn repair(
        &mut self,
        ports: &mut Ports<'_>,
        partition: Partition,
        leads: &BTreeSet<LeadId>,
        epoch: i64,
    ) -> Result<(), RunError> {
        let names: Vec<&str> = leads.iter().map(LeadId::as_str).collect();
        let states = self.store.get_states(partition, &names)?;
        let mut records: Vec<OutputRecord> = leads
            .iter()
            .zip(states)
            .map(|(lead, value)| OutputRecord::changelog_state(partition, lead.as_str(), value, Some(epoch)))
            .collect();
        let mut checkpoint = self.store.checkpoint(partition)?.unwrap_or_default();
        checkpoint.epoch = Some(epoch);
        records.push(OutputRecord::changelog_marker(partition, &checkpoint, Some(epoch)));
        ports.sink.send(&records).map_err(RunError::Sink)?;
        let acked = ports.sink.flush(self.settings.delivery_timeout).map_err(RunError::Sink)?;
        if let Some(offset) = acked.markers.get(&partition) {
            checkpoint.changelog_next_offset = Some(offset + 1);
        }
        let mut batch = WriteBatch::default();
        batch.checkpoint(partition, checkpoint);
        self.store.write(&batch)?;
        tracing::info!(
            partition,
            leads = leads.len(),
            "republished the committed state of leads whose last changelog records were never committed"
        );
        Ok(())
    }
}
