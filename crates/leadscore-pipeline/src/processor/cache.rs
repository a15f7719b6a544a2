//! Decoded lead states kept between steps, so that a lead touched by many
//! steps is read and decoded once instead of at every step. Without a
//! changelog per step it is a write-back cache, a state encoded once when
//! flushed: the offline scorer's, and the runtime's at least once in event
//! time (flushed into the commit's staged writes at every commit,
//! [`StateCache::flush`]). With a changelog per step (wall clock, exactly
//! once) each step still encodes and stages the states it changed, and the
//! cache holds them even with those writes: it saves only the reads.
//!
//! The cache holds each partition's working set as a step leaves it: a step
//! takes the partition's whole map at its start and hands it back at its end,
//! so that a cached lead is neither moved nor hashed again to be used (per
//! event, that moving was a quarter of the offline scorer's time). The store
//! still gets each step's timer moves, deletions and checkpoint, so its timer
//! index stays exact. Cached states newer than the store's are written back
//! by [`StateCache::write_back`], which the owner calls when the cache is
//! over its capacity and before it reads the store directly.
//!
//! A step that fails does not hand its map back: its leads are dropped with
//! it (they may be half-changed), and the run that saw the error stops.

use super::leads::Leads;
use leadscore_core::{LeadId, LeadState, Model};
use leadscore_store::{encode_state, Partition, WriteBatch};
use std::collections::HashMap;
use std::sync::Mutex;

/// See the module documentation.
pub struct StateCache {
    partitions: Mutex<HashMap<Partition, Leads>>,
    capacity: usize,
}

fn memory_bytes(slot: &super::work::Slot) -> usize {
    slot.state.as_ref().map_or(0, LeadState::memory_bytes)
}

impl StateCache {
    /// A cache that asks to be written back beyond `capacity` states.
    pub fn new(capacity: usize) -> StateCache {
        StateCache { partitions: Mutex::new(HashMap::new()), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, Leads>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a partition's cached leads out (empty if none are cached). Every
    /// slot holds a state, and none is part of a step.
    pub(super) fn take(&self, partition: Partition) -> Leads {
        self.lock().remove(&partition).unwrap_or_default()
    }

    /// Hands a partition's leads back, as [`StateCache::take`] gives them.
    pub(super) fn put(&self, partition: Partition, leads: Leads) {
        debug_assert!(leads.iter().all(|s| s.state.is_some() && !s.in_step));
        self.lock().insert(partition, leads);
    }

    /// Whether it holds more than its capacity.
    pub fn full(&self) -> bool {
        // A few partitions at most (the offline scorer has one).
        self.lock().values().map(|leads| leads.len()).sum::<usize>() > self.capacity
    }

    /// How many states it holds.
    pub fn len(&self) -> usize {
        self.lock().values().map(|leads| leads.len()).sum()
    }

    /// Whether it holds no state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes into `batch` the states the store lags behind on (in
    /// partition and lead order, for reproducible batches) and keeps them,
    /// now even with the store. Then, if the states kept take more than
    /// `budget` bytes, drops those no step has loaded since the last flush
    /// and, if that is not enough, whole partitions' states (the highest
    /// partitions first) until they fit. Returns the states kept and the
    /// bytes they take.
    pub fn flush(&self, model: &Model, batch: &mut WriteBatch, budget: usize) -> (usize, usize) {
        let mut cached = self.lock();
        let mut partitions: Vec<Partition> = cached.keys().copied().collect();
        partitions.sort_unstable();
        let mut total = 0;
        for &partition in &partitions {
            let leads = cached.get_mut(&partition).expect("a listed partition");
            let mut lagging: Vec<&mut super::work::Slot> = leads.iter_mut().filter(|s| s.lagging).collect();
            lagging.sort_unstable_by(|a, b| a.lead.cmp(&b.lead));
            for slot in lagging {
                let state = slot.state.as_ref().expect("cached leads have a state");
                let mut value = Vec::with_capacity(256);
                encode_state(state, model, &mut value);
                batch.put_state(partition, slot.lead.clone(), value);
                slot.lagging = false;
            }
            total += leads.iter().map(memory_bytes).sum::<usize>();
        }
        if total > budget {
            for leads in cached.values_mut() {
                leads.retain(|s| {
                    if !s.used {
                        total -= memory_bytes(s);
                    }
                    s.used
                });
            }
        }
        while total > budget {
            let Some(partition) = partitions.pop() else { break };
            if let Some(leads) = cached.remove(&partition) {
                total -= leads.iter().map(memory_bytes).sum::<usize>();
            }
        }
        let mut kept = 0;
        for leads in cached.values_mut() {
            leads.iter_mut().for_each(|s| s.used = false);
            kept += leads.len();
        }
        (kept, total)
    }

    /// Drops the states of `partitions`, which must be even with the store
    /// (flushed since they last changed): they are no longer this owner's,
    /// or the store has just been restored under them.
    pub fn forget(&self, partitions: &[Partition]) {
        let mut cached = self.lock();
        for p in partitions {
            if let Some(leads) = cached.remove(p) {
                debug_assert!(leads.iter().all(|s| !s.lagging), "forgetting states not flushed");
            }
        }
    }

    /// Empties the cache into `batch`: the states the store lags behind on,
    /// encoded (in lead order, for reproducible batches).
    pub fn write_back(&self, model: &Model, batch: &mut WriteBatch) {
        let mut cached = self.lock();
        let mut lagging: Vec<((Partition, LeadId), LeadState)> = cached
            .drain()
            .flat_map(|(p, leads)| {
                leads.into_slots().filter(|s| s.lagging).filter_map(move |s| Some(((p, s.lead), s.state?)))
            })
            .collect();
        drop(cached);
        lagging.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((partition, lead), state) in lagging {
            let mut value = Vec::with_capacity(256);
            encode_state(&state, model, &mut value);
            batch.put_state(partition, lead, value);
        }
    }
}
