//! The restore against an in-memory changelog: what it applies, what it
//! leaves for the replay, and whose records it trusts.

use super::*;
use crate::messages::{OPEN_KEY, REPLAY_KEY};
use crate::ports::{FixedClock, PortError};
use leadscore_core::engine::apply;
use leadscore_core::{Event, Kind, LeadState, Outputs};
use leadscore_store::memory::MemoryStore;
use leadscore_store::writer::InlineWriter;
use leadscore_store::{encode_state, peek_next_due, WriteBatch};

/// A changelog partition in memory.
#[derive(Default)]
struct Log {
    records: Vec<ChangelogRecord>,
    at: Option<i64>,
    /// Reads started (each a seek, a round trip on a broker).
    starts: usize,
    /// Ends to answer first (a transaction's records sent after one was
    /// read), before the partition's whole length.
    ends: Vec<i64>,
}

impl Changelog for Log {
    fn watermarks(&mut self, _: Partition) -> Result<(i64, i64), PortError> {
        let end = if self.ends.is_empty() { self.records.len() as i64 } else { self.ends.remove(0) };
        Ok((0, end))
    }
    fn start(&mut self, _: Partition, from: i64) -> Result<(), PortError> {
        self.at = Some(from);
        self.starts += 1;
        Ok(())
    }
    fn read(&mut self, _: Duration, max: usize, out: &mut Vec<ChangelogRecord>) -> Result<(), PortError> {
        let Some(at) = self.at else { return Ok(()) };
        let end = (at as usize + max).min(self.records.len());
        out.extend(self.records[at as usize..end].iter().cloned());
        self.at = Some(end as i64);
        Ok(())
    }
    fn position(&mut self) -> Option<i64> {
        self.at
    }
    fn stop(&mut self) {
        self.at = None;
    }
}

/// Lands a restore's batch only when asked whether it has finished, as the
/// store writer's thread may: a restore that read the store before waiting
/// for its previous chunk would see the states before it.
struct Deferred<'s> {
    store: &'s MemoryStore,
    pending: Option<WriteBatch>,
}

impl StoreWriter for Deferred<'_> {
    fn start(&mut self, _: leadscore_store::writer::SealedWrite) -> Result<(), leadscore_store::StoreError> {
        unreachable!("a restore writes batches")
    }
    fn start_batch(&mut self, batch: WriteBatch) -> Result<(), leadscore_store::StoreError> {
        assert!(self.pending.is_none(), "a batch started before the previous one finished");
        self.pending = Some(batch);
        Ok(())
    }
    fn finished(&mut self, _: bool) -> Result<Option<Duration>, leadscore_store::StoreError> {
        if let Some(batch) = self.pending.take() {
            self.store.write(&batch)?;
        }
        Ok(Some(Duration::ZERO))
    }
}

fn state(lead: &str, at: i64) -> Vec<u8> {
    thread_local!(static MODEL: leadscore_core::Model = leadscore_config::seed_model());
    let model = MODEL.with(Clone::clone);
    let mut s: Option<LeadState> = None;
    let event = Event::new(format!("e-{lead}-{at}").as_str(), lead, Kind::PageView, at);
    apply(&model, &mut s, &event, &mut Outputs::default());
    let mut bytes = Vec::new();
    encode_state(&s.expect("a lead"), &model, &mut bytes);
    bytes
}

fn record(offset: i64, key: &[u8], value: Option<Vec<u8>>, kind: ChangelogKind, epoch: i64) -> ChangelogRecord {
    ChangelogRecord { offset, key: key.to_vec(), value, timestamp: Some(0), kind, epoch: Some(epoch) }
}

/// Builds a changelog from (lead or "" for a marker, next offset or state time, epoch).
fn log(entries: &[(&str, i64, i64)]) -> Log {
    let records = entries
        .iter()
        .enumerate()
        .map(|(o, &(key, n, epoch))| {
            let o = o as i64;
            match key {
                "" => {
                    let c = Checkpoint { next_offsets: [("t".to_string(), n)].into(), ..Checkpoint::default() };
                    record(o, b"", Some(c.encode()), ChangelogKind::Checkpoint, epoch)
                }
                "-" => record(o, b"L-gone", None, ChangelogKind::State, epoch),
                lead => record(o, lead.as_bytes(), Some(state(lead, n)), ChangelogKind::State, epoch),
            }
        })
        .collect();
    Log { records, ..Log::default() }
}

/// Restores partition 0 of `log` into `store`; the finished task.
fn restore(log: &mut Log, store: &MemoryStore) -> RestoreTask {
    // Tiny budgets for short logs: a restore resumes across many steps;
    // long ones in one step, their chunks written while it reads on.
    let budget = if log.records.len() < 100 { 2 } else { usize::MAX };
    restore_by(log, store, &Telemetry::default(), budget, || {})
}

/// Restores partition 0 of `log` into `store`, `budget` records a step,
/// calling `between` after every step that did not finish; the finished task.
fn restore_by(
    log: &mut Log,
    store: &MemoryStore,
    telemetry: &Telemetry,
    budget: usize,
    mut between: impl FnMut(),
) -> RestoreTask {
    let settings = RuntimeSettings::default();
    let clock = FixedClock::at(0);
    let mut writer = Deferred { store, pending: None };
    let mut env =
        RestoreEnv { changelog: log, store, writer: &mut writer, clock: &clock, telemetry, settings: &settings };
    let mut task = RestoreTask::new(0, Duration::ZERO);
    // A chunk still being written after a step lands before `between`
    // looks (in the runtime, whenever the next write, the end, a commit or
    // a revocation waits for it).
    while !task.step(&mut env, budget, Duration::MAX).expect("restore") {
        env.writer.finished(true).expect("written");
        between();
    }
    assert!(env.writer.finished(true).expect("written").is_some());
    task
}

fn next(store: &MemoryStore) -> Option<i64> {
    store.checkpoint(0).expect("read").and_then(|c| c.next_offsets.get("t").copied())
}

#[test]
fn applies_up_to_the_last_marker_and_reports_the_leads_written_after_it() {
    let mut log =
        log(&[("L-a", 1, 1), ("L-b", 1, 1), ("", 10, 1), ("L-a", 2, 1), ("-", 0, 1), ("", 20, 1), ("L-c", 3, 1)]);
    let store = MemoryStore::new();
    store
        .write(&{
            let mut b = WriteBatch::default();
            b.put_state(0, LeadId::from("L-gone"), state("L-gone", 0));
            b
        })
        .expect("write");
    let task = restore(&mut log, &store);
    let states = store.get_states(0, &["L-a", "L-gone", "L-c"]).expect("states");
    assert_eq!(states, vec![Some(state("L-a", 2)), None, None], "a's latest, the tombstone applied, c not committed");
    assert_eq!(next(&store), Some(20));
    assert_eq!(store.checkpoint(0).expect("read").and_then(|c| c.changelog_next_offset), Some(6));
    assert_eq!(task.in_doubt().iter().map(LeadId::as_str).collect::<Vec<_>>(), ["L-c"]);
}

#[test]
fn what_an_older_owner_wrote_after_a_newer_one_is_ignored() {
    // Epoch 1 owns, epoch 2 takes over, then epoch 1 (a zombie) writes late.
    let mut log = log(&[("L-a", 1, 1), ("", 10, 1), ("L-b", 2, 2), ("", 20, 2), ("L-c", 3, 1), ("", 30, 1)]);
    let store = MemoryStore::new();
    let task = restore(&mut log, &store);
    assert_eq!(next(&store), Some(20), "the zombie's marker does not move the checkpoint");
    assert_eq!(store.get_states(0, &["L-c"]).expect("states"), vec![None]);
    assert_eq!(task.highest_epoch(), Some(2));
    assert_eq!(task.in_doubt().iter().map(LeadId::as_str).collect::<Vec<_>>(), ["L-c"], "not applied, still in doubt");
}

#[test]
fn a_replay_marker_after_the_last_checkpoint_is_kept_for_the_runtime() {
    let mut log = log(&[("L-a", 1, 1), ("", 10, 1)]);
    let replay = Replay { tick: Some(5), until: [("t".to_string(), 12)].into() };
    log.records.push(record(2, REPLAY_KEY, Some(replay.encode()), ChangelogKind::Replay, 1));
    let store = MemoryStore::new();
    restore(&mut log, &store);
    assert_eq!(store.checkpoint(0).expect("read").and_then(|c| c.replay), Some(replay));
    // A replay marker before the last checkpoint marker was for a step since committed.
    log.records.push(log_marker(3, 12));
    let store = MemoryStore::new();
    restore(&mut log, &store);
    assert_eq!(store.checkpoint(0).expect("read").and_then(|c| c.replay), None);
}

#[test]
fn an_opener_makes_the_restore_read_on_to_its_transactions_marker() {
    // Exactly once: when the end was read, the old owner's transaction had
    // only its opener there; its state and marker came with its commit, and
    // the reader reads past the old end in the same read.
    let mut log = log(&[("L-a", 1, 1), ("", 10, 1)]);
    log.records.push(record(2, OPEN_KEY, None, ChangelogKind::Open, 2));
    log.records.push(record(3, b"L-b", Some(state("L-b", 2)), ChangelogKind::State, 2));
    log.records.push(ChangelogRecord { epoch: Some(2), ..log_marker(4, 20) });
    log.ends = vec![3];
    let store = MemoryStore::new();
    let task = restore(&mut log, &store);
    assert_eq!(next(&store), Some(20), "the transaction's marker is applied");
    assert_eq!(store.get_states(0, &["L-b"]).expect("states"), vec![Some(state("L-b", 2))]);
    assert!(task.in_doubt().is_empty());
}

fn log_marker(offset: i64, next: i64) -> ChangelogRecord {
    let c = Checkpoint { next_offsets: [("t".to_string(), next)].into(), ..Checkpoint::default() };
    record(offset, b"", Some(c.encode()), ChangelogKind::Checkpoint, 1)
}

#[test]
fn a_long_tail_without_a_marker_is_never_written_early() {
    // More state records after the last marker than an early write takes.
    let mut log = log(&[("L-a", 1, 1), ("", 10, 1)]);
    let value = state("L-x", 2);
    for i in 0..chunk(&RuntimeSettings::default()) + 5 {
        let o = log.records.len() as i64;
        log.records.push(record(o, format!("L-{i}").as_bytes(), Some(value.clone()), ChangelogKind::State, 1));
    }
    let store = MemoryStore::new();
    restore(&mut log, &store);
    assert_eq!(store.lead_count(), 1, "only the committed lead");
    assert_eq!(next(&store), Some(10));
}

#[test]
fn a_finished_restore_is_timed_and_its_records_counted() {
    let mut log = log(&[("L-a", 1, 1), ("L-b", 1, 1), ("", 10, 1)]);
    let store = MemoryStore::new();
    let telemetry = Telemetry::default();
    let metrics = &telemetry.metrics;
    let mut task = restore_by(&mut log, &store, &telemetry, 1, || {
        assert_eq!(metrics.restore_duration.get_sample_count(), 0, "timed once, when done");
    });
    assert_eq!(metrics.restore_duration.get_sample_count(), 1);
    assert!(metrics.restore_duration.get_sample_sum() > 0.0, "the time since the task began");
    assert_eq!(metrics.restore_records.get(), 3);
    let (settings, clock) = (RuntimeSettings::default(), FixedClock::at(0));
    let mut writer = InlineWriter { store: &store };
    let mut env = RestoreEnv {
        changelog: &mut log,
        store: &store,
        writer: &mut writer,
        clock: &clock,
        telemetry: &telemetry,
        settings: &settings,
    };
    task.cancel(&mut env);
    assert_eq!(metrics.restore_duration.get_sample_count(), 1, "a cancel is not a restore");
}

#[test]
fn committed_states_are_written_once_per_chunk_not_at_every_marker() {
    // Three commits of the same two leads, then an uncommitted tail.
    let mut log = log(&[
        ("L-a", 1, 1),
        ("L-b", 1, 1),
        ("", 10, 1),
        ("L-a", 2, 1),
        ("", 20, 1),
        ("L-b", 3, 1),
        ("L-a", 3, 1),
        ("", 30, 1),
        ("L-c", 4, 1),
    ]);
    let store = MemoryStore::new();
    let task = restore_by(&mut log, &store, &Telemetry::default(), 1, || {
        assert_eq!(next(&store), None, "nothing is written before the end: the commits hold less than a chunk");
        assert_eq!(store.lead_count(), 0);
    });
    assert_eq!(next(&store), Some(30), "the last marker's checkpoint");
    let states = store.get_states(0, &["L-a", "L-b", "L-c"]).expect("states");
    assert_eq!(states, vec![Some(state("L-a", 3)), Some(state("L-b", 3)), None], "the latest committed states");
    assert_eq!(task.in_doubt().iter().map(LeadId::as_str).collect::<Vec<_>>(), ["L-c"]);
}

#[test]
fn a_chunk_of_committed_states_is_written_with_its_marker_before_the_end() {
    let leads = chunk(&RuntimeSettings::default());
    let value = state("L-x", 2);
    let mut log = Log::default();
    let push = |log: &mut Log, key: String, value: Option<Vec<u8>>, kind| {
        let o = log.records.len() as i64;
        log.records.push(record(o, key.as_bytes(), value, kind, 1));
    };
    // Two commits of half a chunk and a bit (neither alone fills a chunk,
    // together they do), then a smaller one, read over several steps.
    for (commit, n) in [(1, leads / 2 + 1), (2, leads / 2 + 1), (3, 500)] {
        for i in 0..n {
            push(&mut log, format!("L-{commit}-{i}"), Some(value.clone()), ChangelogKind::State);
        }
        let o = log.records.len() as i64;
        log.records.push(log_marker(o, 10 * commit));
    }
    let store = MemoryStore::new();
    let mut written_before_the_end = None;
    restore_by(&mut log, &store, &Telemetry::default(), 100, || {
        written_before_the_end = written_before_the_end.or(next(&store));
    });
    assert_eq!(written_before_the_end, Some(20), "the chunk the second marker filled, with its checkpoint");
    assert_eq!(next(&store), Some(30));
    assert_eq!(store.lead_count(), 2 * (leads / 2 + 1) + 500);
}

/// The timers of the partition, earliest first (at most `n`).
fn timers(store: &MemoryStore, n: usize) -> Vec<(Millis, String)> {
    let due = store.due_timers(0, None, Millis::MAX, n).expect("timers");
    due.into_iter().map(|(at, lead)| (at, lead.as_str().to_string())).collect()
}

fn due_of(bytes: &[u8]) -> Millis {
    peek_next_due(bytes).expect("a state").expect("a page view leaves an inactivity timer")
}

#[test]
fn a_lead_written_by_an_earlier_chunk_of_the_same_restore_keeps_one_timer() {
    let leads = chunk(&RuntimeSettings::default());
    let mut log = Log::default();
    let push = |log: &mut Log, key: &str, value: Vec<u8>| {
        let o = log.records.len() as i64;
        log.records.push(record(o, key.as_bytes(), Some(value), ChangelogKind::State, 1));
    };
    // L-x is in the first chunk (written when the second marker fills it),
    // then changes in the last commit.
    let later = state("L-other", 100);
    push(&mut log, "L-x", state("L-x", 1));
    for (commit, n) in [(1, leads / 2), (2, leads / 2 + 1)] {
        for i in 0..n {
            push(&mut log, &format!("L-{commit}-{i}"), later.clone());
        }
        let o = log.records.len() as i64;
        log.records.push(log_marker(o, 10 * commit));
    }
    push(&mut log, "L-x", state("L-x", 5));
    let o = log.records.len() as i64;
    log.records.push(log_marker(o, 30));
    let store = MemoryStore::new();
    restore(&mut log, &store);
    let newest = state("L-x", 5);
    assert_eq!(
        timers(&store, 2),
        vec![(due_of(&newest), "L-x".to_string()), (due_of(&later), "L-1-0".to_string())],
        "the first chunk's timer of L-x was moved, not left behind"
    );
}

#[test]
fn a_kept_local_lead_keeps_one_timer() {
    let store = MemoryStore::new();
    let old = state("L-x", 1);
    let mut b = WriteBatch::default();
    b.move_timer(0, LeadId::from("L-x"), None, Some(due_of(&old)));
    b.put_state(0, LeadId::from("L-x"), old);
    b.checkpoint(0, Checkpoint { changelog_next_offset: Some(2), ..Checkpoint::default() });
    store.write(&b).expect("write");
    let mut log = log(&[("L-x", 1, 1), ("", 10, 1), ("L-x", 5, 1), ("", 20, 1)]);
    // Written just now: recent enough for the local state to be kept.
    let now = FixedClock::at(0).wall();
    log.records.iter_mut().for_each(|r| r.timestamp = Some(now));
    let task = restore(&mut log, &store);
    assert!(task.kept_local, "only the tail was read");
    assert_eq!(next(&store), Some(20), "the tail was read on top of the local state");
    assert_eq!(timers(&store, 5), vec![(due_of(&state("L-x", 5)), "L-x".to_string())]);
}

#[test]
fn a_changelog_with_a_marker_per_commit_is_read_once_from_the_start() {
    let value = state("L-x", 2);
    let mut log = Log::default();
    // Longer than the probe's window, a marker every thousand records.
    let n = probe_window(&RuntimeSettings::default()) as usize + 5000;
    for i in 0..n {
        let o = log.records.len() as i64;
        let r = if i % 1000 == 999 {
            log_marker(o, i as i64)
        } else {
            record(o, format!("L-{}", i % 3000).as_bytes(), Some(value.clone()), ChangelogKind::State, 1)
        };
        log.records.push(r);
    }
    let store = MemoryStore::new();
    let task = restore(&mut log, &store);
    assert_eq!(log.starts, 1, "no probe of the end: each record read once");
    let last = (n / 1000 * 1000 - 1) as i64;
    assert_eq!(next(&store), Some(last), "the last marker's checkpoint");
    assert_eq!(task.in_doubt().len(), n - (last as usize + 1), "the leads after it");
}

#[test]
fn a_compacted_changelog_is_written_in_chunks_before_its_only_marker() {
    // Compaction left one record per lead and the last marker only.
    let leads = 2 * chunk(&RuntimeSettings::default()) + 10;
    let value = state("L-x", 2);
    let mut log = Log::default();
    let push = |log: &mut Log, key: String| {
        let o = log.records.len() as i64;
        log.records.push(record(o, key.as_bytes(), Some(value.clone()), ChangelogKind::State, 1));
    };
    for i in 0..leads {
        push(&mut log, format!("L-{i}"));
    }
    let o = log.records.len() as i64;
    log.records.push(log_marker(o, 10));
    for i in 0..3 {
        push(&mut log, format!("L-after-{i}"));
    }
    let store = MemoryStore::new();
    let mut written_early = false;
    let task = restore_by(&mut log, &store, &Telemetry::default(), 1000, || {
        let held = store.lead_count() > 0;
        written_early |= held && next(&store).is_none();
        // A restart that is not given the partition drops what it lists.
        assert!(!held || store.partitions().expect("partitions") == [0], "states of a partition it does not list");
    });
    assert!(written_early, "states written before the marker was read, without a checkpoint");
    assert_eq!(log.starts, 3, "the read from the start, the probe of the end, the read on");
    assert_eq!(next(&store), Some(10));
    assert_eq!(store.lead_count(), leads, "every state before the marker, none after");
    assert_eq!(task.in_doubt().len(), 3);
}
