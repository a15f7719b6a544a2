//! Decoded lead states kept between steps, so that a lead touched by many
//! steps is decoded once and encoded once instead of at every step: a
//! write-back cache in front of the store, used by the offline scorer.
//!
//! A step takes the states it loads out of the cache (no decode) and puts
//! every state it ends with back (no encode); the store still gets each
//! step's timer moves, deletions and checkpoint, so its timer index stays
//! exact. Cached states newer than the store's are written back by
//! [`StateCache::write_back`], which the owner calls when the cache is over
//! its capacity and before it reads the store directly.

use leadscore_core::{LeadId, LeadState, Model};
use leadscore_store::{encode_state, Partition, WriteBatch};
use rustc_hash::FxHashMap;
use std::sync::Mutex;

/// One partition's cached states, by lead: looked up by `&str` (no key to
/// build per lookup), with a hash that is cheap on short ids. The map is not
/// exposed to input it could be attacked with: the offline scorer reads a
/// file its user chose.
type Leads = FxHashMap<LeadId, Entry>;

/// One cached state, and whether the store lags behind it.
struct Entry {
    state: LeadState,
    dirty: bool,
}

/// See the module documentation.
pub struct StateCache {
    entries: Mutex<FxHashMap<Partition, Leads>>,
    capacity: usize,
}

impl StateCache {
    /// A cache that asks to be written back beyond `capacity` states.
    pub fn new(capacity: usize) -> StateCache {
        StateCache { entries: Mutex::new(FxHashMap::default()), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<Partition, Leads>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a lead's state out, if cached; with whether the store lags.
    pub(super) fn take(&self, partition: Partition, lead: &str) -> Option<(LeadState, bool)> {
        let entry = self.lock().get_mut(&partition)?.remove(lead)?;
        Some((entry.state, entry.dirty))
    }

    pub(super) fn put(&self, partition: Partition, lead: LeadId, state: LeadState, dirty: bool) {
        self.lock().entry(partition).or_default().insert(lead, Entry { state, dirty });
    }

    /// Whether it holds more than its capacity.
    pub fn full(&self) -> bool {
        // A few partitions at most (the offline scorer has one).
        self.lock().values().map(|leads| leads.len()).sum::<usize>() > self.capacity
    }

    /// Empties the cache into `batch`: the states the store lags behind on,
    /// encoded (in lead order, for reproducible batches).
    pub fn write_back(&self, model: &Model, batch: &mut WriteBatch) {
        let mut cached = self.lock();
        let mut dirty: Vec<((Partition, LeadId), LeadState)> = cached
            .drain()
            .flat_map(|(p, leads)| leads.into_iter().filter(|(_, e)| e.dirty).map(move |(l, e)| ((p, l), e.state)))
            .collect();
        drop(cached);
        dirty.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((partition, lead), state) in dirty {
            let mut value = Vec::with_capacity(256);
            encode_state(&state, model, &mut value);
            batch.put_state(partition, lead, value);
        }
    }
}
