//! Writes that are done but not yet durable, in front of the durable store.
//!
//! The runtime commits its store once per commit interval, not once per poll
//! batch: every batch's writes are staged here ([`StateStore::write`]), the
//! next batches read through them (a lead touched again reads its newest
//! state, a moved timer is found where it is now), and once the batches'
//! outputs are acknowledged [`Overlay::take`] turns everything staged into one
//! [`WriteBatch`] for the durable store: each lead's latest state, each timer's
//! one move from where the durable store has it to where it is now, each
//! partition's latest checkpoint. A lead written in ten batches of an interval
//! is written to RocksDB once.
//!
//! A commit can also be pipelined: [`Overlay::seal`] sets what is staged aside
//! as a sealed layer (still read, below the writes staged after it) while its
//! outputs are in flight and while [`Overlay::sealed_layer`] is written to the
//! durable store (by a [`crate::writer::StoreWriter`], on another thread);
//! [`Overlay::forget_sealed`] drops it once it is there. Reads go staged, then
//! sealed, then durable (the `layer` module).
//!
//! Dropping a partition goes straight through: the runtime only drops
//! partitions it no longer owns, after committing what it staged.

mod layer;

use crate::{Checkpoint, LeadId, Op, OpRef, Partition, StateStore, StoreError, WriteBatch};
use layer::Layer;
use leadscore_core::Millis;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A timer's pending move: where the durable store has it, where it is now.
#[derive(Debug, Clone, Copy)]
struct Move {
    durable: Option<Millis>,
    now: Option<Millis>,
}

/// Maps by partition, then by lead (looked up by `&str`, without allocating).
#[derive(Debug, Default, Clone)]
struct Staged {
    /// `None`: erased.
    states: HashMap<Partition, HashMap<LeadId, Option<Vec<u8>>>>,
    /// Every lead whose timer moved, from where the durable store has it
    /// (hidden from scans) to where it is now.
    moves: HashMap<Partition, HashMap<LeadId, Move>>,
    /// Timers where they are now, for scans.
    timers: BTreeMap<Partition, BTreeSet<(Millis, LeadId)>>,
    checkpoints: BTreeMap<Partition, Checkpoint>,
    /// Bytes of staged state values and keys, for the memory budget.
    bytes: usize,
}

/// See the module documentation.
pub struct Overlay<'s> {
    durable: &'s dyn StateStore,
    staged: Mutex<Staged>,
    /// A sealed commit's writes, until forgotten (empty if none); shared
    /// with a [`crate::writer::StoreWriter`] writing it.
    sealed: Mutex<Arc<Staged>>,
}

/// A sealed layer, for a [`crate::writer::StoreWriter`] (it stays readable in
/// the overlay until [`Overlay::forget_sealed`]).
#[derive(Clone)]
pub struct SealedLayer(Arc<Staged>);

impl SealedLayer {
    /// The layer as one batch for the durable store (see [`Overlay::take`]).
    pub fn to_batch(&self) -> WriteBatch {
        self.0.to_batch()
    }

    /// Its checkpoints.
    pub fn checkpoints(&self) -> impl Iterator<Item = (Partition, &Checkpoint)> {
        self.0.checkpoints.iter().map(|(p, c)| (*p, c))
    }

    /// Its batch borrowed ([`SealedLayer::to_batch`]), with `checkpoints` in
    /// place of its own.
    pub fn refs<'a>(
        &'a self,
        checkpoints: impl Iterator<Item = (Partition, &'a Checkpoint)> + 'a,
    ) -> impl Iterator<Item = OpRef<'a>> + 'a {
        self.0.refs(checkpoints)
    }

    /// Roughly the bytes of its states' keys and values.
    pub fn bytes(&self) -> usize {
        self.0.bytes
    }
}

impl<'s> Overlay<'s> {
    pub fn new(durable: &'s dyn StateStore) -> Overlay<'s> {
        Overlay { durable, staged: Mutex::new(Staged::default()), sealed: Mutex::new(Arc::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staged writes are plain maps, consistent after any panic mid-call.
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sealed(&self) -> MutexGuard<'_, Arc<Staged>> {
        self.sealed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads through the layers: staged, then sealed, then durable.
    fn read<T>(&self, f: impl FnOnce(&Layer<'_>) -> T) -> T {
        let staged = self.lock();
        let sealed = self.lock_sealed().clone();
        let below = Layer { staged: &sealed, below: self.durable };
        f(&Layer { staged: &staged, below: &below })
    }

    /// Whether nothing is staged since the last seal (or take).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether there is a sealed layer (not yet forgotten).
    pub fn is_sealed(&self) -> bool {
        !self.lock_sealed().is_empty()
    }

    /// Roughly how much memory the states staged since the last seal take
    /// (a sealed layer, while there is one, takes up to as much again).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Stages the batch, taking its values (see the module documentation);
    /// [`StateStore::write`] does the same with copies.
    pub fn stage(&self, batch: WriteBatch) {
        let mut staged = self.lock();
        for op in batch.ops {
            staged.stage(op);
        }
    }

    /// Everything staged, as one batch for the durable store; the overlay is
    /// empty afterwards. Checkpoints come last, after the states they cover.
    ///
    /// Only with no sealed layer: staged timer moves start from where the
    /// layers below have them, so the sealed layer is written first.
    pub fn take(&self) -> WriteBatch {
        assert!(!self.is_sealed(), "Overlay::take with a sealed layer not yet forgotten");
        std::mem::take(&mut *self.lock()).into_batch()
    }

    /// Sets everything staged aside as the sealed layer, still read below
    /// what is staged next. Only with no sealed layer.
    pub fn seal(&self) {
        let mut sealed = self.lock_sealed();
        assert!(sealed.is_empty(), "Overlay::seal with a sealed layer not yet forgotten");
        *sealed = Arc::new(std::mem::take(&mut *self.lock()));
    }

    /// The sealed layer, shared, for a writer on another thread.
    pub fn sealed_layer(&self) -> SealedLayer {
        SealedLayer(self.lock_sealed().clone())
    }

    /// The sealed layer is in the durable store (written from
    /// [`Overlay::sealed_layer`]): it is no longer read. Returns it, for the
    /// caller to free where it costs least
    /// ([`crate::writer::StoreWriter::dispose`]).
    pub fn forget_sealed(&self) -> SealedLayer {
        SealedLayer(std::mem::take(&mut *self.lock_sealed()))
    }

    /// A copy of the sealed layer as one batch (the reference the tests
    /// hold the writer's batch and the changelog to).
    #[cfg(test)]
    pub fn sealed_batch(&self) -> WriteBatch {
        self.lock_sealed().to_batch()
    }

    /// The sealed layer's changelog, read as it is sent: only the order of
    /// the leads is settled now, and each state is copied when its turn
    /// comes (a copy of the whole layer took 7-15 ms at the seal).
    pub fn sealed_changelog(&self) -> SealedChangelog {
        let layer = self.lock_sealed().clone();
        let states = layer.states.iter().flat_map(|(p, leads)| leads.keys().map(move |l| (*p, l.clone(), ())));
        let leads = sorted(states).into_iter().map(|(p, l, ())| (p, l)).collect();
        let checkpoints = layer.checkpoints.keys().copied().collect();
        SealedChangelog { layer, leads, checkpoints, next: 0 }
    }
}

/// What a sealed layer puts in the changelog, as store operations: each
/// changed lead's state (a deletion for an erased one) in partition and lead
/// order, then each partition's checkpoint; the same as the layer's batch
/// without its timer moves. An iterator, so that it can be sent in slices.
#[derive(Default)]
pub struct SealedChangelog {
    layer: Arc<Staged>,
    leads: Vec<(Partition, LeadId)>,
    checkpoints: Vec<Partition>,
    next: usize,
}

impl Iterator for SealedChangelog {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let i = self.next;
        self.next += 1;
        if let Some((partition, lead)) = self.leads.get(i) {
            let value = self.layer.states.get(partition).and_then(|leads| leads.get(lead)).cloned().flatten();
            let (partition, lead) = (*partition, lead.clone());
            return Some(match value {
                Some(value) => Op::PutState { partition, lead, value },
                None => Op::DeleteState { partition, lead },
            });
        }
        let partition = *self.checkpoints.get(i - self.leads.len())?;
        let checkpoint = Box::new(self.layer.checkpoints.get(&partition)?.clone());
        Some(Op::Checkpoint { partition, checkpoint })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.leads.len() + self.checkpoints.len()).saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for SealedChangelog {}

/// The entries of per-partition maps, in partition and lead order: the
/// batch (and the changelog made of it) is the same on every run, whatever
/// the hash maps' order, which keeps simulation seeds replayable.
fn sorted<L: Ord, V>(by: impl Iterator<Item = (Partition, L, V)>) -> Vec<(Partition, L, V)> {
    let mut all: Vec<(Partition, L, V)> = by.collect();
    all.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    all
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.states.values().all(HashMap::is_empty)
            && self.moves.values().all(HashMap::is_empty)
            && self.checkpoints.is_empty()
    }

    /// The layer as one batch (see [`Overlay::take`]).
    fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        let states = self.states.into_iter().flat_map(|(p, leads)| leads.into_iter().map(move |(l, v)| (p, l, v)));
        for (partition, lead, value) in sorted(states) {
            match value {
                Some(value) => batch.put_state(partition, lead, value),
                None => batch.delete_state(partition, lead),
            }
        }
        let moves = self.moves.into_iter().flat_map(|(p, leads)| leads.into_iter().map(move |(l, m)| (p, l, m)));
        for (partition, lead, m) in sorted(moves) {
            batch.move_timer(partition, lead, m.durable, m.now);
        }
        for (partition, checkpoint) in self.checkpoints {
            batch.checkpoint(partition, checkpoint);
        }
        batch
    }

    /// The same ops as [`Staged::into_batch`], borrowed, with `checkpoints`
    /// in place of the layer's own.
    fn refs<'a>(
        &'a self,
        checkpoints: impl Iterator<Item = (Partition, &'a Checkpoint)> + 'a,
    ) -> impl Iterator<Item = OpRef<'a>> + 'a {
        let states = self.states.iter().flat_map(|(p, leads)| leads.iter().map(move |(l, v)| (*p, l, v)));
        let states = sorted(states).into_iter().map(|(partition, lead, value)| match value {
            Some(value) => OpRef::PutState { partition, lead: lead.as_str(), value },
            None => OpRef::DeleteState { partition, lead: lead.as_str() },
        });
        let moves = self.moves.iter().flat_map(|(p, leads)| leads.iter().map(move |(l, m)| (*p, l, m)));
        let moves = sorted(moves).into_iter().filter(|(_, _, m)| m.durable != m.now).map(|(partition, lead, m)| {
            OpRef::MoveTimer { partition, lead: lead.as_str(), old: m.durable, new: m.now }
        });
        let checkpoints = checkpoints.map(|(partition, checkpoint)| OpRef::Checkpoint { partition, checkpoint });
        states.chain(moves).chain(checkpoints)
    }

    /// The same batch as [`Staged::into_batch`], copied.
    fn to_batch(&self) -> WriteBatch {
        WriteBatch { ops: self.refs(self.checkpoints.iter().map(|(p, c)| (*p, c))).map(OpRef::to_op).collect() }
    }

    fn stage(&mut self, op: Op) {
        match op {
            Op::PutState { partition, lead, value } => {
                let key = lead.as_str().len();
                self.bytes += value.len() + key;
                if let Some(Some(old)) = self.states.entry(partition).or_default().insert(lead, Some(value)) {
                    self.bytes -= old.len() + key;
                }
            }
            Op::DeleteState { partition, lead } => {
                let key = lead.as_str().len();
                if let Some(Some(old)) = self.states.entry(partition).or_default().insert(lead, None) {
                    self.bytes -= old.len() + key;
                }
            }
            Op::MoveTimer { partition, lead, old, new } => {
                let timers = self.timers.entry(partition).or_default();
                let moves = self.moves.entry(partition).or_default();
                match moves.get_mut(lead.as_str()) {
                    Some(m) => {
                        if let Some(at) = m.now {
                            timers.remove(&(at, lead.clone()));
                        }
                        m.now = new;
                    }
                    None => {
                        moves.insert(lead.clone(), Move { durable: old, now: new });
                    }
                }
                if let Some(new) = new {
                    timers.insert((new, lead));
                }
            }
            Op::Checkpoint { partition, checkpoint } => {
                self.checkpoints.insert(partition, *checkpoint);
            }
        }
    }

    fn drop_partition(&mut self, partition: Partition) {
        self.states.remove(&partition);
        self.moves.remove(&partition);
        self.timers.remove(&partition);
        self.checkpoints.remove(&partition);
        self.bytes = self
            .states
            .values()
            .flat_map(|leads| leads.iter())
            .map(|(l, v)| v.as_ref().map_or(0, |v| v.len() + l.as_str().len()))
            .sum();
    }
}

impl StateStore for Overlay<'_> {
    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(|top| top.get_states(partition, leads))
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        self.read(|top| top.lead_ids(partition, after, limit))
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        self.read(|top| top.due_timers(partition, after, up_to, limit))
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        self.read(|top| top.checkpoint(partition))
    }

    /// Stages the batch (see the module documentation).
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.stage(batch.clone());
        Ok(())
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        self.lock().drop_partition(partition);
        Arc::make_mut(&mut self.lock_sealed()).drop_partition(partition);
        self.durable.drop_partition(partition)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.read(|top| top.partitions())
    }
}

#[cfg(test)]
mod tests;
