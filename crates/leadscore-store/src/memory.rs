//! An in-memory [`StateStore`], for tests and for processing that needs no
//! durability. Same key order and semantics as the RocksDB store (timers are
//! typed keys here, ordered as its byte keys are).

use crate::keys::{partition_prefix, partition_upper_bound, state_key};
use crate::{Checkpoint, Op, Partition, StateStore, StoreError, WriteBatch};
use leadscore_core::{LeadId, Millis};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Mutex;

/// A partition's timer as a typed key: the tuple orders exactly as the
/// RocksDB store's timer keys do within a partition (due, lead bytes), and
/// compares without building or comparing byte keys. One set per partition:
/// a step moves a timer for nearly every lead it changes, and each compare
/// in a set of all partitions began with the partition.
type Timer = (Millis, LeadId);

#[derive(Debug, Default)]
struct Inner {
    states: BTreeMap<Vec<u8>, Vec<u8>>,
    timers: BTreeMap<Partition, BTreeSet<Timer>>,
    checkpoints: BTreeMap<Partition, Checkpoint>,
}

/// See the module documentation. A `std` mutex: every operation is short and
/// none awaits while holding it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in a batch can fail halfway (every op is an infallible map
        // update), so a lock poisoned by a panicking thread is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many leads are in state, over all partitions.
    pub fn lead_count(&self) -> usize {
        self.lock().states.len()
    }

    /// Every lead of `partition` with its encoded state, in lead order.
    pub fn leads(&self, partition: Partition) -> Vec<(LeadId, Vec<u8>)> {
        let inner = self.lock();
        let prefix = partition_prefix(partition);
        inner
            .states
            .range(prefix.clone()..partition_upper_bound(partition))
            .map(|(k, v)| (LeadId::from(String::from_utf8_lossy(&k[prefix.len()..]).into_owned()), v.clone()))
            .collect()
    }
}

impl StateStore for MemoryStore {
    fn reads_in_batches(&self) -> bool {
        false
    }

    fn get_states(&self, partition: Partition, leads: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let inner = self.lock();
        Ok(leads.iter().map(|l| inner.states.get(&state_key(partition, l)).cloned()).collect())
    }

    fn lead_ids(&self, partition: Partition, after: Option<&str>, limit: usize) -> Result<Vec<LeadId>, StoreError> {
        let inner = self.lock();
        let prefix = partition_prefix(partition);
        let start = match after {
            Some(l) => Bound::Excluded(state_key(partition, l)),
            None => Bound::Included(prefix.clone()),
        };
        Ok(inner
            .states
            .range((start, Bound::Excluded(partition_upper_bound(partition))))
            .take(limit)
            .map(|(k, _)| LeadId::from(String::from_utf8_lossy(&k[prefix.len()..]).into_owned()))
            .collect())
    }

    fn due_timers(
        &self,
        partition: Partition,
        after: Option<(Millis, &str)>,
        up_to: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, LeadId)>, StoreError> {
        let inner = self.lock();
        let Some(timers) = inner.timers.get(&partition) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some((due, lead)) => Bound::Excluded((due, LeadId::from(lead))),
            None => Bound::Unbounded,
        };
        Ok(timers.range((start, Bound::Unbounded)).take_while(|(due, _)| *due <= up_to).take(limit).cloned().collect())
    }

    fn checkpoint(&self, partition: Partition) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints.get(&partition).cloned())
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for op in &batch.ops {
            match op {
                Op::PutState { partition, lead, value } => {
                    inner.states.insert(state_key(*partition, lead.as_str()), value.clone());
                }
                Op::DeleteState { partition, lead } => {
                    inner.states.remove(&state_key(*partition, lead.as_str()));
                }
                Op::MoveTimer { partition, lead, old, new } => {
                    let timers = inner.timers.entry(*partition).or_default();
                    if let Some(old) = old {
                        timers.remove(&(*old, lead.clone()));
                    }
                    if let Some(new) = new {
                        timers.insert((*new, lead.clone()));
                    }
                }
                Op::Checkpoint { partition, checkpoint } => {
                    inner.checkpoints.insert(*partition, (**checkpoint).clone());
                }
            }
        }
        Ok(())
    }

    fn drop_partition(&self, partition: Partition) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let range = partition_prefix(partition)..partition_upper_bound(partition);
        let states: Vec<_> = inner.states.range(range).map(|(k, _)| k.clone()).collect();
        states.iter().for_each(|k| {
            inner.states.remove(k);
        });
        inner.timers.remove(&partition);
        inner.checkpoints.remove(&partition);
        Ok(())
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        Ok(self.lock().checkpoints.keys().copied().collect())
    }
}

/// The behaviour every [`StateStore`] must have, as a test any implementation
/// can run against itself.
pub fn check_store_contract(store: &dyn StateStore) {
    let lead = |s: &str| LeadId::from(s);
    let mut b = WriteBatch::default();
    b.put_state(1, lead("L-a"), b"a".to_vec());
    b.put_state(1, lead("L-b"), b"b".to_vec());
    b.put_state(2, lead("L-a"), b"other partition".to_vec());
    b.move_timer(1, lead("L-a"), None, Some(300));
    b.move_timer(1, lead("L-b"), None, Some(100));
    b.move_timer(1, lead("L-c"), None, Some(-5));
    b.move_timer(2, lead("L-a"), None, Some(50));
    let cp = Checkpoint { next_offsets: [("t".to_string(), 10)].into_iter().collect(), ..Checkpoint::default() };
    b.checkpoint(1, cp.clone());
    store.write(&b).expect("write");

    assert_eq!(
        store.get_states(1, &["L-b", "L-x", "L-a"]).expect("get"),
        vec![Some(b"b".to_vec()), None, Some(b"a".to_vec())]
    );
    assert_eq!(store.due_timers(1, None, 100, 10).expect("timers"), vec![(-5, lead("L-c")), (100, lead("L-b"))]);
    assert_eq!(store.due_timers(1, None, 1000, 1).expect("timers"), vec![(-5, lead("L-c"))], "limit");
    assert_eq!(store.due_timers(1, Some((-5, "L-c")), 1000, 1).expect("timers"), vec![(100, lead("L-b"))], "paging");
    assert_eq!(store.due_timers(1, Some((100, "L-b")), 100, 5).expect("timers"), vec![], "paging past the bound");
    assert_eq!(store.checkpoint(1).expect("checkpoint"), Some(cp));
    assert_eq!(store.checkpoint(3).expect("checkpoint"), None);
    let ids = |p, after, limit| store.lead_ids(p, after, limit).expect("lead ids");
    assert_eq!(ids(1, None, 10), vec![lead("L-a"), lead("L-b")], "leads with a state, not with a timer only");
    assert_eq!(ids(1, None, 1), vec![lead("L-a")], "limit");
    assert_eq!(ids(1, Some("L-a"), 1), vec![lead("L-b")], "paging");
    assert_eq!(ids(1, Some("L-b"), 1), vec![], "the end");
    assert_eq!(ids(1, Some("L-0"), 5), vec![lead("L-a"), lead("L-b")], "after a lead that has no state");
    assert_eq!(ids(2, None, 5), vec![lead("L-a")]);
    assert_eq!(store.partitions().expect("partitions"), vec![1]);

    let mut b = WriteBatch::default();
    b.move_timer(1, lead("L-b"), Some(100), Some(400));
    b.delete_state(1, lead("L-a"));
    b.move_timer(1, lead("L-a"), Some(300), None);
    store.write(&b).expect("write");
    assert_eq!(store.get_states(1, &["L-a"]).expect("get"), vec![None]);
    assert_eq!(store.due_timers(1, None, 1000, 10).expect("timers"), vec![(-5, lead("L-c")), (400, lead("L-b"))]);
    assert_eq!(store.lead_ids(1, None, 1).expect("lead ids"), vec![lead("L-b")], "a deleted lead is gone");

    store.drop_partition(1).expect("drop");
    assert_eq!(store.get_states(1, &["L-b"]).expect("get"), vec![None]);
    assert!(store.due_timers(1, None, i64::MAX, 10).expect("timers").is_empty());
    assert_eq!(store.checkpoint(1).expect("checkpoint"), None);
    assert!(store.partitions().expect("partitions").is_empty());
    assert_eq!(store.get_states(2, &["L-a"]).expect("get"), vec![Some(b"other partition".to_vec())]);
    assert_eq!(store.due_timers(2, None, i64::MAX, 10).expect("timers"), vec![(50, lead("L-a"))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_keeps_the_contract() {
        check_store_contract(&MemoryStore::new());
    }
}
