//! Restoring a newly owned partition's state from the changelog topic before
//! any of its input is processed, a bounded amount of work per loop iteration
//! so that the instance keeps polling its group while it restores.
//!
//! The changelog has one partition per input partition; each step publishes
//! the full state of every lead it changed (a tombstone for an erased lead)
//! and closes with a checkpoint marker (empty key, the step's checkpoint). A
//! restore applies records up to the last marker: what follows it belongs to a
//! step whose commit did not happen, which the new owner replays from the
//! inputs. Compaction keeps only the latest marker, so a full restore may read
//! millions of records before it; they are written in chunks as they come, but
//! only up to the last marker. Where that is comes from a probe of the
//! partition's end, made only once a chunk of records is pending with no
//! marker read since: a changelog that is not compacted has a marker per
//! commit and is read once, from the start (a probe up front read the last
//! four batches' worth twice, a fifth of a partition in `leadscore bench`).
//! Without compaction a lead has a record per commit that changed it: what the
//! markers commit is gathered by lead and written once per chunk (with the
//! newest marker's checkpoint) and at the end, not at every marker.
//!
//! Records and markers carry the writer's ownership epoch; one older than an
//! epoch already read was written by a former owner after a newer one took
//! over, and is ignored. State records after the last checkpoint marker were
//! written by a step that did not commit (at least once: a crash or a failed
//! delivery); the restore reports their leads, and before consuming, the
//! runtime publishes those leads' restored states again with a marker, so
//! that no later restore mistakes them for part of the next committed step. A replay marker after the last checkpoint marker
//! (at least once, wall clock) says how the unfinished step must be replayed;
//! it is kept in the restored checkpoint for the runtime to honour. An opener
//! (exactly once: the first record of a transaction on the partition, whose
//! states and marker come at its commit) makes the restore read the end
//! again once it reaches it: the commit may have come after the end was read.
//!
//! Local state is kept when the partition was checkpointed here before, and
//! only the changelog written since is read, unless that is older than
//! `local_state_max_age` (compaction may have dropped tombstones from it) or
//! was deleted by retention: then the local partition is dropped and restored
//! from the start.

use super::settings::RuntimeSettings;
use super::RunError;
use crate::messages::ChangelogKind;
use crate::ports::{Changelog, ChangelogRecord, Clock};
use leadscore_core::{LeadId, Millis};
use leadscore_store::writer::StoreWriter;
use leadscore_store::{Checkpoint, Partition, Replay, StateStore};
use leadscore_telemetry::Telemetry;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Records asked for per read of the changelog.
const READ: usize = 1000;

/// What a restore needs from the runtime.
pub(crate) struct RestoreEnv<'a> {
    pub changelog: &'a mut dyn Changelog,
    pub store: &'a dyn StateStore,
    /// Writes the restore's chunks while it reads on. The restore waits for
    /// a chunk before it reads the states the next one replaces, and for the
    /// last before it reports the partition restored (`finish`); the
    /// runtime waits before a commit's write and at a revocation (`cancel`).
    pub writer: &'a mut dyn StoreWriter,
    pub clock: &'a dyn Clock,
    pub telemetry: &'a Telemetry,
    pub settings: &'a RuntimeSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet.
    Plan,
    /// Reading the partition's last `window` records (from `resume` at the
    /// earliest) to find the last marker, then reading on from `resume` with
    /// the newest epoch back at `epoch`.
    Probe {
        window: i64,
        resume: i64,
        epoch: Option<i64>,
    },
    /// Reading from `from`, applying up to `last_marker`.
    Apply,
    Done,
}

/// One partition's restore; see the module docs.
#[derive(Debug)]
pub(crate) struct RestoreTask {
    pub partition: Partition,
    phase: Phase,
    /// The local checkpoint's state is kept and only the tail is read.
    kept_local: bool,
    from: i64,
    high: i64,
    /// Offset of the last marker, once probed (and found).
    last_marker: Option<i64>,
    /// Whether the partition's end was probed (at most once).
    probed: bool,
    /// Offset of an opener read since the last applied marker: its
    /// transaction committed, and its states and marker follow, maybe past
    /// the end read at the plan (see `end_of_read`).
    opened: Option<i64>,
    /// Next offset to read.
    at: i64,
    /// Records since the last applied marker, by lead.
    pending: HashMap<LeadId, Option<Vec<u8>>>,
    /// Records up to the last applied marker not written yet, by lead, and
    /// that marker's checkpoint: written once `committed` holds a chunk and at
    /// the end, not at every marker, so that a lead the changelog has once
    /// per commit is written once per chunk.
    committed: HashMap<LeadId, Option<Vec<u8>>>,
    checkpoint: Option<Checkpoint>,
    /// The replay marker read since the last applied checkpoint marker.
    replay: Option<Replay>,
    /// Leads with state records after the last applied checkpoint marker,
    /// once done: those in `pending` and in `rejected`.
    in_doubt: BTreeSet<LeadId>,
    /// Leads with state records of an older epoch after the last applied
    /// checkpoint marker (not applied, but in doubt all the same).
    rejected: BTreeSet<LeadId>,
    /// Whether the store holds a checkpoint of the partition (the local one
    /// kept, or one this restore wrote).
    checkpointed: bool,
    /// Whether this restore has written the partition. Unless local state was
    /// kept, the partition was empty before, so a write need not read the
    /// states it replaces (to move their timers) until then.
    written: bool,
    /// The newest ownership epoch read so far (records of older ones are
    /// ignored).
    highest_epoch: Option<i64>,
    /// When the read last moved.
    last_progress: Duration,
    started: Duration,
    pub records: u64,
    checked_age: bool,
    /// Counted in the restoring-partitions gauge.
    counted: bool,
}

/// What reading one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Continue,
    /// The restore started over from another offset.
    Restarted,
}

/// A changelog key as a lead id (without a copy when it is UTF-8, as leadscore
/// writes it).
fn lead_of(key: Vec<u8>) -> LeadId {
    LeadId::from(String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Leads buffered before an early write (bounds memory on a full restore).
fn chunk(settings: &RuntimeSettings) -> usize {
    settings.restore_chunk.max(1)
}

fn probe_window(settings: &RuntimeSettings) -> i64 {
    4 * (settings.max_batch as i64 + 1)
}

impl RestoreTask {
    pub(crate) fn new(partition: Partition, now: Duration) -> RestoreTask {
        RestoreTask {
            partition,
            phase: Phase::Plan,
            kept_local: false,
            from: 0,
            high: 0,
            last_marker: None,
            probed: false,
            opened: None,
            at: 0,
            pending: HashMap::new(),
            committed: HashMap::new(),
            checkpoint: None,
            replay: None,
            in_doubt: BTreeSet::new(),
            rejected: BTreeSet::new(),
            checkpointed: false,
            written: false,
            highest_epoch: None,
            last_progress: now,
            started: now,
            records: 0,
            checked_age: false,
            counted: false,
        }
    }

    /// Leads whose latest changelog records belong to a step that did not
    /// commit (see the module docs).
    pub(crate) fn in_doubt(&self) -> &BTreeSet<LeadId> {
        &self.in_doubt
    }

    /// The highest ownership epoch this restore has seen (local checkpoint
    /// included): the next owner takes the one after it.
    pub(crate) fn highest_epoch(&self) -> Option<i64> {
        self.highest_epoch
    }

    /// Does up to `budget` records of work, until `deadline` on the runtime's
    /// monotonic clock at the latest; `true` once done. The store write it
    /// started last may still be under way: wait for `env.writer` before
    /// anything else writes or reads the partition.
    pub(crate) fn step(
        &mut self,
        env: &mut RestoreEnv<'_>,
        budget: usize,
        deadline: Duration,
    ) -> Result<bool, RunError> {
        if self.phase == Phase::Plan {
            self.plan(env)?;
        }
        let mut records = Vec::new();
        let mut done = 0;
        while done < budget && !matches!(self.phase, Phase::Done) && env.clock.elapsed() < deadline {
            if self.at >= self.end() {
                self.end_of_read(env)?;
                continue;
            }
            records.clear();
            // Small reads, so that the deadline is looked at often.
            let max = (budget - done).min(READ);
            env.changelog.read(Duration::from_millis(20), max, &mut records).map_err(RunError::Changelog)?;
            let position = env.changelog.position().unwrap_or(self.at);
            if records.is_empty() && position <= self.at {
                let stalled = env.clock.elapsed().saturating_sub(self.last_progress);
                if stalled > env.settings.restore_stall_timeout {
                    return Err(RunError::RestoreStalled {
                        partition: self.partition,
                        at: self.at,
                        high: self.high,
                        seconds: stalled.as_secs(),
                    });
                }
                // Nothing yet: let the loop poll its group, come back later.
                return Ok(false);
            }
            self.last_progress = env.clock.elapsed();
            let mut restarted = false;
            for r in records.drain(..) {
                done += 1;
                if r.offset < self.at {
                    continue;
                }
                self.at = r.offset + 1;
                if self.record(env, r)? == Read::Restarted {
                    restarted = true;
                    break;
                }
                if self.at >= self.end() {
                    break;
                }
            }
            if !restarted {
                // Control records and aborted transactions take offsets but are
                // never delivered: the reader's position says how far it got.
                self.at = self.at.max(position.min(self.end()));
            }
            env.telemetry.metrics.restore_remaining.set(self.high.saturating_sub(self.at));
        }
        Ok(self.phase == Phase::Done)
    }

    /// Where the current read stops: the partition's end (past the last
    /// marker, a replay marker may follow).
    fn end(&self) -> i64 {
        self.high
    }

    /// Decides where to read from, dropping local state that cannot be kept.
    fn plan(&mut self, env: &mut RestoreEnv<'_>) -> Result<(), RunError> {
        let p = self.partition;
        let local = env.store.checkpoint(p)?;
        let (low, high) = env.changelog.watermarks(p).map_err(RunError::Changelog)?;
        self.high = high;
        self.highest_epoch = local.as_ref().and_then(|c| c.epoch);
        let from =
            match local.as_ref().map(|c| c.changelog_next_offset) {
                Some(Some(next)) if next > high => {
                    // Dropping local state here could lose everything if the topic was
                    // recreated empty: keep it, say so, and let new markers follow.
                    tracing::error!(
                    partition = p, local = next, high,
                    "the changelog ends before the local state: was the changelog topic recreated? keeping local state"
                );
                    self.phase = Phase::Done;
                    return Ok(());
                }
                Some(Some(next)) if next >= low => {
                    self.kept_local = true;
                    self.checkpointed = true;
                    next
                }
                Some(Some(next)) => {
                    tracing::warn!(
                    partition = p, local = next, low,
                    "changelog records after the local checkpoint were deleted by retention; restoring from the start"
                );
                    self.drop_local(env)?;
                    low
                }
                // Local leftovers without a usable checkpoint: start clean.
                Some(None) | None => {
                    self.drop_local(env)?;
                    low
                }
            };
        self.start_from(env, from)
    }

    fn drop_local(&mut self, env: &mut RestoreEnv<'_>) -> Result<(), RunError> {
        env.writer.finished(true)?;
        env.store.drop_partition(self.partition)?;
        self.kept_local = false;
        self.checkpointed = false;
        self.written = false;
        self.highest_epoch = None;
        Ok(())
    }

    fn start_from(&mut self, env: &mut RestoreEnv<'_>, from: i64) -> Result<(), RunError> {
        self.from = from;
        self.pending.clear();
        self.committed.clear();
        self.checkpoint = None;
        self.replay = None;
        self.in_doubt.clear();
        self.rejected.clear();
        self.last_marker = None;
        self.probed = false;
        self.opened = None;
        if from >= self.high {
            self.phase = Phase::Done;
            return Ok(());
        }
        if !self.counted {
            self.counted = true;
            env.telemetry.metrics.restoring_partitions.inc();
        }
        tracing::debug!(partition = self.partition, from, to = self.high, "restoring state from the changelog");
        self.phase = Phase::Apply;
        self.at = from;
        env.changelog.start(self.partition, from).map_err(RunError::Changelog)
    }

    /// Reads the partition's last `window` records, but none before
    /// `resume`, for the last marker; the read goes on at `resume` after.
    fn probe(
        &mut self,
        env: &mut RestoreEnv<'_>,
        resume: i64,
        epoch: Option<i64>,
        window: i64,
    ) -> Result<(), RunError> {
        self.probed = true;
        self.phase = Phase::Probe { window, resume, epoch };
        self.at = resume.max(self.high.saturating_sub(window));
        env.changelog.start(self.partition, self.at).map_err(RunError::Changelog)
    }

    /// Handles one record.
    fn record(&mut self, env: &mut RestoreEnv<'_>, r: ChangelogRecord) -> Result<Read, RunError> {
        if let Phase::Probe { .. } = self.phase {
            if r.kind == ChangelogKind::Checkpoint && self.accepts(r.epoch) {
                self.last_marker = Some(r.offset);
            }
            return Ok(Read::Continue);
        }
        if self.kept_local && !self.checked_age {
            self.checked_age = true;
            let age = r.timestamp.map(|t| env.clock.wall().saturating_sub(t)).unwrap_or(0);
            if age > env.settings.local_state_max_age.as_millis() as Millis {
                tracing::warn!(
                    partition = self.partition,
                    age_seconds = age / 1000,
                    "the changelog written since the local checkpoint is old enough for compaction to have dropped \
                     tombstones from it; restoring the partition from the start"
                );
                self.drop_local(env)?;
                let (low, _) = env.changelog.watermarks(self.partition).map_err(RunError::Changelog)?;
                self.start_from(env, low)?;
                return Ok(Read::Restarted);
            }
        }
        self.records += 1;
        env.telemetry.metrics.restore_records.inc();
        if !self.accepts(r.epoch) {
            if r.kind == ChangelogKind::State {
                self.rejected.insert(lead_of(r.key));
            }
            return Ok(Read::Continue);
        }
        match r.kind {
            ChangelogKind::Checkpoint => {
                let mut checkpoint = Checkpoint::decode(r.value.as_deref().unwrap_or_default()).map_err(|e| {
                    leadscore_store::StoreError(format!(
                        "checkpoint marker of changelog partition {} at offset {}: {e}",
                        self.partition, r.offset
                    ))
                })?;
                checkpoint.changelog_next_offset = Some(r.offset + 1);
                // A replay still under way when it was written stays recorded.
                self.replay = checkpoint.replay.clone();
                self.rejected.clear();
                self.opened = None;
                self.committed.extend(self.pending.drain());
                self.checkpoint = Some(checkpoint);
                if self.committed.len() >= chunk(env.settings) {
                    let checkpoint = self.checkpoint.take();
                    self.write(env, checkpoint)?;
                }
            }
            ChangelogKind::Replay => match Replay::decode(r.value.as_deref().unwrap_or_default()) {
                Ok(replay) => self.replay = Some(replay),
                Err(e) => tracing::warn!(offset = r.offset, error = %e, "unreadable replay marker; ignored"),
            },
            ChangelogKind::Open => self.opened = Some(r.offset),
            ChangelogKind::Unknown => {
                tracing::warn!(offset = r.offset, "changelog record that is neither a state nor a marker; ignored")
            }
            ChangelogKind::State => {
                self.pending.insert(lead_of(r.key), r.value);
                if self.pending.len() < chunk(env.settings) {
                    return Ok(Read::Continue);
                }
                match self.last_marker {
                    // Early writes only before a marker known to follow;
                    // with what earlier markers committed (older states of
                    // the same leads), and without a checkpoint: a crash
                    // before the marker's own write restores from the last
                    // one written.
                    Some(m) if r.offset < m => {
                        self.committed.extend(self.pending.drain());
                        self.write(env, None)?;
                    }
                    // Unless what is left fits the window anyway: it is
                    // then read once, applying as it goes.
                    None if !self.probed && self.high - probe_window(env.settings) > self.at => {
                        // Epochs seen so far stay; the probe's own reading
                        // of them is undone when the read goes on here.
                        let epoch = self.highest_epoch;
                        self.probe(env, self.at, epoch, probe_window(env.settings))?;
                        return Ok(Read::Restarted);
                    }
                    _ => {}
                }
            }
        }
        Ok(Read::Continue)
    }

    /// Whether a record of `epoch` is from the current owner or a newer one
    /// (remembering the newest seen).
    fn accepts(&mut self, epoch: Option<i64>) -> bool {
        match (epoch, self.highest_epoch) {
            (Some(e), Some(h)) if e < h => false,
            (Some(e), _) => {
                self.highest_epoch = Some(e);
                true
            }
            (None, _) => true,
        }
    }
}

mod finish;
mod write;

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
