//! The aligner's one store of held messages, shared by every partition group.
//!
//! Each group's per-topic queues hold positions in the slab, not the messages
//! themselves: a queue then grows by four bytes per message, and the messages'
//! memory is sized by what all groups hold at once and used again as they are
//! released. With a queue of whole messages per topic-partition, each queue
//! kept the capacity of the most one poll ever gave its partition (a fetch
//! response is up to 1 MB of one partition): with 67 partitions that was
//! about 160 MiB of queues, each page zeroed by the kernel on first use.

/// Values at stable positions; a freed position is given out again first.
#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; its position until it is taken.
    pub(super) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The value at `i`, which must be held.
    pub(super) fn get(&self, i: u32) -> &T {
        self.slots[i as usize].as_ref().expect("a held position")
    }

    /// The value at `i`, which must be held.
    pub(super) fn get_mut(&mut self, i: u32) -> &mut T {
        self.slots[i as usize].as_mut().expect("a held position")
    }

    /// Takes the value at `i` out; the position is free again.
    pub(super) fn take(&mut self, i: u32) -> T {
        let value = self.slots[i as usize].take().expect("a held position");
        self.free.push(i);
        value
    }

    /// How many positions there are, held or free: the most held at once.
    #[cfg(test)]
    pub(super) fn positions(&self) -> usize {
        self.slots.len()
    }

    /// How many values are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Against a map: every value reads back at its position until it is
        /// taken, and the slab never grows past the most it held at once.
        #[test]
        fn values_stay_where_they_were_put(ops in prop::collection::vec((any::<bool>(), 0usize..64), 0..300)) {
            let mut slab = Slab::default();
            let mut model: BTreeMap<u32, usize> = BTreeMap::new();
            let mut most = 0;
            for (n, (insert, pick)) in ops.into_iter().enumerate() {
                if insert || model.is_empty() {
                    let i = slab.insert(n);
                    prop_assert!(model.insert(i, n).is_none(), "position {} given out twice", i);
                } else {
                    let i = *model.keys().nth(pick % model.len()).expect("a key");
                    prop_assert_eq!(slab.take(i), model.remove(&i).expect("held"));
                }
                most = most.max(model.len());
                prop_assert_eq!(slab.len(), model.len());
                for (i, v) in &model {
                    prop_assert_eq!(slab.get(*i), v);
                }
                prop_assert!(slab.slots.len() <= most);
            }
        }
    }

    #[test]
    fn a_value_can_be_changed_in_place() {
        let mut slab = Slab::default();
        let i = slab.insert(String::from("a"));
        slab.get_mut(i).push('b');
        assert_eq!(slab.take(i), "ab");
    }
}
