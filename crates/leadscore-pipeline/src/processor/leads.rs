//! The leads of a working set (and of the state cache): their slots in one
//! sequence (in chunks, so that growing it moves no slot), found by id
//! through a small index.
//!
//! Why not a map of slots: a slot is a few hundred bytes, so a map of 100k of
//! them is tens of megabytes, and every lookup by id (several per event) read
//! a bucket far from the last one, from memory. The index here holds only
//! ids and positions (a few megabytes, mostly in cache), a step finds each
//! lead in it once and then goes by position, and growing it moves positions,
//! not slots.
//!
//! Positions hold until a lead is removed: [`Leads::remove`] moves the last
//! slot into the gap, so a caller that keeps positions removes only after it
//! is done with them.

use super::chunked::Chunked;
use super::work::Slot;
use leadscore_core::LeadId;
use std::collections::HashMap;

/// A position in [`Leads`].
pub(super) type Pos = u32;

/// See the module documentation. The index is seeded per map: ids come from
/// the network.
#[derive(Default)]
pub(super) struct Leads {
    index: HashMap<LeadId, Pos, foldhash::fast::RandomState>,
    slots: Chunked<Slot>,
}

impl Leads {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Where `lead` is, if it is here.
    pub(super) fn position(&self, lead: &str) -> Option<Pos> {
        self.index.get(lead).copied()
    }

    pub(super) fn at(&self, pos: Pos) -> &Slot {
        self.slots.at(pos as usize)
    }

    pub(super) fn at_mut(&mut self, pos: Pos) -> &mut Slot {
        self.slots.at_mut(pos as usize)
    }

    /// Adds a lead that is not here yet; its position.
    pub(super) fn insert(&mut self, slot: Slot) -> Pos {
        let pos = Pos::try_from(self.slots.len()).expect("fewer than 2^32 leads in a working set");
        let previous = self.index.insert(slot.lead.clone(), pos);
        debug_assert!(previous.is_none(), "a lead is inserted once");
        self.slots.push(slot);
        pos
    }

    /// Makes room in the index for `more` leads (slots need none).
    pub(super) fn reserve(&mut self, more: usize) {
        self.index.reserve(more);
    }

    /// Removes the lead at `pos`: the last slot takes its position.
    pub(super) fn remove(&mut self, pos: Pos) -> Slot {
        let slot = self.slots.swap_remove(pos as usize);
        self.index.remove(slot.lead.as_str());
        if let Some(moved) = self.slots.get(pos as usize) {
            *self.index.get_mut(moved.lead.as_str()).expect("every slot is indexed") = pos;
        }
        slot
    }

    /// Keeps only the slots `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        let before = self.slots.len();
        self.slots.retain(|s| keep(s));
        if self.slots.len() != before {
            self.index.clear();
            self.index.extend(self.slots.iter().enumerate().map(|(p, s)| (s.lead.clone(), p as Pos)));
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut()
    }

    pub(super) fn into_slots(self) -> impl Iterator<Item = Slot> {
        self.slots.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(lead: &str) -> Slot {
        Slot::cached(LeadId::from(lead), None)
    }

    proptest! {
        /// Any sequence of inserts, removals and retains leaves every lead
        /// findable at a position that holds it, and only those leads.
        #[test]
        fn positions_follow_every_change(ops in prop::collection::vec((0u8..3, 0u8..20), 0..200)) {
            let mut leads = Leads::default();
            let mut model = std::collections::BTreeSet::new();
            for (op, n) in ops {
                let id = format!("L-{n}");
                match op {
                    0 if !model.contains(&id) => {
                        leads.insert(slot(&id));
                        model.insert(id);
                    }
                    1 => {
                        if let Some(pos) = leads.position(&id) {
                            let removed = leads.remove(pos);
                            prop_assert_eq!(removed.lead.as_str(), id.as_str());
                            model.remove(&id);
                        }
                    }
                    2 => {
                        leads.retain(|s| s.lead.as_str() != id);
                        model.remove(&id);
                    }
                    _ => {}
                }
                prop_assert_eq!(leads.len(), model.len());
                for id in &model {
                    let pos = leads.position(id);
                    prop_assert!(pos.is_some(), "{} is findable", id);
                    prop_assert_eq!(leads.at(pos.unwrap()).lead.as_str(), id.as_str());
                }
                let mut listed: Vec<&str> = leads.iter().map(|s| s.lead.as_str()).collect();
                listed.sort_unstable();
                prop_assert_eq!(listed, model.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }
}
