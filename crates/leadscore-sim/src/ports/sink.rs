//! The simulated producer: idempotent sends, or transactions with an epoch
//! that the broker fences; deliveries fail or are acknowledged late as the
//! scheduler decides. Records sent without a transaction stay in flight until
//! a flush or an await lands them, and an instance that dies leaves only
//! some of them, a prefix of each partition's.

use super::*;
use crate::world::InFlight;
use std::collections::BTreeMap;

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
                // A new producer has nothing open, even if the one before it
                // stopped with its transaction open (its abort refused: the
                // coordinator had already aborted it on timeout).
                w.slots[caller.slot].in_transaction = false;
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

impl SimSink<'_> {
    /// Sends records: with a transaction, onto the broker at once (its
    /// transaction hides them); without one, in flight (see
    /// [`crate::world::Slot::in_flight`]).
    fn queue(&self, w: &mut World, records: &[OutputRecord]) -> Result<(), PortError> {
        let slot = self.caller.slot;
        let txn = self.txn(w);
        if let Some((id, epoch)) = &txn {
            w.broker.check(id, *epoch).map_err(fenced)?;
        }
        // A crash now delivers a random prefix of a transaction's records
        // (those in flight land as the crash decides).
        let delivered = if txn.is_some() && w.slots[slot].crash.is_some() {
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
            let marker = r.topic == OutputTopic::Changelog && r.is_checkpoint_marker();
            match &txn {
                Some((id, _)) => {
                    let offset = w.broker.append(&topic, partition, record, Some(id.as_str()));
                    if marker {
                        w.slots[slot].markers.insert(partition, offset);
                    }
                }
                None => w.slots[slot].in_flight.push(InFlight { topic, partition, record, marker }),
            }
            w.slots[slot].unacked += 1;
        }
        Ok(())
    }
}

impl Sink for SimSink<'_> {
    fn send(&mut self, records: &[OutputRecord]) -> Result<(), PortError> {
        self.caller.call(|w| self.queue(w, records))
    }

    fn flush(&mut self, _timeout: Duration) -> Result<Acked, PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            w.land(slot, |_, _| true);
            let s = &mut w.slots[slot];
            let markers = std::mem::take(&mut s.markers);
            if std::mem::take(&mut s.failed) {
                return Err(PortError::Retriable("some output records were not delivered".into()));
            }
            s.unacked = 0;
            Ok(Acked { markers })
        })
    }

    /// Lands the awaited records and, in their partitions, what was sent
    /// before them; records of other partitions stay in flight, so that a
    /// crash may lose them while the awaited ones are on the broker.
    fn send_awaited(&mut self, records: &[OutputRecord], _timeout: Duration) -> Result<Acked, PortError> {
        self.caller.call(|w| {
            let slot = self.caller.slot;
            let before = w.slots[slot].in_flight.len();
            self.queue(w, records)?;
            if w.slots[slot].failed {
                return Err(PortError::Retriable("awaited records were not delivered".into()));
            }
            let mut last: BTreeMap<(String, u32), usize> = BTreeMap::new();
            for (i, f) in w.slots[slot].in_flight.iter().enumerate().skip(before) {
                last.insert((f.topic.clone(), f.partition), i);
            }
            w.land(slot, |i, f| last.get(&(f.topic.clone(), f.partition)).is_some_and(|l| i <= *l));
            Ok(Acked::default())
        })
    }

    /// The records before a mark are acknowledged late as often as not, so
    /// that a pipelined commit stays in flight over several iterations (and
    /// their crash points); once found delivered, as a flush.
    fn delivered(&mut self, _mark: Mark, wait: bool, timeout: Duration) -> Result<Option<Acked>, PortError> {
        if !wait && self.caller.call(|w| Ok(w.rng.chance(0.5)))? {
            return Ok(None);
        }
        self.flush(timeout).map(Some)
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
