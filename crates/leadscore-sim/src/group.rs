//! The simulated consumer group: members join and leave (or are removed when
//! they stop polling for longer than the session timeout), and every change is
//! an eager rebalance: each member first gives up its partitions (it is told
//! at its next poll), and once every member has rejoined the partitions are
//! dealt out again by the range assignor under a new generation. Offsets
//! committed to the group are kept per topic-partition; a commit from a member
//! that is not in the current generation is refused, which is what fences a
//! zombie's transaction in exactly-once mode.

use std::collections::{BTreeMap, BTreeSet};

/// A member id.
pub type MemberId = u64;

/// What a member learns when it polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Revoked(Vec<u32>),
    Assigned(Vec<u32>),
    /// It was removed from the group (it must join again).
    Gone(Vec<u32>),
}

#[derive(Debug, Clone, Default)]
struct Member {
    last_seen: i64,
    /// Partitions it was last told it owns.
    owned: Vec<u32>,
    /// Told to give up its partitions in the rebalance under way.
    rejoined: bool,
    /// The assignment it has not been told yet.
    pending: Option<Vec<u32>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Group {
    pub generation: i64,
    partitions: u32,
    members: BTreeMap<MemberId, Member>,
    /// Members that were removed and have not been told yet.
    gone: BTreeMap<MemberId, Vec<u32>>,
    rebalancing: bool,
    next_member: MemberId,
    pub committed: BTreeMap<(String, u32), i64>,
}

impl Group {
    pub fn new(partitions: u32) -> Group {
        Group { partitions, ..Group::default() }
    }

    pub fn join(&mut self, now: i64) -> MemberId {
        self.next_member += 1;
        self.members.insert(self.next_member, Member { last_seen: now, rejoined: true, ..Member::default() });
        self.start_rebalance();
        self.next_member
    }

    /// A member leaves cleanly (its partitions are dealt out again at once).
    pub fn leave(&mut self, member: MemberId) {
        if self.members.remove(&member).is_some() {
            self.start_rebalance();
        }
    }

    fn start_rebalance(&mut self) {
        self.rebalancing = true;
        for m in self.members.values_mut() {
            m.rejoined = m.owned.is_empty() && m.pending.is_none();
            m.pending = None;
        }
        self.try_complete();
    }

    fn try_complete(&mut self) {
        if !self.rebalancing || !self.members.values().all(|m| m.rejoined) {
            return;
        }
        self.rebalancing = false;
        self.generation += 1;
        let ids: Vec<MemberId> = self.members.keys().copied().collect();
        let n = ids.len().max(1) as u32;
        for (i, id) in ids.iter().enumerate() {
            let i = i as u32;
            // The range assignor: contiguous ranges, the first members get one more.
            let (base, extra) = (self.partitions / n, self.partitions % n);
            let start = i * base + i.min(extra);
            let len = base + u32::from(i < extra);
            if let Some(m) = self.members.get_mut(id) {
                m.pending = Some((start..start + len).collect());
            }
        }
    }

    /// Removes members that have not polled within `session_timeout`.
    pub fn expire(&mut self, now: i64, session_timeout: i64) -> Vec<MemberId> {
        let expired: Vec<MemberId> =
            self.members.iter().filter(|(_, m)| now - m.last_seen > session_timeout).map(|(id, _)| *id).collect();
        for id in &expired {
            if let Some(m) = self.members.remove(id) {
                self.gone.insert(*id, m.owned);
            }
        }
        if !expired.is_empty() {
            self.start_rebalance();
        }
        expired
    }

    /// A member polls: what it must be told, in order.
    pub fn poll(&mut self, member: MemberId, now: i64) -> Vec<Notice> {
        if let Some(owned) = self.gone.remove(&member) {
            return vec![Notice::Gone(owned)];
        }
        let mut notices = Vec::new();
        let Some(m) = self.members.get_mut(&member) else { return vec![Notice::Gone(Vec::new())] };
        m.last_seen = now;
        if self.rebalancing && !m.rejoined {
            m.rejoined = true;
            notices.push(Notice::Revoked(std::mem::take(&mut m.owned)));
            self.try_complete();
        }
        if let Some(m) = self.members.get_mut(&member) {
            if let Some(assigned) = m.pending.take() {
                m.owned = assigned.clone();
                notices.push(Notice::Assigned(assigned));
            }
        }
        notices
    }

    /// Whether `member` is in the group at `generation` (and not being asked to
    /// give up its partitions).
    pub fn valid(&self, member: MemberId, generation: i64) -> bool {
        generation == self.generation && self.members.get(&member).is_some_and(|m| !self.rebalancing || m.rejoined)
    }

    pub fn commit(&mut self, offsets: impl IntoIterator<Item = (String, u32, i64)>) {
        for (topic, partition, next) in offsets {
            self.committed.insert((topic, partition), next);
        }
    }

    /// Whether the group is settled: no rebalance under way, every member told
    /// its partitions.
    pub fn stable(&self) -> bool {
        !self.rebalancing && self.members.values().all(|m| m.pending.is_none())
    }

    /// Every partition is owned by exactly one member (once stable).
    pub fn owners(&self) -> BTreeMap<u32, MemberId> {
        let mut owners = BTreeMap::new();
        for (id, m) in &self.members {
            for p in &m.owned {
                owners.insert(*p, *id);
            }
        }
        owners
    }

    pub fn members(&self) -> BTreeSet<MemberId> {
        self.members.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eager_rebalance_revokes_then_assigns_ranges_under_a_new_generation() {
        let mut g = Group::new(4);
        let a = g.join(0);
        assert_eq!(g.poll(a, 1), vec![Notice::Assigned(vec![0, 1, 2, 3])]);
        assert_eq!(g.generation, 1);
        let b = g.join(2);
        assert!(g.poll(b, 3).is_empty(), "b waits for a to rejoin");
        assert!(!g.valid(a, 1), "a must give up its partitions first");
        assert_eq!(g.poll(a, 4), vec![Notice::Revoked(vec![0, 1, 2, 3]), Notice::Assigned(vec![0, 1])]);
        assert_eq!(g.poll(b, 5), vec![Notice::Assigned(vec![2, 3])]);
        assert!(g.stable() && g.valid(a, 2) && !g.valid(a, 1));
        // b stops polling: it is removed, a gets everything, b learns it is gone.
        assert!(g.poll(a, 80).is_empty(), "a keeps polling");
        assert_eq!(g.expire(100, 50), vec![b]);
        assert_eq!(g.poll(a, 101), vec![Notice::Revoked(vec![0, 1]), Notice::Assigned(vec![0, 1, 2, 3])]);
        assert_eq!(g.poll(b, 102), vec![Notice::Gone(vec![2, 3])]);
        assert_eq!(g.owners().len(), 4);
    }
}
