//! The commit protocol of each guarantee (docs/runtime.md has the diagrams
//! and what every crash point leaves behind).
//!
//! At least once:
//! 1. wall clock only: publish each step's replay marker (its tick and the
//!    inputs it covers) to the changelog and wait for it, so that whichever
//!    instance replays the step after a crash replays it identically;
//! 2. publish every output and changelog record;
//! 3. wait until all are acknowledged; any failure stops here, nothing
//!    committed (a restart replays the steps);
//! 4. write states, timers and checkpoints (input offsets, the changelog
//!    offset each step's marker got) to the store in one atomic batch;
//! 5. commit the input offsets to the group (best effort: the store's
//!    checkpoint is what a restart trusts).
//!
//! Exactly once: outputs, changelog records and the input offsets of every
//! owned partition (also in timer-only transactions, so that the group
//! coordinator fences an owner that lost its partitions) go in one Kafka
//! transaction; the records are delivered before the offsets are added; the
//! store is written after it commits. A crash in between is repaired by the
//! changelog restore, which reads committed records only, and waits for
//! transactions still open on the changelog to end.

use super::{Planned, Ports, RunError, Runtime};
use crate::messages::{headers, OutputRecord};
use crate::ports::{Acked, PortError, TopicOffset};
use crate::processor::TimeMode;
use crate::runtime::settings::Guarantee;
use leadscore_store::{Replay, WriteBatch};
use std::collections::BTreeMap;

impl Runtime<'_> {
    /// Commits the steps; returns the circuit breaker's verdict (`Some`: stop).
    pub(super) fn commit(
        &mut self,
        ports: &mut Ports<'_>,
        mut steps: Vec<Planned>,
    ) -> Result<Option<String>, RunError> {
        let started = ports.clock.elapsed();
        let acked = match self.settings.guarantee {
            Guarantee::AtLeastOnce => {
                if self.settings.time_mode == TimeMode::WallClock {
                    let markers = self.replay_markers(&steps);
                    ports.sink.send(&markers).map_err(RunError::Sink)?;
                    ports.sink.flush(self.settings.delivery_timeout).map_err(RunError::Sink)?;
                }
                for s in &steps {
                    ports.sink.send(&s.step.outputs).map_err(RunError::Sink)?;
                }
                ports.sink.flush(self.settings.delivery_timeout).map_err(RunError::Sink)?
            }
            Guarantee::ExactlyOnce => self.transaction(ports, &steps)?,
        };
        let writing = ports.clock.elapsed();
        let mut batch = WriteBatch::default();
        for s in &mut steps {
            if let Some(&offset) = acked.markers.get(&s.partition) {
                s.step.write.set_changelog_next_offset(s.partition, offset + 1);
                s.step.checkpoint.changelog_next_offset = Some(offset + 1);
            }
            batch.ops.append(&mut s.step.write.ops);
        }
        self.store.write(&batch)?;
        let m = &self.telemetry.metrics;
        let done = ports.clock.elapsed();
        m.store_write_duration.observe(done.saturating_sub(writing).as_secs_f64());
        m.commit_duration.observe(done.saturating_sub(started).as_secs_f64());
        if self.settings.guarantee == Guarantee::AtLeastOnce {
            let offsets = offsets_of(steps.iter().map(|s| (s.partition, &s.step.checkpoint.next_offsets)));
            if let Err(e) = ports.source.commit(&offsets) {
                tracing::warn!(error = %e, "offset commit failed; the store checkpoint stays authoritative");
            }
        }
        let (now, wall) = (ports.clock.now(), ports.clock.wall());
        let mut verdict = None;
        for s in steps {
            let Planned { partition, step, .. } = s;
            if let Some(owned) = self.owned.get_mut(&partition) {
                owned.counts = step.checkpoint.counts.clone();
                owned.next_offsets = step.checkpoint.next_offsets.clone();
                let caught_up = |r: &Replay| {
                    r.until.iter().all(|(t, u)| step.checkpoint.next_offsets.get(t).copied().unwrap_or(0) >= *u)
                };
                if owned.replay.as_ref().is_some_and(caught_up) {
                    tracing::info!(partition, "replayed the step in flight at the last stop; timers run again");
                    owned.replay = None;
                }
            }
            let t = self.telemetry;
            t.metrics.observe(&step.observations, step.stats.score_changes, now, wall);
            t.counters.add(step.messages, &step.stats);
            self.dead_letters.add(&step.observations.dead_letters, done);
            t.history.note(step.observations.published);
            verdict = verdict.or(self.breaker.add(step.messages, step.stats.dead_lettered));
        }
        self.export_counts();
        Ok(verdict)
    }

    /// At least once, wall clock: how each step must be replayed (its tick,
    /// and the inputs it covers, or that a replay under way still has to).
    fn replay_markers(&self, steps: &[Planned]) -> Vec<OutputRecord> {
        steps
            .iter()
            .map(|s| {
                let mut until = s.step.checkpoint.next_offsets.clone();
                if let Some(r) = self.owned.get(&s.partition).and_then(|o| o.replay.as_ref()) {
                    for (topic, offset) in &r.until {
                        let at = until.entry(topic.clone()).or_insert(*offset);
                        *at = (*at).max(*offset);
                    }
                }
                let mut marker = OutputRecord::replay_marker(s.partition, &Replay { tick: s.tick, until });
                if let Some(epoch) = self.owned.get(&s.partition).and_then(|o| o.epoch) {
                    marker.headers.push((headers::CHANGELOG_EPOCH, epoch.to_string().into_bytes()));
                }
                marker
            })
            .collect()
    }

    /// Exactly once: the steps' records and every owned partition's input
    /// offsets in one transaction, aborted if anything fails.
    fn transaction(&self, ports: &mut Ports<'_>, steps: &[Planned]) -> Result<Acked, RunError> {
        let timeout = self.settings.delivery_timeout;
        let Some(group) = ports.source.group() else {
            return Err(RunError::Source(PortError::Retriable("not a member of the consumer group".into())));
        };
        let stepped: BTreeMap<_, _> = steps.iter().map(|s| (s.partition, &s.step.checkpoint.next_offsets)).collect();
        let offsets = offsets_of(
            self.owned
                .iter()
                .filter(|(_, o)| o.active)
                .map(|(p, o)| (*p, stepped.get(p).copied().unwrap_or(&o.next_offsets))),
        );
        let sink = &mut *ports.sink;
        let result = (|| {
            sink.begin()?;
            for s in steps {
                sink.send(&s.step.outputs)?;
            }
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
        result.map_err(|e| {
            if let Err(abort) = sink.abort(timeout) {
                tracing::warn!(error = %abort, "aborting the failed transaction failed too");
            }
            RunError::Sink(e)
        })
    }
}

/// Input offsets of partitions, as the group records them.
fn offsets_of<'o>(
    partitions: impl Iterator<Item = (leadscore_store::Partition, &'o BTreeMap<String, i64>)>,
) -> Vec<TopicOffset> {
    partitions
        .flat_map(|(partition, offsets)| {
            offsets.iter().map(move |(topic, next)| TopicOffset { topic: topic.clone(), partition, next: *next })
        })
        .collect()
}
