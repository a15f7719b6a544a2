//! Exactly once's transaction: what a batch sends in it (its partitions'
//! openers, its outputs), the commit's changelog in it, and its commit with
//! the input offsets (the protocol is in `commit.rs`).

use super::{changelog_records, offsets_of};
use crate::messages::OutputRecord;
use crate::ports::{Acked, PortError};
use crate::runtime::{Planned, Ports, RunError, Runtime};

impl Runtime<'_> {
    /// The openers of the steps' partitions that have not joined the open
    /// transaction yet (all of them when none is open).
    pub(super) fn openers(&self, steps: &[Planned]) -> Vec<OutputRecord> {
        let opened = self.staged.as_ref().map(|s| &s.opened);
        steps
            .iter()
            .filter(|s| !opened.is_some_and(|o| o.contains(&s.partition)))
            .map(|s| OutputRecord::changelog_opener(s.partition, self.owned.get(&s.partition).and_then(|o| o.epoch)))
            .collect()
    }

    /// Exactly once: sends the steps' records in the open transaction, which
    /// `begin` opens first, after `openers` (changelog partitions joining it).
    pub(super) fn send_in_transaction(
        &self,
        ports: &mut Ports<'_>,
        openers: &[OutputRecord],
        steps: &[Planned],
        begin: bool,
    ) -> Result<(), RunError> {
        let sink = &mut *ports.sink;
        let result = (|| {
            if begin {
                sink.begin()?;
            }
            if !openers.is_empty() {
                sink.send(openers)?;
            }
            steps.iter().try_for_each(|s| sink.send(&s.step.outputs))
        })();
        result.map_err(|e| self.abort(sink, e))
    }

    /// Exactly once, at the commit: the sealed layer's changelog (each
    /// changed lead's latest state, each partition's checkpoint marker) in
    /// the open transaction, which every partition with a step in it has
    /// joined with an opener already.
    pub(super) fn send_changelog_in_transaction(&self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        let ops = self.pending.sealed_changelog();
        if ops.len() == 0 {
            return Ok(());
        }
        let records = changelog_records(ops, |p| self.owned.get(&p).and_then(|o| o.epoch));
        let sink = &mut *ports.sink;
        sink.send(&records).map_err(|e| self.abort(sink, e))
    }

    /// Exactly once, at the commit: adds every active partition's input
    /// offsets to the transaction that the commit's batches sent their
    /// records in (also when only timers fired, so that the group
    /// coordinator fences an owner that lost its partitions), and commits
    /// it; aborted if anything fails.
    pub(super) fn commit_transaction(&self, ports: &mut Ports<'_>) -> Result<Acked, RunError> {
        let timeout = self.settings.delivery_timeout;
        let offsets = offsets_of(self.owned.iter().filter(|(_, o)| o.active).map(|(p, o)| (*p, &o.next_offsets)));
        let group = ports.source.group();
        let sink = &mut *ports.sink;
        let result = (|| {
            let Some(group) = group else {
                return Err(PortError::Retriable("not a member of the consumer group".into()));
            };
            // The records are on the brokers (their partitions part of the
            // open transaction) before the group coordinator accepts the
            // offsets: a new owner restoring the changelog then always sees
            // this transaction open and waits for its end, even if this
            // instance is stalled past its session between here and the commit.
            let mut acked = sink.flush(timeout)?;
            if !offsets.is_empty() {
                sink.send_offsets(&offsets, &group, timeout)?;
            }
            let committed = sink.commit(timeout)?;
            acked.markers.extend(committed.markers);
            Ok(acked)
        })();
        result.map_err(|e| self.abort(sink, e))
    }

    /// Aborts the open transaction after `e`, which stops the run.
    fn abort(&self, sink: &mut dyn crate::ports::Sink, e: PortError) -> RunError {
        if let Err(abort) = sink.abort(self.settings.delivery_timeout) {
            tracing::warn!(error = %abort, "aborting the failed transaction failed too");
        }
        RunError::Sink(e)
    }
}
