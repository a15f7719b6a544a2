//! The runtime's state cache: steps that keep their leads decoded between
//! them publish what steps without it publish, the store gets each cached
//! state at the cache's flush (and only then), and a cache trimmed to its
//! budget reads the store again without a difference. With a changelog per
//! step (wall clock, exactly once) the cache only saves reads: each step
//! still writes and publishes what it would without it.

use leadscore_config::seed_model;
use leadscore_core::{LeadId, Millis};
use leadscore_pipeline::processor::StateCache;
use leadscore_pipeline::{OutputTopic, Processor, Step, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::{Checkpoint, Partition, StateStore, StoreError, WriteBatch};
use std::path::Path;

mod common;
use common::messages;

fn published(step: &Step) -> Vec<Vec<u8>> {
    step.outputs
        .iter()
        .filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
        .map(|o| o.value.clone().expect("a value"))
        .collect()
}

/// `n` events of the synthetic generator over `leads` leads, and the same as
/// JSON messages of partition 0.
fn generated(seed: u64, leads: u64, n: usize) -> (Vec<leadscore_core::Event>, Vec<leadscore_pipeline::InputMessage>) {
    generated_with(leadscore_synth::Settings { seed, leads, ..Default::default() }, n)
}

/// `n` events of the generator with `settings`, typed and as messages.
fn generated_with(
    settings: leadscore_synth::Settings,
    n: usize,
) -> (Vec<leadscore_core::Event>, Vec<leadscore_pipeline::InputMessage>) {
    let mut g = leadscore_synth::Generator::new(settings);
    let events: Vec<leadscore_core::Event> = (0..n).map(|_| g.next_event()).collect();
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            leadscore_codec::encode_event_json(&mut b, e);
            String::from_utf8(b).expect("UTF-8")
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let all = messages("lead-events", &lines);
    (events, all)
}

#[test]
fn cached_steps_publish_and_store_what_uncached_steps_do() {
    let model = seed_model();
    let topics = Topics::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut events = Vec::new();
    for entry in std::fs::read_dir(&root).expect("golden scenarios") {
        let path = entry.expect("entry").path().join("events.jsonl");
        if let Ok(text) = std::fs::read_to_string(path) {
            events.extend(text.lines().map(str::to_string));
        }
    }
    let lines: Vec<&str> = events.iter().map(String::as_str).collect();
    let all = messages("lead-events", &lines);
    assert!(all.len() > 50, "enough events to cache across steps");

    let plain_store = MemoryStore::new();
    let plain =
        Processor { changelog_per_step: false, ..Processor::new(&model, &plain_store, &topics, TimeMode::EventTime) };
    let (store, cache) = (MemoryStore::new(), StateCache::new(usize::MAX));
    let cached = Processor {
        changelog_per_step: false,
        cache: Some(&cache),
        ..Processor::new(&model, &store, &topics, TimeMode::EventTime)
    };
    let (mut flushed, mut trimmed) = (0, 0);
    for (i, chunk) in all.chunks(5).enumerate() {
        let a = plain.process(0, chunk, 0).expect("uncached step");
        plain_store.write(&a.write).expect("uncached write");
        let b = cached.process(0, chunk, 0).expect("cached step");
        store.write(&b.write).expect("cached write");
        assert_eq!(published(&a), published(&b), "step {i}");
        if i % 3 == 2 {
            assert_ne!(store.leads(0), plain_store.leads(0), "step {i}: the store lags behind until the flush");
            let trim = i % 9 == 8;
            let mut batch = WriteBatch::default();
            let (kept, bytes) = cache.flush(&model, &mut batch, if trim { 0 } else { usize::MAX });
            store.write(&batch).expect("flush");
            assert_eq!(store.leads(0), plain_store.leads(0), "step {i}: the flush writes every cached change");
            if trim {
                assert_eq!((kept, bytes, cache.len()), (0, 0, 0), "over its budget, the cache empties");
                trimmed += 1;
            } else {
                assert_eq!(kept, cache.len(), "flushed states stay cached");
                assert!(kept > 0 && bytes >= kept * std::mem::size_of::<leadscore_core::LeadState>());
                let mut again = WriteBatch::default();
                cache.flush(&model, &mut again, usize::MAX);
                assert!(again.is_empty(), "a flushed state is not written again until it changes");
                flushed += 1;
            }
        }
    }
    assert!(flushed > 2 && trimmed > 0, "flushed {flushed}, trimmed {trimmed}");
}

#[test]
fn over_its_budget_the_cache_drops_first_the_leads_no_step_loaded_since_the_last_flush() {
    let model = seed_model();
    let topics = Topics::default();
    let (events, all) = generated(4, 40, 400);
    let later: std::collections::BTreeSet<&str> = events[390..].iter().map(|e| e.lead_id.as_str()).collect();
    // Two steps with a flush between them, then a flush with `budget`.
    let run = |budget: usize| {
        let (store, cache) = (MemoryStore::new(), StateCache::new(usize::MAX));
        let p = Processor {
            changelog_per_step: false,
            cache: Some(&cache),
            ..Processor::new(&model, &store, &topics, TimeMode::EventTime)
        };
        let first = p.process(0, &all[..390], 0).expect("first step");
        store.write(&first.write).expect("write");
        cache.flush(&model, &mut WriteBatch::default(), usize::MAX);
        p.process(0, &all[390..], 0).expect("second step");
        cache.flush(&model, &mut WriteBatch::default(), budget)
    };
    let (every, bytes) = run(usize::MAX);
    assert!(every > later.len(), "{every} leads cached, {} in the second step", later.len());
    let (kept, trimmed) = run(bytes - 1);
    assert!(kept >= later.len() && kept < every, "kept {kept} of {every}: the second step's {} stay", later.len());
    assert!(trimmed < bytes);
}

#[test]
fn with_a_changelog_per_step_cached_steps_write_and_publish_what_uncached_steps_do() {
    let model = seed_model();
    let topics = Topics::default();
    let (events, all) = generated(9, 60, 1500);
    for mode in [TimeMode::WallClock, TimeMode::EventTime] {
        let plain_store = MemoryStore::new();
        let plain = Processor::new(&model, &plain_store, &topics, mode);
        let (store, cache) = (MemoryStore::new(), StateCache::new(usize::MAX));
        let cached = Processor { cache: Some(&cache), ..Processor::new(&model, &store, &topics, mode) };
        let (mut changelog, mut timers, mut trimmed) = (0, 0, 0);
        for (i, (chunk, typed)) in all.chunks(25).zip(events.chunks(25)).enumerate() {
            // Wall clock ticks at the chunk's latest event, so timers fire.
            let now = typed.iter().map(|e| e.timestamp).max().expect("a chunk");
            let a = plain.process(0, chunk, now).expect("uncached step");
            plain_store.write(&a.write).expect("uncached write");
            let b = cached.process(0, chunk, now).expect("cached step");
            store.write(&b.write).expect("cached write");
            assert_eq!(a.outputs, b.outputs, "{mode:?} step {i}: records, dead letters and changelog");
            assert_eq!(a.write, b.write, "{mode:?} step {i}: states, timers and checkpoint");
            assert!(!cache.is_empty(), "{mode:?} step {i}: the changed leads stay cached");
            changelog += b.outputs.iter().filter(|o| o.topic == OutputTopic::Changelog).count();
            timers += b.stats.timers_fired;
            let mut batch = WriteBatch::default();
            let trim = i % 7 == 6;
            cache.flush(&model, &mut batch, if trim { 0 } else { usize::MAX });
            assert!(batch.is_empty(), "{mode:?} step {i}: each step staged its states; a flush has none left");
            if trim {
                assert_eq!(cache.len(), 0);
                trimmed += 1;
            }
        }
        // Then 90 days of silence: decay and inactivity timers fire.
        let later = events.iter().map(|e| e.timestamp).max().expect("events") + 90 * 86_400_000;
        let (a, b) = (plain.tick(0, later).expect("uncached tick"), cached.tick(0, later).expect("cached tick"));
        assert_eq!((&a.outputs, &a.write), (&b.outputs, &b.write), "{mode:?}: the timers' step");
        plain_store.write(&a.write).expect("uncached write");
        store.write(&b.write).expect("cached write");
        timers += b.stats.timers_fired;
        assert_eq!(store.leads(0), plain_store.leads(0), "{mode:?}");
        assert!(changelog > 100 && timers > 0 && trimmed > 2, "{mode:?}: {changelog} {timers} {trimmed}");
    }
}

/// A memory store that asks to be read in batches, as a disk store does.
struct Batched(MemoryStore);

impl StateStore for Batched {
    fn reads_in_batches(&self) -> bool {
        true
    }
    fn get_states(&self, p: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.0.get_states(p, leads)
    }
    fn due_timers(
        &self,
        p: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        self.0.due_timers(p, after, up_to, limit)
    }
    fn lead_ids(&self, p: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        self.0.lead_ids(p, after, limit)
    }
    fn checkpoint(&self, p: Partition) -> Result<Option<Checkpoint>, StoreError> {
        self.0.checkpoint(p)
    }
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.0.write(batch)
    }
    fn drop_partition(&self, p: Partition) -> Result<(), StoreError> {
        self.0.drop_partition(p)
    }
    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.0.partitions()
    }
}

/// A step over a store read in batches reads its uncached leads up front; over
/// one read lead by lead, each when first used (and a cached lead joins the
/// step only then, its timer known from the store's index until it does).
/// Both publish and store alike, with and without a cache, in both time modes.
#[test]
fn steps_read_up_front_or_lead_by_lead_publish_and_store_alike() {
    let model = seed_model();
    let topics = Topics::default();
    // Two hours apart on average: leads fall silent for days, timers fire.
    let settings = leadscore_synth::Settings { seed: 21, leads: 50, step: 7_200_000, ..Default::default() };
    let (events, all) = generated_with(settings, 1200);
    for mode in [TimeMode::WallClock, TimeMode::EventTime] {
        for cached in [false, true] {
            let (lazy_store, lazy_cache) = (MemoryStore::new(), StateCache::new(usize::MAX));
            let (eager_store, eager_cache) = (Batched(MemoryStore::new()), StateCache::new(usize::MAX));
            assert!(!lazy_store.reads_in_batches() && eager_store.reads_in_batches());
            let lazy = Processor {
                changelog_per_step: false,
                cache: cached.then_some(&lazy_cache),
                ..Processor::new(&model, &lazy_store, &topics, mode)
            };
            let eager = Processor {
                changelog_per_step: false,
                cache: cached.then_some(&eager_cache),
                ..Processor::new(&model, &eager_store, &topics, mode)
            };
            let mut fired = 0;
            for (i, (chunk, typed)) in all.chunks(40).zip(events.chunks(40)).enumerate() {
                let now = typed.iter().map(|e| e.timestamp).max().expect("a chunk");
                let a = lazy.process(0, chunk, now).expect("lazy step");
                lazy_store.write(&a.write).expect("lazy write");
                let b = eager.process(0, chunk, now).expect("eager step");
                eager_store.write(&b.write).expect("eager write");
                assert_eq!(published(&a), published(&b), "{mode:?}, cached {cached}, step {i}");
                assert_eq!(a.stats.timers_fired, b.stats.timers_fired, "{mode:?}, cached {cached}, step {i}");
                fired += a.stats.timers_fired;
            }
            assert!(fired > 0, "{mode:?}: timers fired");
            for (store, cache) in [(&lazy_store, &lazy_cache), (&eager_store.0, &eager_cache)] {
                let mut batch = WriteBatch::default();
                cache.flush(&model, &mut batch, usize::MAX);
                store.write(&batch).expect("flush");
            }
            assert_eq!(lazy_store.leads(0), eager_store.0.leads(0), "{mode:?}, cached {cached}: the final states");
        }
    }
}
