//! The commit protocol of each guarantee (docs/runtime.md has the diagrams
//! and what every crash point leaves behind).
//!
//! At least once:
//! 1. wall clock only: publish each step's replay marker (its tick and the
//!    inputs it covers) to the changelog and wait for it (for it alone, not
//!    for earlier steps' outputs still in flight), so that whichever
//!    instance replays the step after a crash replays it identically;
//! 2. publish every output and changelog state record;
//! 3. wait until all are acknowledged; any failure stops here, nothing
//!    committed (a restart replays the steps);
//! 4. only then publish the checkpoint markers, and wait for them: records of
//!    different partitions land independently, and a restore trusts a marker
//!    it finds, so a marker must never be on the changelog before the outputs
//!    it covers (wall clock holds each step's marker until the next batch or
//!    the commit; event time, until the commit's states are acknowledged);
//! 5. write states, timers and checkpoints (input offsets, the changelog
//!    offset each step's marker got) to the store in one atomic batch;
//! 6. commit the input offsets to the group (best effort: the store's
//!    checkpoint is what a restart trusts; never for partitions being
//!    revoked, whose new owner may have restored from an earlier marker).
//!
//! Exactly once: the records of every batch since the last commit go in one
//! Kafka transaction, opened by the first of them, each partition's first
//! step with an opener on its changelog partition; at the commit, the
//! changelog (each changed lead's latest state, each partition's marker)
//! goes in too, and once all is delivered, the input offsets of every owned
//! partition are added (also when only timers fired, so that the group coordinator fences an owner
//! that lost its partitions) and the transaction commits; the store is
//! written after that. A crash before the commit aborts the whole interval;
//! one after it is repaired by the changelog restore, which reads committed
//! records only, and waits for transactions still open on the changelog to end.
//!
//! With a commit interval (`processing.commit_interval_ms`) the store write
//! of step 5 (and the group offsets of step 6) happen once per interval: each
//! poll batch is *published* (its outputs sent, not awaited; exactly once,
//! in the commit's open transaction) and *staged* in the
//! [`leadscore_store::overlay::Overlay`] that later batches read through; the
//! *commit* awaits every output sent since the last one, then writes all
//! staged states, timers and checkpoints in one batch. A crash in between
//! leaves each batch of the interval at one of the crash points above (sent
//! in part, or delivered whole with its checkpoint marker), and recovery is
//! the same: the restore applies the changelog up to the last delivered
//! marker, and what follows it is processed again.
//!
//! Except at least once in wall clock, the changelog itself is published per
//! commit, not per step (`RuntimeSettings::changelog_per_commit`): the commit
//! sends each changed lead's latest state and one checkpoint marker per partition,
//! awaits them with the outputs, then writes the store. A lead changed by
//! ten batches of an interval is one changelog record, not ten. A crash
//! before the commit replays every batch since the last one from its inputs,
//! which event time makes publish the same records.
//!
//! In every mode the store write leaves the loop: a due commit is *sealed*
//! (its staged writes set aside in the overlay's sealed layer, which the next
//! batches still read), handed to the store writer ([`Ports::writer`], its own
//! thread), and *completed* (layer dropped, group offsets, metrics) on a later
//! iteration once written. At least once in event time the wait for the
//! acknowledgements is pipelined too ([`RuntimeSettings::pipelined_commit`]):
//! the seal starts sending the changelog (in slices, one per iteration), the
//! sink is marked after the last slice, and the write starts once everything
//! sent before the mark is acknowledged. At most one commit is in
//! flight; revocations, restores and stops wait for it.
//!
//! [`RuntimeSettings::pipelined_commit`]: crate::runtime::settings::RuntimeSettings::pipelined_commit

use super::{ChangelogLeft, Planned, Ports, RunError, Runtime, Sealed, Staged, Tally};
use crate::messages::OutputRecord;
use crate::ports::{Acked, TopicOffset};
use crate::processor::TimeMode;
use crate::runtime::settings::Guarantee;
use leadscore_store::writer::SealedWrite;
use leadscore_store::{Op, Partition, Replay, WriteBatch};
use std::collections::{BTreeMap, BTreeSet};

mod transaction;

impl Runtime<'_> {
    /// Publishes the steps (at least once: markers awaited in wall-clock
    /// mode, outputs sent; exactly once: sent in the commit's transaction)
    /// and stages their store writes.
    pub(super) fn publish(&mut self, ports: &mut Ports<'_>, steps: Vec<Planned>) -> Result<(), RunError> {
        let acked = match self.settings.guarantee {
            Guarantee::AtLeastOnce => {
                if self.settings.time_mode == TimeMode::WallClock {
                    self.send_replay_markers(ports, &steps)?;
                    for s in &steps {
                        // The step's checkpoint marker, last, is held.
                        let outputs = &s.step.outputs;
                        let n = outputs.len() - outputs.last().is_some_and(OutputRecord::is_checkpoint_marker) as usize;
                        ports.sink.send(&outputs[..n]).map_err(RunError::Sink)?;
                        self.held_markers.extend_from_slice(&outputs[n..]);
                    }
                } else {
                    for s in &steps {
                        ports.sink.send(&s.step.outputs).map_err(RunError::Sink)?;
                    }
                }
                None
            }
            Guarantee::ExactlyOnce => {
                // The commit's first batch opens its transaction.
                let begin = self.staged.is_none();
                let openers = self.openers(&steps);
                self.send_in_transaction(ports, &openers, &steps, begin)?;
                None
            }
        };
        if let Some(acked) = acked {
            self.note_acked(acked);
        }
        let sent = (ports.clock.now(), ports.clock.wall());
        let (metrics, since) = (&self.telemetry.metrics, ports.clock.elapsed());
        let staged = self.staged.get_or_insert_with(|| Staged {
            tally: Tally::new(metrics),
            verdict: None,
            since,
            opened: BTreeSet::new(),
        });
        if self.settings.guarantee == Guarantee::ExactlyOnce {
            staged.opened.extend(steps.iter().map(|s| s.partition));
        }
        for s in steps {
            let Planned { partition, mut step, .. } = s;
            self.pending.stage(std::mem::take(&mut step.write));
            // Counted now, in publishing order, and reported once committed.
            let verdict = self.breaker.add(step.messages, step.stats.dead_lettered);
            staged.verdict = staged.verdict.take().or(verdict);
            let observations = std::mem::take(&mut step.observations);
            staged.tally.add(step.messages, &step.stats, observations, sent.0, sent.1);
            if let Some(owned) = self.owned.get_mut(&partition) {
                let caught_up = |r: &Replay| {
                    r.until.iter().all(|(t, u)| step.checkpoint.next_offsets.get(t).copied().unwrap_or(0) >= *u)
                };
                if owned.replay.as_ref().is_some_and(caught_up) {
                    tracing::info!(partition, "replayed the step in flight at the last stop; timers run again");
                    owned.replay = None;
                }
                owned.counts = std::mem::take(&mut step.checkpoint.counts);
                owned.next_offsets = std::mem::take(&mut step.checkpoint.next_offsets);
            }
        }
        self.export_counts();
        Ok(())
    }

    /// Whether the staged work is due for its commit.
    pub(super) fn commit_due(&self, ports: &Ports<'_>) -> bool {
        let Some(since) = self.staged.as_ref().map(|s| s.since) else { return false };
        ports.clock.elapsed().saturating_sub(since) >= self.settings.commit_interval
            || self.pending.bytes() >= self.settings.staged_max_bytes
            // Between commits the cache may grow to twice its budget; each
            // commit trims it back.
            || self.cache.len() > 2 * self.cache_limit
    }

    /// How long the next poll may wait without delaying a due commit.
    pub(super) fn until_commit(&self, elapsed: std::time::Duration) -> Option<std::time::Duration> {
        let since = self.staged.as_ref()?.since;
        Some((since + self.settings.commit_interval).saturating_sub(elapsed))
    }

    /// Commits what is staged, if anything, and any sealed commit before
    /// it, waiting for their acknowledgements and store writes: before a
    /// revocation, a restore or a stop, nothing is left in flight. Stops with
    /// an error if the circuit breaker trips.
    pub(super) fn commit_staged(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        self.complete(ports, Wait::All)?;
        self.seal(ports)?;
        self.complete(ports, Wait::All)
    }

    /// Once per iteration: takes the sealed commit as far as it goes without
    /// waiting, and commits what is staged if it is due. The commit's store
    /// write goes to the writer's thread (if there is one) and the loop goes
    /// on; pipelined (see [`RuntimeSettings::pipelined_commit`]), so does the
    /// wait for its acknowledgements. It waits only for the commit before it,
    /// if that one is still in flight.
    ///
    /// [`RuntimeSettings::pipelined_commit`]: crate::runtime::settings::RuntimeSettings::pipelined_commit
    pub(super) fn commit_when_due(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        self.complete(ports, Wait::No)?;
        if !self.commit_due(ports) {
            return Ok(());
        }
        self.complete(ports, Wait::All)?;
        self.seal(ports)?;
        if self.settings.pipelined_commit() {
            return Ok(());
        }
        self.complete(ports, Wait::Acks)
    }

    /// Sets what is staged aside (still read below what is staged next).
    /// Exactly once, sends its changelog in the transaction, which then
    /// commits; at least once in event time, starts sending its changelog
    /// (in slices) and marks the end of everything sent for it.
    fn seal(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        if self.staged.is_none() {
            return Ok(());
        }
        let started = ports.clock.elapsed();
        if !self.held_markers.is_empty() {
            // Wall clock: the last batch's outputs first, then its markers,
            // which the commit awaits below.
            let acked = ports.sink.flush(self.settings.delivery_timeout).map_err(RunError::Sink)?;
            self.note_acked(acked);
            ports.sink.send(&std::mem::take(&mut self.held_markers)).map_err(RunError::Sink)?;
        }
        self.flush_cache();
        self.pending.seal();
        if self.settings.guarantee == Guarantee::ExactlyOnce {
            self.send_changelog_in_transaction(ports)?;
            let acked = self.commit_transaction(ports)?;
            self.note_acked(acked);
        }
        let Some(staged) = self.staged.take() else { return Ok(()) };
        let changelog = if self.settings.pipelined_commit() {
            let ops = self.pending.sealed_changelog();
            let slice = self.settings.changelog_slice_min.max(1).max(ops.len().div_ceil(CHANGELOG_SLICES));
            let epochs = self.owned.iter().map(|(p, o)| (*p, o.epoch)).collect();
            ChangelogLeft { ops, epochs, slice, markers: Vec::new() }
        } else {
            ChangelogLeft::default()
        };
        self.sealed = Some(Sealed { mark: None, changelog, staged, started, writing: None });
        self.send_changelog(ports, false)?;
        self.time.commit += ports.clock.elapsed().saturating_sub(started);
        Ok(())
    }

    /// Stages the cached states changed since the last commit, after the
    /// steps' own writes (their timers and checkpoints), and trims the cache
    /// to its budget. With a changelog per step the steps staged their
    /// states themselves, and this only trims.
    fn flush_cache(&mut self) {
        let mut batch = WriteBatch::default();
        let budget = self.settings.staged_max_bytes;
        let (kept, bytes) = self.cache.flush(self.processor.model, &mut batch, budget);
        if !batch.is_empty() {
            self.pending.stage(batch);
        }
        let mean = if kept > 0 { bytes.div_ceil(kept).max(1) } else { super::ASSUMED_STATE_BYTES };
        self.cache_limit = budget / mean;
        let m = &self.telemetry.metrics;
        m.cached_states.set(kept as i64);
        m.cached_state_bytes.set(bytes as i64);
    }

    /// Sends the sealed commit's next slice of changelog records (all that
    /// are left if `all`), and marks the sink after the last: a changelog
    /// sent in one go stalled the loop for tens of milliseconds per commit
    /// (about 5,700 records at 30k events/s), delaying every event that
    /// arrived meanwhile. Whether it is all sent.
    fn send_changelog(&mut self, ports: &mut Ports<'_>, all: bool) -> Result<bool, RunError> {
        let Some(sealed) = self.sealed.as_mut() else { return Ok(true) };
        if sealed.mark.is_some() {
            return Ok(true);
        }
        let c = &mut sealed.changelog;
        let n = if all { c.ops.len() } else { c.slice.min(c.ops.len()) };
        if n > 0 {
            let epochs = &c.epochs;
            let records = changelog_records(c.ops.by_ref().take(n), |p| epochs.get(&p).copied().flatten());
            let (markers, states): (Vec<_>, Vec<_>) = records.into_iter().partition(OutputRecord::is_checkpoint_marker);
            ports.sink.send(&states).map_err(RunError::Sink)?;
            c.markers.extend(markers);
        }
        if c.ops.len() > 0 {
            return Ok(false);
        }
        sealed.mark = Some(ports.sink.mark());
        Ok(true)
    }

    /// Takes the sealed commit, if there is one, as far as `wait` says: once
    /// (at least once) its outputs are all acknowledged, hands its states,
    /// timers and checkpoints to the store writer (one batch, written off the
    /// loop's thread), and once that is written, records the input offsets in
    /// the group.
    fn complete(&mut self, ports: &mut Ports<'_>, wait: Wait) -> Result<(), RunError> {
        let Some(sealed) = &self.sealed else { return Ok(()) };
        let started = ports.clock.elapsed();
        if sealed.writing.is_none() {
            if self.settings.guarantee == Guarantee::AtLeastOnce {
                let sent = self.send_changelog(ports, wait != Wait::No)?;
                let Some(mark) = self.sealed.as_ref().and_then(|s| s.mark).filter(|_| sent) else {
                    self.time.commit += ports.clock.elapsed().saturating_sub(started);
                    return Ok(());
                };
                let timeout = self.settings.delivery_timeout;
                let acks = wait != Wait::No;
                match ports.sink.delivered(mark, acks, timeout).map_err(RunError::Sink)? {
                    Some(acked) => self.note_acked(acked),
                    None => return Ok(()),
                }
                // Everything before the checkpoint markers is delivered:
                // now they go, and the commit waits for them in turn.
                if let Some(s) = self.sealed.as_mut().filter(|s| !s.changelog.markers.is_empty()) {
                    ports.sink.send(&std::mem::take(&mut s.changelog.markers)).map_err(RunError::Sink)?;
                    s.mark = Some(ports.sink.mark());
                    return self.complete(ports, wait);
                }
            }
            let changelog_next = std::mem::take(&mut self.acked).into_iter().map(|(p, o)| (p, o + 1)).collect();
            let write = SealedWrite { layer: self.pending.sealed_layer(), changelog_next };
            let checkpoints = write.layer.checkpoints().filter(|(p, _)| !self.revoking.contains(p));
            let offsets = offsets_of(checkpoints.map(|(p, c)| (p, &c.next_offsets)));
            // A restore's chunk may still be being written.
            ports.writer.finished(true)?;
            ports.writer.start(write)?;
            if let Some(s) = self.sealed.as_mut() {
                s.writing = Some(offsets);
            }
        }
        let Some(written) = ports.writer.finished(wait == Wait::All)? else {
            self.time.commit += ports.clock.elapsed().saturating_sub(started);
            return Ok(());
        };
        let Some(Sealed { staged, started: sealed_at, writing, .. }) = self.sealed.take() else { return Ok(()) };
        ports.writer.dispose(self.pending.forget_sealed());
        let m = &self.telemetry.metrics;
        let done = ports.clock.elapsed();
        m.store_write_duration.observe(written.as_secs_f64());
        m.commit_duration.observe(done.saturating_sub(sealed_at).as_secs_f64());
        if self.settings.guarantee == Guarantee::AtLeastOnce {
            if let Err(e) = ports.source.commit(&writing.unwrap_or_default()) {
                tracing::warn!(error = %e, "offset commit failed; the store checkpoint stays authoritative");
            }
        }
        let Staged { tally, verdict, .. } = staged;
        self.dead_letters.add(tally.dead_letters(), done);
        self.telemetry.report(tally);
        self.time.commit += ports.clock.elapsed().saturating_sub(started);
        if let Some(why) = verdict {
            // After the commit: the bad messages are in the dead-letter topic.
            tracing::error!(reason = %why, "stopping: too much bad input");
            return Err(RunError::TooManyDeadLetters(why));
        }
        Ok(())
    }

    /// Keeps the changelog offsets of delivered checkpoint markers until the
    /// commit that writes their checkpoints.
    fn note_acked(&mut self, acked: Acked) {
        for (partition, offset) in acked.markers {
            let at = self.acked.entry(partition).or_insert(offset);
            *at = (*at).max(offset);
        }
    }

    /// At least once, wall clock: sends the checkpoint markers held since
    /// the last batch once everything sent before them is acknowledged, then
    /// this batch's replay markers, and waits for those (and only those:
    /// its outputs may go out only once they are durable). In a changelog
    /// partition each step's replay marker comes after the checkpoint marker
    /// of the step before, so that a restore replays one step at most.
    fn send_replay_markers(&mut self, ports: &mut Ports<'_>, steps: &[Planned]) -> Result<(), RunError> {
        let timeout = self.settings.delivery_timeout;
        let mut markers = std::mem::take(&mut self.held_markers);
        if !markers.is_empty() {
            let acked = ports.sink.flush(timeout).map_err(RunError::Sink)?;
            self.note_acked(acked);
        }
        markers.extend(self.replay_markers(steps));
        let acked = ports.sink.send_awaited(&markers, timeout).map_err(RunError::Sink)?;
        self.note_acked(acked);
        Ok(())
    }

    /// At least once, wall clock: how each step must be replayed (its tick,
    /// and the inputs it covers, or that a replay under way still has to).
    fn replay_markers(&self, steps: &[Planned]) -> Vec<OutputRecord> {
        steps
            .iter()
            .map(|s| {
                let mut until = s.step.checkpoint.next_offsets.clone();
                if let Some(r) = self.owned.get(&s.partition).and_then(|o| o.replay.as_ref()) {
                    for (topic, offset) in &r.until {
                        let at = until.entry(topic.clone()).or_insert(*offset);
                        *at = (*at).max(*offset);
                    }
                }
                let epoch = self.owned.get(&s.partition).and_then(|o| o.epoch);
                OutputRecord::replay_marker(s.partition, &Replay { tick: s.tick, until }).with_epoch(epoch)
            })
            .collect()
    }
}

/// How far [`Runtime::complete`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    /// For the acknowledgements, not the store write.
    Acks,
    All,
}

/// Input offsets of partitions, as the group records them.
fn offsets_of<'o>(
    partitions: impl Iterator<Item = (leadscore_store::Partition, &'o BTreeMap<String, i64>)>,
) -> Vec<TopicOffset> {
    partitions
        .flat_map(|(partition, offsets)| {
            offsets.iter().map(move |(topic, next)| TopicOffset { topic: topic.clone(), partition, next: *next })
        })
        .collect()
}

/// A sealed commit's changelog is sent in at most this many slices, one per
/// iteration of the loop, so that even at full load (about ten iterations per
/// second) it is all sent well within a commit interval; no slice is smaller
/// than `RuntimeSettings::changelog_slice_min`, so that a small commit (most
/// of them, at low load) is sent and marked within its seal.
const CHANGELOG_SLICES: usize = 8;

/// The changelog records of a commit, each changed
/// lead's latest state (a tombstone for an erased one), then each
/// partition's checkpoint marker, after its states; `epoch` is a
/// partition's ownership epoch.
fn changelog_records(ops: impl Iterator<Item = Op>, epoch: impl Fn(Partition) -> Option<i64>) -> Vec<OutputRecord> {
    let mut records = Vec::with_capacity(ops.size_hint().0);
    for op in ops {
        records.push(match op {
            Op::PutState { partition, lead, value } => {
                OutputRecord::changelog_state(partition, lead.as_str(), Some(value), epoch(partition))
            }
            Op::DeleteState { partition, lead } => {
                OutputRecord::changelog_state(partition, lead.as_str(), None, epoch(partition))
            }
            Op::MoveTimer { .. } => continue,
            Op::Checkpoint { partition, checkpoint } => {
                OutputRecord::changelog_marker(partition, &checkpoint, epoch(partition))
            }
        });
    }
    records
}
