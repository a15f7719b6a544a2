//! Event-time order across co-partitioned input topics, across poll batches.
//!
//! Partition *p* of every input topic is one partition group: one lead's page
//! views, clicks and downloads arrive on different topics, but must be applied
//! in event-time order, or the results would depend on which fetch came back
//! first. The [`Aligner`] holds each group's fetched messages in one queue per
//! topic and releases them by merging the queue heads by event time. While a
//! topic's queue is empty, its next message could be earlier than every head,
//! so the group waits for it (as Kafka Streams does since KIP-695):
//!
//! - while the topic is known to have more on the broker ([`Position::Behind`])
//!   or its position is not known yet ([`Position::Unknown`]): always, however
//!   long that takes, so that the order never depends on fetch timing;
//! - once it has nothing more on the broker ([`Position::CaughtUp`]): at most
//!   `max_idle` (0 by default: go ahead at once), a grace period for producers
//!   that write the topics of one group with some skew. A message released on
//!   the strength of such a verdict must also have been fetched at least
//!   `settle` ago: a client may report a message before it has read the end of
//!   the other topics from the same fetch response (see the Kafka source).
//!
//! So, given that no message is written to the broker after a later-stamped
//! message of another topic of its group was fetched, the order released is
//! the merge of the whole streams. With a single input topic nothing waits.
//!
//! Pure: the caller says what time it is and where each topic-partition
//! stands; the order released depends only on the messages and on those
//! answers, never on how the messages were split into poll batches.

use crate::messages::InputMessage;
use leadscore_codec::DecodeError;
use leadscore_core::{Event, Millis};
use leadscore_store::Partition;
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};

/// A fetched message and what decoding it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub message: InputMessage,
    pub event: Result<Event, DecodeError>,
    /// When it was fetched, on the runtime's monotonic clock (milliseconds).
    pub fetched_at: Millis,
    /// Not decoded yet: its writer schema is not known yet (the registry is
    /// being asked, or is down). `event` means nothing until it is decoded
    /// again; its group holds everything until then.
    pub schema_wait: Option<SchemaWait>,
}

/// Which writer schema a message waits for, and why it is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaWait {
    pub schema_id: u32,
    pub why: String,
}

impl Arrival {
    /// The merge key: bad input has no event time and goes first, as soon as
    /// it is at the head of its topic (it changes no state).
    fn time(&self) -> Millis {
        self.event.as_ref().map_or(Millis::MIN, |e| e.timestamp)
    }
}

/// Where an input topic-partition stands on the broker, relative to the next
/// offset the group expects from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Nothing at or after the next offset.
    CaughtUp,
    /// More is on the broker: the group waits for it to be fetched.
    Behind,
    /// Not known (yet): the group waits until it is.
    Unknown,
}

/// One partition group's fetched, not yet released messages.
#[derive(Debug, Default)]
struct Group {
    /// One queue per input topic, in offset order: positions in the
    /// aligner's [`Slab`].
    queues: Vec<VecDeque<u32>>,
    /// The next offset expected from each topic: the last fetched + 1, or where
    /// the partition's checkpoint resumes.
    next: Vec<Option<i64>>,
    /// Since when the group has been waiting for caught-up topics (`max_idle`).
    idle_since: Option<Millis>,
}

/// What one [`Aligner::release`] did, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// The group holds messages back: the topic (index in the aligner's
    /// order) it waits for, and where that topic stands.
    pub waiting: Option<(usize, Position)>,
    /// When that wait ends by itself (a settle or a `max_idle` runs out), on
    /// the clock of `now`; `None`: only once something is fetched.
    pub until: Option<Millis>,
    /// A wait for a caught-up topic ran out (`max_idle`) and the group went
    /// ahead without it.
    pub idle_expired: bool,
    /// The group holds its messages because the first of them that waits for
    /// its writer schema is not decoded yet.
    pub schema_wait: Option<SchemaWait>,
}

/// Holds partition groups' messages until they can be applied in event-time
/// order; see the module docs.
#[derive(Debug)]
pub struct Aligner {
    topics: Vec<String>,
    max_idle: Millis,
    settle: Millis,
    groups: BTreeMap<Partition, Group>,
    /// Every group's held messages.
    held: Slab<Arrival>,
    buffered: usize,
}

impl Aligner {
    /// `topics`: every input topic of the group; `max_idle`: how long a group
    /// waits for an empty topic that is caught up (0: not at all); `settle`:
    /// how long after its fetch a message may go on a caught-up verdict.
    pub fn new(topics: impl IntoIterator<Item = String>, max_idle: Millis, settle: Millis) -> Aligner {
        Aligner {
            topics: topics.into_iter().collect(),
            max_idle,
            settle,
            groups: BTreeMap::new(),
            held: Slab::default(),
            buffered: 0,
        }
    }

    /// The input topics, in the order [`Release::waiting`] indexes them.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    fn group(&mut self, partition: Partition) -> &mut Group {
        let n = self.topics.len();
        self.groups.entry(partition).or_insert_with(|| Group {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            next: vec![None; n],
            idle_since: None,
        })
    }

    /// A partition starts (or resumes after a restore) where its checkpoint
    /// says (next offset per topic): an empty topic whose checkpoint is at the
    /// broker's end is then known to be caught up before anything is fetched
    /// from it. Messages already buffered for the partition are kept (the
    /// consumer may have fetched them while it restored).
    pub fn assign(&mut self, partition: Partition, next_offsets: &BTreeMap<String, i64>) {
        let topics = self.topics.clone();
        let group = self.group(partition);
        for (i, topic) in topics.iter().enumerate() {
            if group.queues[i].is_empty() {
                group.next[i] = next_offsets.get(topic).copied();
            }
        }
    }

    /// Drops a revoked partition's buffered messages: its new owner reads them
    /// again from the last commit.
    pub fn forget(&mut self, partition: Partition) {
        if let Some(g) = self.groups.remove(&partition) {
            for &i in g.queues.iter().flatten() {
                self.held.take(i);
                self.buffered -= 1;
            }
        }
    }

    /// Buffers a fetched message. Messages of a topic that is not an input are
    /// kept in a queue of their own at the end (they never block).
    pub fn push(&mut self, arrival: Arrival) {
        let index = match self.topics.iter().position(|t| *t == arrival.message.topic) {
            Some(i) => i,
            None => {
                self.topics.push(arrival.message.topic.clone());
                for g in self.groups.values_mut() {
                    g.queues.push(VecDeque::new());
                    g.next.push(None);
                }
                self.topics.len() - 1
            }
        };
        let (partition, next) = (arrival.message.partition, arrival.message.offset + 1);
        let slot = self.held.insert(arrival);
        let group = self.group(partition);
        group.next[index] = Some(next);
        group.queues[index].push_back(slot);
        self.buffered += 1;
    }

    /// Messages held back, all groups.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Partitions with buffered messages.
    pub fn pending(&self) -> Vec<Partition> {
        self.groups.iter().filter(|(_, g)| g.queues.iter().any(|q| !q.is_empty())).map(|(p, _)| *p).collect()
    }

    /// Decodes again, with `decode`, the messages of `partition` that wait
    /// for their writer schema, in each topic's order, up to the first that
    /// still waits (so a registry outage costs one try per call, and its end
    /// decodes everything held at once).
    pub fn retry_waiting(&mut self, partition: Partition, decode: &mut dyn FnMut(InputMessage) -> Arrival) {
        let Some(group) = self.groups.get_mut(&partition) else { return };
        for queue in &group.queues {
            for &i in queue {
                let slot = self.held.get_mut(i);
                if slot.schema_wait.is_none() {
                    continue;
                }
                let fetched_at = slot.fetched_at;
                let message = std::mem::replace(&mut slot.message, InputMessage::empty());
                *slot = Arrival { fetched_at, ..decode(message) };
                if slot.schema_wait.is_some() {
                    break;
                }
            }
        }
    }

    /// Takes the messages of `partition` that can be applied now, in the order
    /// to apply them. `position(topic, next_offset)` says where that topic of
    /// this partition stands on the broker (`next_offset` `None`: nothing
    /// fetched and no checkpoint).
    pub fn release(
        &mut self,
        partition: Partition,
        now: Millis,
        position: &mut dyn FnMut(&str, Option<i64>) -> Position,
        out: &mut Vec<Arrival>,
    ) -> Release {
        let Some(group) = self.groups.get_mut(&partition) else { return Release::default() };
        let held = &mut self.held;
        let before = out.len();
        let mut release = Release::default();
        // Each empty topic is asked once per call: what it answers cannot change
        // while nothing is fetched.
        let mut answers: Vec<Option<Position>> = vec![None; group.queues.len()];
        loop {
            // A message not decoded yet has no event time: nothing can be
            // released past it, in any topic of the group.
            if let Some(wait) =
                group.queues.iter().find_map(|q| q.front().and_then(|&i| held.get(i).schema_wait.clone()))
            {
                release.schema_wait = Some(wait);
                break;
            }
            let head = (0..group.queues.len())
                .filter_map(|i| group.queues[i].front().map(|&a| (held.get(a).time(), i)))
                .min_by_key(|&(t, i)| (t, i));
            let Some((_, first)) = head else { break };
            let fetched_at = group.queues[first].front().map_or(now, |&a| held.get(a).fetched_at);
            let mut blocked = None;
            let mut idle = false;
            for (i, answer) in answers.iter_mut().enumerate() {
                if !group.queues[i].is_empty() {
                    continue;
                }
                let answer = *answer.get_or_insert_with(|| position(&self.topics[i], group.next[i]));
                match answer {
                    Position::CaughtUp => idle = true,
                    waiting => {
                        blocked.get_or_insert((i, waiting));
                    }
                }
            }
            if blocked.is_some() {
                release.waiting = blocked;
                break;
            }
            if idle && now.saturating_sub(fetched_at) < self.settle {
                let i = answers.iter().position(|a| *a == Some(Position::CaughtUp)).unwrap_or(0);
                release.waiting = Some((i, Position::CaughtUp));
                release.until = Some(fetched_at + self.settle);
                break;
            }
            if idle && self.max_idle > 0 {
                let since = *group.idle_since.get_or_insert(now);
                if now.saturating_sub(since) < self.max_idle {
                    let i = answers.iter().position(|a| *a == Some(Position::CaughtUp)).unwrap_or(0);
                    release.waiting = Some((i, Position::CaughtUp));
                    release.until = Some(since + self.max_idle);
                    break;
                }
                release.idle_expired = true;
            }
            out.push(held.take(group.queues[first].pop_front().expect("a head")));
        }
        self.buffered -= out.len() - before;
        if release.waiting.is_none() {
            // Nothing to wait for: a later wait starts afresh.
            group.idle_since = None;
        }
        release
    }
}

/// Every message of one batch in apply order, as if every topic were caught
/// up: each topic's messages in offset order, merged by event time.
pub fn merge_all(topics: impl IntoIterator<Item = String>, arrivals: Vec<Arrival>) -> Vec<Arrival> {
    let mut aligner = Aligner::new(topics, 0, 0);
    let mut out = Vec::with_capacity(arrivals.len());
    for a in arrivals {
        aligner.push(a);
    }
    for p in aligner.pending() {
        aligner.release(p, 0, &mut |_, _| Position::CaughtUp, &mut out);
    }
    out
}

mod slab;
#[cfg(test)]
mod tests;
