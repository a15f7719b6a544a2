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
//! Dropping a partition goes straight through: the runtime only drops
//! partitions it no longer owns, after committing what it staged.

use crate::{Checkpoint, LeadId, Op, Partition, StateStore, StoreError, WriteBatch};
use leadscore_core::Millis;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// A timer's pending move: where the durable store has it, where it is now.
#[derive(Debug, Clone, Copy)]
struct Move {
    durable: Option<Millis>,
    now: Option<Millis>,
}

/// Maps by partition, then by lead (looked up by `&str`, without allocating).
#[derive(Debug, Default)]
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
}

impl<'s> Overlay<'s> {
    pub fn new(durable: &'s dyn StateStore) -> Overlay<'s> {
        Overlay { durable, staged: Mutex::new(Staged::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        // Staged writes are plain maps, consistent after any panic mid-call.
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.states.values().all(HashMap::is_empty) && s.moves.values().all(HashMap::is_empty) && s.checkpoints.is_empty()
    }

    /// Roughly how much memory the staged states take.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The staged checkpoints.
    pub fn checkpoints(&self) -> BTreeMap<Partition, Checkpoint> {
        self.lock().checkpoints.clone()
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
    pub fn take(&self) -> WriteBatch {
        let staged = std::mem::take(&mut *self.lock());
        let mut batch = WriteBatch::default();
        // In partition and lead order, whatever the hash maps' order: the
        // batch (and the changelog made of it) is the same on every run,
        // which keeps simulation seeds replayable.
        for (partition, lead, value) in sorted(staged.states) {
            match value {
                Some(value) => batch.put_state(partition, lead, value),
                None => batch.delete_state(partition, lead),
            }
        }
        for (partition, lead, m) in sorted(staged.moves) {
            batch.move_timer(partition, lead, m.durable, m.now);
        }
        for (partition, checkpoint) in staged.checkpoints {
            batch.checkpoint(partition, checkpoint);
        }
        batch
    }
}

/// The entries of per-partition maps, in partition and lead order.
fn sorted<V>(by: HashMap<Partition, HashMap<LeadId, V>>) -> Vec<(Partition, LeadId, V)> {
    let mut all: Vec<(Partition, LeadId, V)> =
        by.into_iter().flat_map(|(p, leads)| leads.into_iter().map(move |(l, v)| (p, l, v))).collect();
    all.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    all
}

impl Staged {
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
                self.checkpoints.insert(partition, checkpoint);
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
        let staged = self.lock();
        let mut found: Vec<Option<Option<Vec<u8>>>> = Vec::with_capacity(leads.len());
        let mut missing = Vec::new();
        let states = staged.states.get(&partition);
        for lead in leads {
            match states.and_then(|s| s.get(*lead)) {
                Some(v) => found.push(Some(v.clone())),
                None => {
                    found.push(None);
                    missing.push(*lead);
                }
            }
        }
        drop(staged);
        if missing.is_empty() {
            return Ok(found.into_iter().map(|v| v.flatten()).collect());
        }
        let mut durable = self.durable.get_states(partition, &missing)?.into_iter();
        Ok(found.into_iter().map(|v| v.unwrap_or_else(|| durable.next().flatten())).collect())
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let staged = self.lock();
        let states = staged.states.get(&partition);
        let mut cursor = after.map(LeadId::from);
        loop {
            let page = self.durable.lead_ids(partition, cursor.as_ref().map(|l| l.as_str()), limit)?;
            let last = page.last().cloned();
            // Staged deletions hide durable leads; staged states add leads,
            // up to the durable page's last (or all, past the durable end).
            let mut merged: Vec<LeadId> =
                page.into_iter().filter(|l| !matches!(states.and_then(|s| s.get(l)), Some(None))).collect();
            if let Some(states) = states {
                merged.extend(
                    states
                        .iter()
                        .filter(|(l, v)| v.is_some() && cursor.as_ref().is_none_or(|c| *l > c))
                        .filter(|(l, _)| last.as_ref().is_none_or(|last| *l <= last))
                        .map(|(l, _)| l.clone()),
                );
            }
            merged.sort_unstable();
            merged.dedup();
            merged.truncate(limit);
            // Only an empty durable page ends the scan.
            if !merged.is_empty() || last.is_none() {
                return Ok(merged);
            }
            cursor = last;
        }
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let staged = self.lock();
        let moves = staged.moves.get(&partition);
        let moved_away =
            |due: Millis, lead: &str| moves.and_then(|m| m.get(lead)).is_some_and(|m| m.durable == Some(due));
        // Durable timers, without those that moved; read on until `limit` are
        // left or the durable store has no more.
        let mut durable = Vec::new();
        let mut cursor: Option<(Millis, LeadId)> = after.map(|(d, l)| (d, LeadId::from(l)));
        loop {
            let page =
                self.durable.due_timers(partition, cursor.as_ref().map(|(d, l)| (*d, l.as_str())), up_to, limit)?;
            let full = page.len() == limit;
            for (due, lead) in page {
                if !moved_away(due, lead.as_str()) {
                    durable.push((due, lead.clone()));
                }
                cursor = Some((due, lead));
            }
            if !full || durable.len() >= limit {
                break;
            }
        }
        let start = match &after {
            Some((d, l)) => Bound::Excluded((*d, LeadId::from(*l))),
            None => Bound::Unbounded,
        };
        let pending: Vec<(Millis, LeadId)> = staged
            .timers
            .get(&partition)
            .map(|t| t.range((start, Bound::Unbounded)).take_while(|(d, _)| *d <= up_to).take(limit).cloned().collect())
            .unwrap_or_default();
        let mut merged: Vec<(Millis, LeadId)> = durable.into_iter().chain(pending).collect();
        merged.sort_unstable();
        merged.dedup();
        merged.truncate(limit);
        Ok(merged)
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        if let Some(c) = self.lock().checkpoints.get(&partition) {
            return Ok(Some(c.clone()));
        }
        self.durable.checkpoint(partition)
    }

    /// Stages the batch (see the module documentation).
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.stage(batch.clone());
        Ok(())
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        self.lock().drop_partition(partition);
        self.durable.drop_partition(partition)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut all: BTreeSet<Partition> = self.durable.partitions()?.into_iter().collect();
        all.extend(self.lock().checkpoints.keys().copied());
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{check_store_contract, MemoryStore};

    #[test]
    fn an_overlay_keeps_the_store_contract_before_and_after_it_is_taken() {
        let durable = MemoryStore::new();
        let overlay = Overlay::new(&durable);
        check_store_contract(&overlay);
        // The same through staged writes taken into the durable store at
        // every step.
        let durable = MemoryStore::new();
        let overlay = Overlay::new(&durable);
        let through = Through(&overlay, &durable);
        check_store_contract(&through);
    }

    #[test]
    fn lead_ids_merge_staged_states_and_deletions_with_the_durable_ones() {
        let durable = MemoryStore::new();
        let mut b = WriteBatch::default();
        for l in ["L-a", "L-b", "L-d"] {
            b.put_state(0, LeadId::from(l), b"x".to_vec());
        }
        durable.write(&b).expect("durable");
        let overlay = Overlay::new(&durable);
        let mut b = WriteBatch::default();
        b.delete_state(0, LeadId::from("L-a"));
        b.delete_state(0, LeadId::from("L-b"));
        b.put_state(0, LeadId::from("L-c"), b"y".to_vec());
        b.put_state(0, LeadId::from("L-e"), b"z".to_vec());
        overlay.write(&b).expect("staged");
        for limit in [1, 2, 3] {
            let (mut seen, mut after): (Vec<LeadId>, Option<LeadId>) = (Vec::new(), None);
            loop {
                let page = overlay.lead_ids(0, after.as_ref().map(LeadId::as_str), limit).expect("page");
                let Some(last) = page.last().cloned() else { break };
                assert!(page.len() <= limit);
                seen.extend(page);
                after = Some(last);
            }
            assert_eq!(seen, ["L-c", "L-d", "L-e"].map(LeadId::from), "pages of {limit}");
        }
    }

    #[test]
    fn a_taken_batch_is_in_partition_and_lead_order_whatever_was_staged_first() {
        let durable = MemoryStore::new();
        let overlay = Overlay::new(&durable);
        let mut b = WriteBatch::default();
        for (p, l) in [(2, "L-c"), (1, "L-b"), (2, "L-a"), (1, "L-a")] {
            b.put_state(p, LeadId::from(l), vec![1]);
            b.move_timer(p, LeadId::from(l), None, Some(5));
        }
        overlay.stage(b);
        let order: Vec<String> = overlay
            .take()
            .ops
            .iter()
            .map(|op| match op {
                Op::PutState { partition, lead, .. } => format!("state {partition}/{}", lead.as_str()),
                Op::MoveTimer { partition, lead, .. } => format!("timer {partition}/{}", lead.as_str()),
                other => format!("{other:?}"),
            })
            .collect();
        let want = ["1/L-a", "1/L-b", "2/L-a", "2/L-c"];
        let states: Vec<String> = want.iter().map(|k| format!("state {k}")).collect();
        let timers: Vec<String> = want.iter().map(|k| format!("timer {k}")).collect();
        assert_eq!(order, [states, timers].concat());
    }

    /// Stages each write and commits it at once: what the runtime does with a
    /// commit interval of zero.
    struct Through<'o, 's>(&'o Overlay<'s>, &'s MemoryStore);

    impl StateStore for Through<'_, '_> {
        fn get_states(&self, p: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.0.get_states(p, leads)
        }
        fn due_timers(
            &self,
            p: Partition,
            after: Option<(Millis, &str)>,
            up_to: Millis,
            limit: usize,
        ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
            self.0.due_timers(p, after, up_to, limit)
        }
        fn lead_ids(&self, p: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
            self.0.lead_ids(p, after, limit)
        }
        fn checkpoint(&self, p: Partition) -> Result<Option<Checkpoint>, StoreError> {
            self.0.checkpoint(p)
        }
        fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
            self.0.write(batch)?;
            self.1.write(&self.0.take())
        }
        fn drop_partition(&self, p: Partition) -> Result<(), StoreError> {
            self.0.drop_partition(p)
        }
        fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
            self.0.partitions()
        }
    }

    /// One write of a generated history: a few leads and instants, so that
    /// leads and timers are touched again and again.
    #[derive(Debug, Clone)]
    enum Write {
        Put(u32, u8, u8),
        Delete(u32, u8),
        Timer(u32, u8, Option<i8>),
        Checkpoint(u32, i64),
        /// Commit what is staged to the durable store.
        Take,
    }

    fn write() -> impl proptest::strategy::Strategy<Value = Write> {
        use proptest::prelude::*;
        prop_oneof![
            (0..2u32, 0..6u8, any::<u8>()).prop_map(|(p, l, v)| Write::Put(p, l, v)),
            (0..2u32, 0..6u8).prop_map(|(p, l)| Write::Delete(p, l)),
            (0..2u32, 0..6u8, proptest::option::of(-3..4i8)).prop_map(|(p, l, d)| Write::Timer(p, l, d)),
            (0..2u32, 0..100i64).prop_map(|(p, o)| Write::Checkpoint(p, o)),
            Just(Write::Take),
        ]
    }

    fn lead(l: u8) -> LeadId {
        LeadId::from(format!("L-{l}"))
    }

    /// Everything a reader can see of a store.
    fn view(s: &dyn StateStore) -> Vec<String> {
        let names: Vec<String> = (0..6u8).map(|l| lead(l).as_str().to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut v = Vec::new();
        for p in 0..2 {
            v.push(format!("{:?}", s.get_states(p, &names).unwrap()));
            v.push(format!("{:?}", s.due_timers(p, None, i64::MAX, 100).unwrap()));
            // Paging one timer at a time finds the same, in order.
            let mut paged = Vec::new();
            let mut after: Option<(Millis, LeadId)> = None;
            loop {
                let page = s.due_timers(p, after.as_ref().map(|(d, l)| (*d, l.as_str())), 2, 1).unwrap();
                let Some(t) = page.into_iter().next() else { break };
                paged.push(t.clone());
                after = Some(t);
            }
            v.push(format!("{paged:?}"));
            v.push(format!("{:?}", s.checkpoint(p).unwrap()));
        }
        v.push(format!("{:?}", s.partitions().unwrap()));
        v
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever is staged and whenever it is taken, readers of the
        /// overlay see what a store written directly shows, and after the
        /// last take the durable store holds exactly that.
        #[test]
        fn reads_through_an_overlay_equal_direct_writes(writes in proptest::collection::vec(write(), 0..60)) {
            let direct = MemoryStore::new();
            let durable = MemoryStore::new();
            let overlay = Overlay::new(&durable);
            // Where each lead's timer is, as the writer knows it.
            let mut timers: HashMap<(u32, u8), Millis> = HashMap::new();
            for w in writes {
                let mut b = WriteBatch::default();
                match w {
                    Write::Put(p, l, v) => b.put_state(p, lead(l), vec![v; 1 + v as usize % 4]),
                    Write::Delete(p, l) => b.delete_state(p, lead(l)),
                    Write::Timer(p, l, due) => {
                        let new = due.map(Millis::from);
                        let old = match new {
                            Some(n) => timers.insert((p, l), n),
                            None => timers.remove(&(p, l)),
                        };
                        b.move_timer(p, lead(l), old, new);
                    }
                    Write::Checkpoint(p, o) => b.checkpoint(
                        p,
                        Checkpoint { next_offsets: [("t".to_string(), o)].into_iter().collect(), ..Checkpoint::default() },
                    ),
                    Write::Take => {
                        durable.write(&overlay.take()).unwrap();
                        proptest::prop_assert!(overlay.is_empty());
                        continue;
                    }
                }
                direct.write(&b).unwrap();
                overlay.write(&b).unwrap();
                proptest::prop_assert_eq!(view(&overlay), view(&direct));
            }
            durable.write(&overlay.take()).unwrap();
            proptest::prop_assert_eq!(view(&durable), view(&direct));
            proptest::prop_assert_eq!(overlay.bytes(), 0);
        }
    }
}
