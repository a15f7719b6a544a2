//! The restore against an in-memory changelog: what it applies, what it
//! leaves for the replay, and whose records it trusts.

use super::*;
use crate::messages::REPLAY_KEY;
use crate::ports::{FixedClock, PortError};
use leadscore_core::engine::apply;
use leadscore_core::{Event, Kind, LeadState, Outputs};
use leadscore_store::encode_state;
use leadscore_store::memory::MemoryStore;

/// A changelog partition in memory.
#[derive(Default)]
struct Log {
    records: Vec<ChangelogRecord>,
    at: Option<i64>,
}

impl Changelog for Log {
    fn watermarks(&mut self, _: Partition) -> Result<(i64, i64), PortError> {
        Ok((0, self.records.len() as i64))
    }
    fn start(&mut self, _: Partition, from: i64) -> Result<(), PortError> {
        self.at = Some(from);
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
    Log { records, at: None }
}

/// Restores partition 0 of `log` into `store`; the finished task.
fn restore(log: &mut Log, store: &MemoryStore) -> RestoreTask {
    let telemetry = Telemetry::default();
    let settings = RuntimeSettings::default();
    let clock = FixedClock::at(0);
    let mut env = RestoreEnv { changelog: log, store, clock: &clock, telemetry: &telemetry, settings: &settings };
    let mut task = RestoreTask::new(0, Duration::ZERO);
    // Tiny budgets for short logs: a restore resumes across many steps.
    let budget = if env.changelog.watermarks(0).expect("offsets").1 < 100 { 2 } else { 5000 };
    while !task.step(&mut env, budget, Duration::MAX).expect("restore") {}
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
