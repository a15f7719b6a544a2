//! How the runtime runs: the processing guarantee, the time mode, batch sizes
//! and waits, all typed (durations are [`Duration`]s from the configuration
//! on). `leadscore run` builds these from its configuration file.

use crate::admission::Admission;
use crate::messages::Topics;
use crate::processor::{Formats, TimeMode};
use leadscore_codec::Limits;
use std::time::Duration;

/// The processing guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs are published and acknowledged before the state and offsets
    /// are committed: a crash may publish some records again (same
    /// `(lead_id, version)`, same content); state is never applied twice.
    AtLeastOnce,
    /// Outputs, changelog and input offsets commit in one Kafka transaction;
    /// read_committed readers see every record once.
    ExactlyOnce,
}

impl Guarantee {
    pub const ALL: [Guarantee; 2] = [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce];

    /// The name in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once",
        }
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;

    fn from_str(s: &str) -> Result<Guarantee, String> {
        Guarantee::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("{s:?}: expected at_least_once or exactly_once"))
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub topics: Topics,
    pub time_mode: TimeMode,
    pub guarantee: Guarantee,
    pub formats: Formats,
    /// Input size limits (see [`Limits`]).
    pub limits: Limits,
    /// Plausible event times and unknown kinds (see [`crate::admission`]).
    pub admission: Admission,
    /// Most messages per poll batch.
    pub max_batch: usize,
    /// Threads a poll batch's partition steps run on, the loop's own
    /// included (1: the loop alone). Steps of different partitions are
    /// independent, and their results are published in partition order
    /// whatever the number.
    pub step_threads: usize,
    /// The fewest messages in a batch for its steps to be spread over
    /// `step_threads` (below, starting threads costs more than it saves).
    pub parallel_min_messages: usize,
    /// At least once in event time: the fewest changelog records a commit
    /// sends per iteration of the loop (it sends its changelog in up to eight
    /// slices, one per iteration, so as not to stall the loop; a commit with
    /// fewer records sends them all at once).
    pub changelog_slice_min: usize,
    /// How long a poll waits for the first message.
    pub poll_timeout: Duration,
    /// How often wall-clock timers are checked with no input.
    pub tick_interval: Duration,
    /// How long a partition group waits for an input topic that has nothing
    /// more on the broker (see [`crate::aligner`]).
    pub max_idle: Duration,
    /// How long outputs may take to be acknowledged (or a transaction to commit).
    pub delivery_timeout: Duration,
    /// How often the store is committed. Batches processed in between are
    /// staged in memory (later batches read through them) and their outputs
    /// sent without waiting; at the commit every output is awaited, then the
    /// staged states, timers and checkpoints go to the store in one write.
    /// Zero: after every poll batch.
    pub commit_interval: Duration,
    /// Commit early once the staged states take this much memory.
    pub staged_max_bytes: usize,
    /// How long a changelog restore may make no progress before it fails.
    pub restore_stall_timeout: Duration,
    /// Leads a restore holds before it writes them: bounds its memory on a
    /// compacted changelog, where a single marker follows every state. Small
    /// in the simulation, so that its restores probe and write early too.
    pub restore_chunk: usize,
    /// Local state is kept across a restart only if the changelog records
    /// written after it are younger than this; older ones may have lost
    /// tombstones to compaction, and the partition is restored from scratch.
    /// Keep it below the changelog's `delete.retention.ms`.
    pub local_state_max_age: Duration,
    /// The circuit breaker: the loop stops with an error when more than this
    /// share of `dead_letter_window` consecutive messages were dead-lettered
    /// (a topic mapped to the wrong kind or format). 1.0, the default, never
    /// trips: bad input alone does not stop the service.
    pub dead_letter_max_share: f64,
    pub dead_letter_window: u64,
}

impl RuntimeSettings {
    /// The changelog is published once per commit (each changed lead's
    /// latest state, then one checkpoint marker per partition) instead of
    /// after every step, except at least once in wall clock. At least once
    /// in event time, a crash replays every step since the last commit from
    /// its inputs, and event time makes the replay publish the same records.
    /// Exactly once, the commit's records go in its transaction before it
    /// commits, all or none of them; each partition's first step of the
    /// transaction sends an opener ([`OutputRecord::changelog_opener`]) so
    /// that the changelog partition is in the transaction from then on: a
    /// new owner restoring between a rebalance and the old owner's commit
    /// then waits for that transaction's end. Without openers the states
    /// joined the transaction too late: such a new owner found no open
    /// transaction, restored the state before it, and published the
    /// interval's records a second time (simulation seed 2213, when tried on
    /// 2026-12-02). Wall clock at least once keeps a changelog per step: a
    /// replay must repeat each step's tick, recorded per step.
    ///
    /// [`OutputRecord::changelog_opener`]: crate::messages::OutputRecord::changelog_opener
    pub fn changelog_per_commit(&self) -> bool {
        self.guarantee == Guarantee::ExactlyOnce || self.time_mode == TimeMode::EventTime
    }

    /// Whether a due commit is sealed and completed once its outputs are
    /// acknowledged, the loop going on meanwhile, instead of waiting for them.
    /// Only at least once in event time: wall clock publishes checkpoint
    /// markers with every step, and a pipelined commit must not take a later
    /// step's marker for its own; exactly once waits for its transaction's
    /// records as it commits it.
    pub fn pipelined_commit(&self) -> bool {
        self.guarantee == Guarantee::AtLeastOnce && self.time_mode == TimeMode::EventTime
    }
}

impl Default for RuntimeSettings {
    fn default() -> RuntimeSettings {
        RuntimeSettings {
            topics: Topics::default(),
            time_mode: TimeMode::WallClock,
            guarantee: Guarantee::AtLeastOnce,
            formats: Formats::default(),
            limits: Limits::default(),
            admission: Admission::default(),
            max_batch: 5000,
            step_threads: 1,
            parallel_min_messages: 256,
            changelog_slice_min: 256,
            poll_timeout: Duration::from_millis(100),
            tick_interval: Duration::from_millis(100),
            max_idle: Duration::ZERO,
            delivery_timeout: Duration::from_secs(30),
            commit_interval: Duration::ZERO,
            staged_max_bytes: 64 << 20,
            restore_stall_timeout: Duration::from_secs(120),
            restore_chunk: 20_000,
            local_state_max_age: Duration::from_secs(3600),
            dead_letter_max_share: 1.0,
            dead_letter_window: 1000,
        }
    }
}
