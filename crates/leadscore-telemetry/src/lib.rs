//! What leadscore's runtime reports, for observers (the admin server, the
//! demo's console, logs): counters, the Prometheus metrics, whether the
//! instance is ready, and the recent published records. It knows nothing of
//! Kafka or RocksDB: the runtime feeds it typed observations, and the admin
//! server renders what it keeps.
//!
//! # Layout
//!
//! - [`observations`]: what one processing step saw, aggregated.
//! - [`history`]: recent published records, typed, rendered on demand.
//! - [`metrics`]: the Prometheus metrics.
//! - [`status`]: readiness and owned partitions.
//! - [`tally`]: a commit's steps, summed as they are published.

pub mod history;
pub mod metrics;
pub mod observations;
pub mod status;
pub mod tally;

pub use history::{History, PublishedRecord};
pub use metrics::Metrics;
pub use observations::{Counts, EventOutcome, Observations, SkipReason, StepStats};
pub use status::Status;
pub use tally::Tally;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Everything an instance reports; one per running service, shared by
/// reference with its observers.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub counters: Counters,
    pub metrics: Metrics,
    pub history: History,
    pub status: Status,
}

/// Running totals since the process started (the metrics hold the same with
/// labels; these are what the console and the shutdown summary print).
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
    /// Completed changelog restores.
    pub restores: AtomicU64,
}

impl Counters {
    /// Adds one committed step's counts.
    pub fn add(&self, messages: u64, s: &StepStats) {
        self.add_steps(1, messages, s);
    }

    /// Adds the summed counts of `steps` committed steps.
    pub fn add_steps(&self, steps: u64, messages: u64, s: &StepStats) {
        self.messages.fetch_add(messages, Relaxed);
        self.applied.fetch_add(s.applied, Relaxed);
        self.duplicates.fetch_add(s.duplicates, Relaxed);
        self.dead_lettered.fetch_add(s.dead_lettered, Relaxed);
        self.skipped.fetch_add(s.skipped, Relaxed);
        self.score_changes.fetch_add(s.score_changes, Relaxed);
        self.transitions.fetch_add(s.transitions, Relaxed);
        self.timer_transitions.fetch_add(s.timer_transitions, Relaxed);
        self.timers_fired.fetch_add(s.timers_fired, Relaxed);
        self.batches.fetch_add(steps, Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
