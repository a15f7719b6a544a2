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
    Acked, Changelog, ChangelogRecord, Clock, GroupMetadata, Mark, PortError, Sink, Source, SourceEvent, SourceHealth,
    TopicOffset,
};
use leadscore_pipeline::{ChangelogKind, InputMessage, OutputRecord, OutputTopic, Position, Topics};
use leadscore_store::writer::{SealedWrite, StoreWriter};
use leadscore_store::{Checkpoint, Op, Partition, StateStore, StoreError, WriteBatch};
use std::sync::Arc;
use std::time::Duration;

mod changelog;
mod sink;
mod store;
pub use changelog::SimChangelog;
pub use sink::SimSink;
pub use store::{SimStoreHandle, SimWriter};

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

/// A crash, weighted: most are process kills.
pub fn crash_kind(w: &mut World) -> Crash {
    if w.rng.chance(0.3) {
        Crash::Machine
    } else {
        Crash::Process
    }
}
