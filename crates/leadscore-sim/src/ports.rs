//! The runtime's ports on the simulated world: a consumer-group member, a
//! producer (idempotent, or transactional with its epoch), a changelog reader,
//! the clock, and the local store. Every call is one turn of the scheduler,
//! and the faults it decided (a crash, a failed delivery) happen inside them.

use crate::broker::Record;
use crate::group::Notice;
use crate::scenario::partition_of;
use crate::world::{Caller, Crash, World};
use leadscore_core::{LeadId, Millis};
use leadscore_pipeline::messages::headers;
use leadscore_pipeline::ports::{
    Acked, Changelog, ChangelogRecord, Clock, GroupMetadata, PortError, Sink, Source, SourceEvent, SourceHealth,
    TopicOffset,
};
use leadscore_pipeline::{ChangelogKind, InputMessage, OutputRecord, OutputTopic, Position, Topics};
use leadscore_store::{Checkpoint, Op, Partition, StateStore, StoreError, WriteBatch};
use std::sync::Arc;
use std::time::Duration;

/// The simulated clock: one simulated millisecond is `scale` milliseconds of
/// event time, from `base`.
#[derive(Debug, Clone, Copy)]
pub struct SimClock<'s> {
    pub sim: &'s crate::world::Sim,
    pub base: Millis,
    pub scale: Millis,
}

impl Clock for SimClock<'_> {
    fn now(&self) -> Millis {
        self.base + self.sim.lock().now * self.scale
    }

    fn wall(&self) -> Millis {
        self.now()
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.sim.lock().now.max(0) as u64)
    }
}

/// A consumer-group member.
pub struct SimSource<'s> {
    pub caller: Caller<'s>,
    pub inputs: Vec<String>,
}

impl SimSource<'_> {
    fn notices(&self, w: &mut World, out: &mut Vec<SourceEvent>) {
        let slot = self.caller.slot;
        let member = match w.slots[slot].member {
            Some(m) => m,
            None => {
                let m = w.group.join(w.now);
                w.slots[slot].member = Some(m);
                w.note(format!("slot {slot} joins as member {m}"));
                m
            }
        };
        let now = w.now;
        for notice in w.group.poll(member, now) {
            let s = &mut w.slots[slot];
            match notice {
                Notice::Revoked(ps) => {
                    let line = format!("slot {slot} gives up {ps:?} (member {member})");
                    for p in &ps {
                        s.owned.remove(p);
                        s.paused.remove(p);
                        s.positions.retain(|(_, q), _| q != p);
                    }
                    if !ps.is_empty() {
                        out.push(SourceEvent::Revoked(ps));
                    }
                    w.note(line);
                }
                Notice::Gone(ps) => {
                    // Removed from the group: whatever it had is lost; it joins again.
                    let mut lost: Vec<u32> = std::mem::take(&mut s.owned).into_iter().chain(ps).collect();
                    lost.sort_unstable();
                    lost.dedup();
                    s.paused.clear();
                    s.positions.clear();
                    if !lost.is_empty() {
                        out.push(SourceEvent::Revoked(lost));
                    }
                    let m = w.group.join(now);
                    w.slots[slot].member = Some(m);
                    w.note(format!("slot {slot} was removed from the group; joins again as member {m}"));
                }
                Notice::Assigned(ps) => {
                    s.generation = w.group.generation;
                    for p in &ps {
                        s.owned.insert(*p);
                        s.paused.insert(*p);
                        for topic in &self.inputs {
                            let committed = w.group.committed.get(&(topic.clone(), *p)).copied().unwrap_or(0);
                            s.positions.insert((topic.clone(), *p), committed);
                        }
                    }
                    let generation = s.generation;
                    w.note(format!("slot {slot} assigned {ps:?} (generation {generation})"));
                    out.push(SourceEvent::Assigned(ps));
                }
            }
        }
    }
}

impl Source for SimSource<'_> {
    fn poll(&mut self, timeout: Duration, max: usize, out: &mut Vec<SourceEvent>) -> Result<(), PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            if w.slots[slot].stop {
                return Err(PortError::Fatal("stopped by the simulation".into()));
            }
            if w.slots[slot].crash.is_some() {
                return Ok(());
            }
            // A rebalance may be noticed before or after the messages the
            // client had already fetched for the old assignment.
            let notices_first = w.rng.chance(0.5);
            if crate::world::tracing() {
                w.note(format!("slot {slot} polls"));
            }
            if notices_first {
                self.notices(w, out);
            }
            // Fetch: random pieces of the fetchable partitions, interleaved.
            let fetchable: Vec<(String, u32)> = w.slots[slot]
                .positions
                .iter()
                .filter(|((t, p), at)| {
                    !w.slots[slot].paused.contains(p) && w.broker.log(t, *p).is_some_and(|l| **at < l.end())
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut taken = 0;
            if !fetchable.is_empty() {
                let rounds = 1 + w.rng.below(4);
                for _ in 0..rounds {
                    let (topic, p) = w.rng.pick(&fetchable).clone();
                    let n = 1 + w.rng.below(6);
                    for _ in 0..n {
                        if taken >= max {
                            break;
                        }
                        let at = w.slots[slot].positions[&(topic.clone(), p)];
                        let Some(log) = w.broker.log(&topic, p) else { break };
                        if at >= log.end() {
                            break;
                        }
                        let r = &log.records[at as usize];
                        if log.visible(at, true) {
                            out.push(SourceEvent::Message(InputMessage {
                                topic: topic.clone(),
                                partition: p,
                                offset: at,
                                key: Some(r.key.clone()),
                                payload: r.value.clone(),
                                timestamp: Some(r.timestamp),
                            }));
                            taken += 1;
                        }
                        w.slots[slot].positions.insert((topic.clone(), p), at + 1);
                    }
                }
            }
            if !notices_first {
                self.notices(w, out);
            }
            if taken == 0 {
                // Waiting for data takes time.
                w.now += (timeout.as_millis() as i64).min(10);
            }
            Ok(())
        })
    }

    fn position(&mut self, topic: &str, partition: Partition, next: Option<i64>) -> Position {
        // Read without a turn: the broker's logs only grow during other turns,
        // and the answer only matters for this thread's next steps.
        let w = self.caller.sim.lock();
        let end = w.broker.log(topic, partition).map_or(0, |l| l.readable_end(true));
        if next.unwrap_or(0) >= end {
            Position::CaughtUp
        } else {
            Position::Behind
        }
    }

    fn resume(&mut self, partition: Partition) -> Result<(), PortError> {
        self.caller.call(|w| {
            w.slots[self.caller.slot].paused.remove(&partition);
            Ok(())
        })
    }

    fn pause(&mut self, partition: Partition) -> Result<(), PortError> {
        self.caller.call(|w| {
            w.slots[self.caller.slot].paused.insert(partition);
            Ok(())
        })
    }

    fn commit(&mut self, offsets: &[TopicOffset]) -> Result<(), PortError> {
        self.caller.call(|w| {
            let s = &w.slots[self.caller.slot];
            if s.member.is_some_and(|m| w.group.valid(m, s.generation)) {
                w.group.commit(offsets.iter().map(|o| (o.topic.clone(), o.partition, o.next)));
            }
            Ok(())
        })
    }

    fn group(&self) -> Option<GroupMetadata> {
        let w = self.caller.sim.lock();
        let s = &w.slots[self.caller.slot];
        let member = s.member?;
        Some(GroupMetadata { generation: s.generation, token: Some(Arc::new(member)) })
    }

    fn health(&mut self) -> SourceHealth {
        SourceHealth::default()
    }
}

/// A producer: idempotent, or transactional with `transactional_id`.
pub struct SimSink<'s> {
    pub caller: Caller<'s>,
    pub topics: Topics,
    pub transactional_id: Option<String>,
}

impl<'s> SimSink<'s> {
    /// Initialises the transactional id (fencing an older producer of it).
    pub fn new(caller: Caller<'s>, topics: Topics, transactional_id: Option<String>) -> Result<Self, PortError> {
        if let Some(id) = &transactional_id {
            caller.call(|w| {
                let now = w.wall();
                w.broker.init_transactions(id, now);
                w.slots[caller.slot].epoch = w.broker.epoch(id);
                Ok(())
            })?;
        }
        Ok(SimSink { caller, topics, transactional_id })
    }

    fn txn(&self, w: &World) -> Option<(String, u32)> {
        let id = self.transactional_id.clone()?;
        Some((id, w.slots[self.caller.slot].epoch.unwrap_or(0)))
    }
}

fn fenced(e: crate::broker::TxnError) -> PortError {
    match e {
        crate::broker::TxnError::Fenced => PortError::Fenced("a newer producer has this transactional id".into()),
        crate::broker::TxnError::NotOpen => PortError::Retriable("no transaction is open".into()),
    }
}

impl Sink for SimSink<'_> {
    fn send(&mut self, records: &[OutputRecord]) -> Result<(), PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            let txn = self.txn(w);
            if let Some((id, epoch)) = &txn {
                w.broker.check(id, *epoch).map_err(fenced)?;
            }
            // A crash now delivers a random prefix of the records.
            let delivered = if w.slots[slot].crash.is_some() {
                w.rng.below(records.len() as u64 + 1) as usize
            } else {
                records.len()
            };
            for r in &records[..delivered] {
                // The producer keeps each partition gapless: after a record
                // fails, nothing it sends later lands (it stops with a fatal
                // error until it is created again).
                if txn.is_none() && (w.slots[slot].failed || w.rng.chance(w.faults.delivery_failure)) {
                    w.slots[slot].failed = true;
                    continue;
                }
                let topic = self.topics.name(r.topic).to_string();
                let key = r.key.clone().unwrap_or_default();
                let partition = r.partition.unwrap_or_else(|| partition_of(&key, w.partitions));
                let record = Record {
                    key,
                    value: r.value.clone(),
                    headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                    timestamp: w.wall(),
                    txn: None,
                    control: None,
                    compacted: false,
                };
                let offset = w.broker.append(&topic, partition, record, txn.as_ref().map(|(id, _)| id.as_str()));
                if r.topic == OutputTopic::Changelog && r.is_checkpoint_marker() {
                    w.slots[slot].markers.insert(partition, offset);
                }
                w.slots[slot].unacked += 1;
            }
            Ok(())
        })
    }

    fn flush(&mut self, _timeout: Duration) -> Result<Acked, PortError> {
        self.caller.call(|w| {
            let s = &mut w.slots[self.caller.slot];
            let markers = std::mem::take(&mut s.markers);
            if std::mem::take(&mut s.failed) {
                return Err(PortError::Retriable("some output records were not delivered".into()));
            }
            s.unacked = 0;
            Ok(Acked { markers })
        })
    }

    fn begin(&mut self) -> Result<(), PortError> {
        self.caller.call(|w| {
            let (id, epoch) = self.txn(w).ok_or_else(|| PortError::Fatal("not transactional".into()))?;
            let now = w.wall();
            w.broker.begin(&id, epoch, now).map_err(fenced)?;
            let s = &mut w.slots[self.caller.slot];
            s.in_transaction = true;
            s.markers.clear();
            Ok(())
        })
    }

    fn send_offsets(
        &mut self,
        offsets: &[TopicOffset],
        group: &GroupMetadata,
        _timeout: Duration,
    ) -> Result<(), PortError> {
        self.caller.call(|w| {
            let (id, epoch) = self.txn(w).ok_or_else(|| PortError::Fatal("not transactional".into()))?;
            let member = group.token.as_ref().and_then(|t| t.downcast_ref::<u64>()).copied();
            if !member.is_some_and(|m| w.group.valid(m, group.generation)) {
                // The group coordinator refuses a member of an older generation.
                return Err(PortError::Retriable(format!(
                    "the group coordinator refused the offsets of generation {} (now {})",
                    group.generation, w.group.generation
                )));
            }
            let offsets = offsets.iter().map(|o| (o.topic.clone(), o.partition, o.next)).collect();
            w.broker.add_offsets(&id, epoch, offsets).map_err(fenced)
        })
    }

    fn commit(&mut self, _timeout: Duration) -> Result<Acked, PortError> {
        self.caller.call(|w| {
            let (id, epoch) = self.txn(w).ok_or_else(|| PortError::Fatal("not transactional".into()))?;
            let slot = self.caller.slot;
            // A crash may come just before or just after the commit.
            let crash_first = w.slots[slot].crash.is_some() && w.rng.chance(0.5);
            if crash_first || w.rng.chance(w.faults.commit_failure) {
                return Err(PortError::Retriable("the transaction could not be committed".into()));
            }
            let now = w.wall();
            let offsets = w.broker.finish(&id, epoch, true, now).map_err(fenced)?;
            w.group.commit(offsets);
            let s = &mut w.slots[slot];
            s.in_transaction = false;
            s.unacked = 0;
            Ok(Acked { markers: std::mem::take(&mut s.markers) })
        })
    }

    fn abort(&mut self, _timeout: Duration) -> Result<(), PortError> {
        self.caller.call(|w| {
            let (id, epoch) = self.txn(w).ok_or_else(|| PortError::Fatal("not transactional".into()))?;
            let now = w.wall();
            w.broker.finish(&id, epoch, false, now).map_err(fenced)?;
            let s = &mut w.slots[self.caller.slot];
            s.in_transaction = false;
            s.unacked = 0;
            s.markers.clear();
            Ok(())
        })
    }
}

/// Simulated milliseconds to read one changelog record, and the most records
/// one read returns (a fetch's size limit): slow, so that a restore of a few
/// hundred records outlasts a session unless the group is polled meanwhile.
const READ_COST: i64 = 20;
const READ_MAX: usize = 10;

/// A read_committed reader of the changelog.
pub struct SimChangelog<'s> {
    pub caller: Caller<'s>,
    pub topic: String,
}

impl Changelog for SimChangelog<'_> {
    fn watermarks(&mut self, partition: Partition) -> Result<(i64, i64), PortError> {
        self.caller.call(|w| Ok((0, w.broker.log(&self.topic, partition).map_or(0, |l| l.end()))))
    }

    fn start(&mut self, partition: Partition, from: i64) -> Result<(), PortError> {
        self.caller.call(|w| {
            w.slots[self.caller.slot].reader = Some((partition, from));
            Ok(())
        })
    }

    fn read(&mut self, timeout: Duration, max: usize, out: &mut Vec<ChangelogRecord>) -> Result<(), PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            let Some((p, mut at)) = w.slots[slot].reader else { return Ok(()) };
            let Some(log) = w.broker.log(&self.topic, p) else { return Ok(()) };
            let end = log.readable_end(true);
            let n = 1 + w.rng.below(max.clamp(1, READ_MAX) as u64) as usize;
            let mut taken = 0;
            while at < end && taken < n {
                if log.visible(at, true) {
                    let r = &log.records[at as usize];
                    let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                    out.push(ChangelogRecord {
                        offset: at,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        timestamp: Some(r.timestamp),
                        kind: ChangelogKind::of(&r.key, header(headers::CHANGELOG_RECORD).as_deref()),
                        epoch: header(headers::CHANGELOG_EPOCH)
                            .and_then(|v| String::from_utf8(v).ok())
                            .and_then(|s| s.parse().ok()),
                    });
                    taken += 1;
                }
                at += 1;
            }
            if taken == 0 {
                w.now += (timeout.as_millis() as i64).min(10);
            }
            // Reading takes time: a large restore outlasts a session unless
            // the runtime keeps polling its group meanwhile.
            w.now += taken as i64 * READ_COST;
            w.slots[slot].reader = Some((p, at));
            Ok(())
        })
    }

    fn position(&mut self) -> Option<i64> {
        let w = self.caller.sim.lock();
        w.slots[self.caller.slot].reader.map(|(_, at)| at)
    }

    fn stop(&mut self) {
        let _ = self.caller.call(|w| {
            w.slots[self.caller.slot].reader = None;
            Ok(())
        });
    }
}

/// The instance's local store.
pub struct SimStoreHandle<'s> {
    pub caller: Caller<'s>,
}

fn store_error(e: PortError) -> StoreError {
    StoreError(e.to_string())
}

impl SimStoreHandle<'_> {
    /// The online invariant: a checkpoint that moves an input offset forward
    /// is written only after every record sent is acknowledged (or its
    /// transaction committed).
    fn check_commit_order(w: &mut World, slot: usize, batch: &WriteBatch) {
        for op in &batch.ops {
            let Op::Checkpoint { partition, checkpoint } = op else { continue };
            let stored = w.slots[slot].store.current.checkpoint(*partition).ok().flatten().unwrap_or_default();
            let advances =
                checkpoint.next_offsets.iter().any(|(t, o)| stored.next_offsets.get(t).is_none_or(|s| o > s));
            let s = &w.slots[slot];
            if advances && checkpoint.replay.is_none() && (s.unacked > 0 || s.failed || s.in_transaction) {
                let what = format!(
                    "slot {slot} checkpointed partition {partition} to {:?} with {} records unacknowledged{}",
                    checkpoint.next_offsets,
                    s.unacked,
                    if s.in_transaction { " in an open transaction" } else { "" }
                );
                w.violations.push(what);
            }
        }
    }
}

impl StateStore for SimStoreHandle<'_> {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.caller
            .call(|w| Ok(w.slots[self.caller.slot].store.current.get_states(partition, leads)))
            .map_err(store_error)?
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        self.caller
            .call(|w| Ok(w.slots[self.caller.slot].store.current.due_timers(partition, after, up_to, limit)))
            .map_err(store_error)?
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        self.caller.call(|w| Ok(w.slots[self.caller.slot].store.current.checkpoint(partition))).map_err(store_error)?
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.caller
            .call(|w| {
                let slot = self.caller.slot;
                // A crash may come before or after the write.
                if w.slots[slot].crash.is_some() && w.rng.chance(0.5) {
                    return Ok(());
                }
                Self::check_commit_order(w, slot, batch);
                if crate::world::tracing() {
                    for op in &batch.ops {
                        let line = match op {
                            Op::Checkpoint { partition, checkpoint: c } => format!(
                                "slot {slot} store: partition {partition} checkpoint {:?} changelog {:?} replay {:?}",
                                c.next_offsets, c.changelog_next_offset, c.replay
                            ),
                            Op::PutState { lead, .. } => format!("slot {slot} store: put {lead}"),
                            Op::DeleteState { lead, .. } => format!("slot {slot} store: delete {lead}"),
                            Op::MoveTimer { .. } => continue,
                        };
                        w.note(line);
                    }
                }
                let sync = w.faults.sync_writes || w.rng.chance(w.faults.os_sync);
                w.slots[slot].store.write(batch, sync);
                Ok(())
            })
            .map_err(store_error)
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        self.caller
            .call(|w| {
                let sync = w.faults.sync_writes;
                w.slots[self.caller.slot].store.drop_partition(partition, sync);
                Ok(())
            })
            .map_err(store_error)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.caller.call(|w| Ok(w.slots[self.caller.slot].store.current.partitions())).map_err(store_error)?
    }
}

/// A crash, weighted: most are process kills.
pub fn crash_kind(w: &mut World) -> Crash {
    if w.rng.chance(0.3) {
        Crash::Machine
    } else {
        Crash::Process
    }
}
