//! What a commit carries between the batches it covers and its completion:
//! the published steps' tally ([`Staged`]), and once due, the sealed commit
//! whose acknowledgements or store write are still outstanding ([`Sealed`]),
//! with the changelog it has yet to send ([`ChangelogLeft`]). The protocol
//! that moves them along is in `commit.rs`.

use crate::messages::OutputRecord;
use leadscore_store::Partition;
use leadscore_telemetry::Tally;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The published steps of the next commit, their store writes staged: what
/// the commit reports of them once written, summed as they are published
/// (keeping the steps until then stalled the loop at the commit).
pub(super) struct Staged {
    pub(super) tally: Tally,
    /// The circuit breaker's first verdict on these steps: raised once they
    /// are committed, so that their dead letters are published.
    pub(super) verdict: Option<String>,
    /// When the first of them was published (the commit interval runs
    /// from then).
    pub(super) since: Duration,
    /// Exactly once: the partitions whose changelog partition the open
    /// transaction has written (an opener, sent with their first step).
    pub(super) opened: BTreeSet<Partition>,
}

/// A sealed commit, its outputs in flight or its store write under way:
/// what it still reports of its steps once it is written, its end among the
/// records sent, and when it was sealed.
pub(super) struct Sealed {
    /// Set once the whole changelog is sent.
    pub(super) mark: Option<crate::ports::Mark>,
    /// At least once in event time: the changelog records still to send,
    /// a slice per iteration (see `commit::CHANGELOG_SLICES`).
    pub(super) changelog: ChangelogLeft,
    pub(super) staged: Staged,
    pub(super) started: Duration,
    /// Acknowledged, and being written to the store: the input offsets its
    /// checkpoints reach, for the group once it is written.
    pub(super) writing: Option<Vec<crate::ports::TopicOffset>>,
}

/// The changelog of a sealed commit still to send: its state records in
/// order, each partition's ownership epoch as of the seal, how many go per
/// iteration, and the checkpoint markers, held back until everything sent
/// before them is acknowledged (a marker on the changelog must never be
/// durable before the outputs it covers: a restore trusts it).
#[derive(Default)]
pub(super) struct ChangelogLeft {
    pub(super) ops: leadscore_store::overlay::SealedChangelog,
    pub(super) epochs: BTreeMap<Partition, Option<i64>>,
    pub(super) slice: usize,
    pub(super) markers: Vec<OutputRecord>,
}
