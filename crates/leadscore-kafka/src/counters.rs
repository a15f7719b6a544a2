//! What the processing loop has done and where it stands, shared with
//! observers (the demo's console, the admin server): counters, the Prometheus
//! metrics, the owned partitions, readiness, a small ring of recent transitions
//! and the last few score changes of recently changed leads.

use crate::metrics::Metrics;
use leadscore_core::LeadId;
use leadscore_pipeline::{Published, Stats};
use leadscore_store::Partition;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    /// Completed changelog restores. (Partitions restoring, records restored,
    /// rebalances and owned partitions are only in `metrics`: one source each.)
    pub restores: AtomicU64,
    pub metrics: Metrics,
    /// Input partitions owned and restored.
    pub owned: Mutex<BTreeSet<Partition>>,
    /// The loop has joined the group (received an assignment, maybe empty).
    pub consuming: AtomicBool,
    /// librdkafka reports every broker down.
    pub brokers_down: AtomicBool,
    /// Recent transitions, newest last, as published JSON.
    recent: Mutex<VecDeque<String>>,
    recent_changes: Mutex<RecentChanges>,
    /// Transitions entered per segment name.
    entered: Mutex<std::collections::BTreeMap<String, u64>>,
}

const RECENT: usize = 64;
/// Leads whose last score changes are kept for lookups, and changes per lead.
const CHANGED_LEADS: usize = 10_000;
const CHANGES_PER_LEAD: usize = 5;

/// The last few published score changes of up to `CHANGED_LEADS` leads. When
/// full, the lead that entered first is forgotten, even if it changed since:
/// first in, first out, not least recently used (no reordering per change; the
/// cache only serves `/leads/{id}` lookups).
#[derive(Debug, Default)]
struct RecentChanges {
    by_lead: HashMap<String, VecDeque<String>>,
    order: VecDeque<String>,
}

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

    /// Remembers a step's published score changes and transitions (one lock
    /// of each kind per step): the last changes of each recently changed
    /// lead, the last transitions, and entries per segment.
    pub fn note_published(&self, published: Vec<Published>) {
        let (transitions, changes): (Vec<Published>, Vec<Published>) =
            published.into_iter().partition(|p| p.transition.is_some());
        self.note_score_changes(changes.into_iter().map(|p| (p.lead, p.json)));
        if transitions.is_empty() {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut entered = self.entered.lock().unwrap_or_else(|p| p.into_inner());
        for p in transitions {
            if let Some((segment, true)) = p.transition {
                *entered.entry(self.metrics.segment_name(segment)).or_default() += 1;
            }
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(p.json);
        }
    }

    /// Remembers published score changes: (lead, its JSON) pairs. One lock
    /// per call, so callers pass a whole step's changes.
    pub fn note_score_changes(&self, changes: impl IntoIterator<Item = (LeadId, String)>) {
        let mut r = self.recent_changes.lock().unwrap_or_else(|p| p.into_inner());
        for (lead, json) in changes {
            let lead = lead.as_str();
            let changes = match r.by_lead.get_mut(lead) {
                Some(changes) => changes,
                None => {
                    if r.order.len() == CHANGED_LEADS {
                        if let Some(old) = r.order.pop_front() {
                            r.by_lead.remove(&old);
                        }
                    }
                    r.order.push_back(lead.to_string());
                    r.by_lead.entry(lead.to_string()).or_default()
                }
            };
            if changes.len() == CHANGES_PER_LEAD {
                changes.pop_front();
            }
            changes.push_back(json);
        }
    }

    /// The last score changes of `lead` seen by this instance, oldest first.
    pub fn score_changes_of(&self, lead: &str) -> Vec<String> {
        let r = self.recent_changes.lock().unwrap_or_else(|p| p.into_inner());
        r.by_lead.get(lead).map(|c| c.iter().cloned().collect()).unwrap_or_default()
    }

    /// Owned partitions.
    pub fn owned(&self) -> BTreeSet<Partition> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Ready: consuming, nothing restoring, brokers reachable.
    pub fn ready(&self) -> Result<(), String> {
        if !self.consuming.load(Relaxed) {
            return Err("not consuming yet (joining the consumer group)".into());
        }
        if self.brokers_down.load(Relaxed) {
            return Err("all brokers are unreachable".into());
        }
        match self.metrics.restoring_partitions.get() {
            0 => Ok(()),
            n => Err(format!("restoring {n} partition(s) from the changelog")),
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
