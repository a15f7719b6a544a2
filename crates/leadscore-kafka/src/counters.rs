//! Counters of the processing loop, shared lock-free with observers (the demo's
//! console, later the Prometheus exporter), plus a small ring of recent
//! transitions to show.

use leadscore_pipeline::Stats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub skipped: AtomicU64,
    pub score_changes: AtomicU64,
    pub transitions: AtomicU64,
    pub timer_transitions: AtomicU64,
    pub timers_fired: AtomicU64,
    pub batches: AtomicU64,
    /// Partitions whose changelog restore is under way (a gauge).
    pub restoring_partitions: AtomicU64,
    /// Completed changelog restores, and changelog records read by them.
    pub restores: AtomicU64,
    pub restore_records: AtomicU64,
    /// Assignments and revocations received from the group.
    pub rebalances: AtomicU64,
    /// Input partitions (groups) owned and restored: ready to process (a gauge).
    pub owned_partitions: AtomicU64,
    /// Recent transitions, newest last, as published JSON.
    recent: Mutex<VecDeque<String>>,
    /// Transitions entered per segment name.
    entered: Mutex<std::collections::BTreeMap<String, u64>>,
}

const RECENT: usize = 64;

impl Counters {
    pub fn add(&self, messages: usize, s: &Stats) {
        self.messages.fetch_add(messages as u64, Relaxed);
        self.applied.fetch_add(s.applied, Relaxed);
        self.duplicates.fetch_add(s.duplicates, Relaxed);
        self.dead_lettered.fetch_add(s.dead_lettered, Relaxed);
        self.skipped.fetch_add(s.skipped, Relaxed);
        self.score_changes.fetch_add(s.score_changes, Relaxed);
        self.transitions.fetch_add(s.transitions, Relaxed);
        self.timer_transitions.fetch_add(s.timer_transitions, Relaxed);
        self.timers_fired.fetch_add(s.timers_fired, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }

    /// Notes a published transition (its JSON and segment).
    pub fn note_transition(&self, json: &str, segment: &str, entered: bool) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(json.to_string());
        if entered {
            *self.entered.lock().unwrap_or_else(|p| p.into_inner()).entry(segment.to_string()).or_default() += 1;
        }
    }

    /// The most recent transitions, oldest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().skip(recent.len().saturating_sub(n)).cloned().collect()
    }

    /// Entries per segment so far.
    pub fn entered(&self) -> Vec<(String, u64)> {
        self.entered.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
