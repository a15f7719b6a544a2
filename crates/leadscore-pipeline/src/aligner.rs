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
    /// One queue per input topic, in offset order.
    queues: Vec<VecDeque<Arrival>>,
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
    buffered: usize,
}

impl Aligner {
    /// `topics`: every input topic of the group; `max_idle`: how long a group
    /// waits for an empty topic that is caught up (0: not at all); `settle`:
    /// how long after its fetch a message may go on a caught-up verdict.
    pub fn new(topics: impl IntoIterator<Item = String>, max_idle: Millis, settle: Millis) -> Aligner {
        Aligner { topics: topics.into_iter().collect(), max_idle, settle, groups: BTreeMap::new(), buffered: 0 }
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
            self.buffered -= g.queues.iter().map(VecDeque::len).sum::<usize>();
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
        let group = self.group(arrival.message.partition);
        group.next[index] = Some(arrival.message.offset + 1);
        group.queues[index].push_back(arrival);
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
        for queue in &mut group.queues {
            for slot in queue.iter_mut().filter(|a| a.schema_wait.is_some()) {
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
        let before = out.len();
        let mut release = Release::default();
        // Each empty topic is asked once per call: what it answers cannot change
        // while nothing is fetched.
        let mut answers: Vec<Option<Position>> = vec![None; group.queues.len()];
        loop {
            // A message not decoded yet has no event time: nothing can be
            // released past it, in any topic of the group.
            if let Some(wait) = group.queues.iter().find_map(|q| q.front().and_then(|a| a.schema_wait.clone())) {
                release.schema_wait = Some(wait);
                break;
            }
            let head = (0..group.queues.len())
                .filter_map(|i| group.queues[i].front().map(|a| (a.time(), i)))
                .min_by_key(|&(t, i)| (t, i));
            let Some((_, first)) = head else { break };
            let fetched_at = group.queues[first].front().map_or(now, |a| a.fetched_at);
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
                break;
            }
            if idle && self.max_idle > 0 {
                let since = *group.idle_since.get_or_insert(now);
                if now.saturating_sub(since) < self.max_idle {
                    let i = answers.iter().position(|a| *a == Some(Position::CaughtUp)).unwrap_or(0);
                    release.waiting = Some((i, Position::CaughtUp));
                    break;
                }
                release.idle_expired = true;
            }
            out.push(group.queues[first].pop_front().expect("a head"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_codec::ErrorClass;
    use leadscore_core::Kind;
    use proptest::prelude::*;

    fn arrival(topic: &str, offset: i64, time: Option<Millis>) -> Arrival {
        let message =
            InputMessage { topic: topic.into(), partition: 0, offset, key: None, payload: None, timestamp: None };
        let event = match time {
            Some(t) => Ok(Event::new(format!("{topic}-{offset}"), "L-1", Kind::PageView, t)),
            None => Err(DecodeError::new(ErrorClass::NotJson, "bad")),
        };
        Arrival { message, event, fetched_at: 0, schema_wait: None }
    }

    fn ids(out: &[Arrival]) -> Vec<String> {
        out.iter().map(|a| format!("{}@{}", a.message.topic, a.message.offset)).collect()
    }

    fn two(max_idle: Millis) -> Aligner {
        Aligner::new(["a".to_string(), "b".to_string()], max_idle, 0)
    }

    #[test]
    fn a_single_topic_never_waits() {
        let mut al = Aligner::new(["a".to_string()], 500, 10);
        al.push(arrival("a", 0, Some(10)));
        al.push(arrival("a", 1, Some(5)));
        let mut out = Vec::new();
        let r = al.release(0, 0, &mut |_, _| Position::Unknown, &mut out);
        assert_eq!(ids(&out), ["a@0", "a@1"], "offset order within a topic");
        assert_eq!(r, Release::default());
        assert_eq!(al.buffered(), 0);
    }

    #[test]
    fn an_empty_topic_that_is_behind_or_unknown_holds_the_group_however_long_it_takes() {
        for answer in [Position::Behind, Position::Unknown] {
            let mut al = two(500);
            al.push(arrival("a", 0, Some(10)));
            al.push(arrival("a", 1, Some(30)));
            let mut out = Vec::new();
            for now in [0, 1_000, 1_000_000] {
                let r = al.release(0, now, &mut |_, _| answer, &mut out);
                assert!(out.is_empty() && r.waiting == Some((1, answer)), "{answer:?} at {now}");
            }
            // The next poll brings b's message, earlier than a's second.
            al.push(arrival("b", 0, Some(20)));
            let r = al.release(0, 2_000_000, &mut |_, _| answer, &mut out);
            assert_eq!(ids(&out), ["a@0", "b@0"]);
            assert_eq!(r.waiting, Some((1, answer)), "b is empty again and its next could be before a's 30");
            assert_eq!(al.buffered(), 1);
        }
    }

    #[test]
    fn a_caught_up_topic_does_not_hold_the_group_by_default() {
        let mut al = two(0);
        al.push(arrival("a", 0, Some(10)));
        let mut asked = Vec::new();
        let mut out = Vec::new();
        let r = al.release(
            0,
            0,
            &mut |t, next| {
                asked.push((t.to_string(), next));
                Position::CaughtUp
            },
            &mut out,
        );
        assert_eq!(ids(&out), ["a@0"]);
        assert_eq!(r, Release::default());
        assert_eq!(asked, [("b".to_string(), None)], "asked once, about the empty topic");
    }

    #[test]
    fn the_checkpoint_says_where_an_unfetched_topic_resumes() {
        let mut al = two(0);
        al.assign(0, &BTreeMap::from([("b".to_string(), 42)]));
        al.push(arrival("a", 7, Some(10)));
        let mut seen = None;
        al.release(
            0,
            0,
            &mut |_, next| {
                seen = next;
                Position::CaughtUp
            },
            &mut Vec::new(),
        );
        assert_eq!(seen, Some(42));
    }

    #[test]
    fn assigning_again_keeps_what_was_fetched_meanwhile() {
        let mut al = two(0);
        al.push(arrival("a", 7, Some(10)));
        al.assign(0, &BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 3)]));
        assert_eq!(al.buffered(), 1);
        let mut seen = Vec::new();
        al.release(
            0,
            0,
            &mut |t, next| {
                seen.push((t.to_string(), next));
                Position::CaughtUp
            },
            &mut Vec::new(),
        );
        assert_eq!(seen, [("b".to_string(), Some(3))]);
    }

    #[test]
    fn a_caught_up_topic_is_waited_for_at_most_max_idle() {
        let mut al = two(500);
        al.push(arrival("a", 0, Some(10)));
        let mut out = Vec::new();
        let caught_up = &mut |_: &str, _: Option<i64>| Position::CaughtUp;
        assert_eq!(al.release(0, 1_000, caught_up, &mut out).waiting, Some((1, Position::CaughtUp)));
        assert!(al.release(0, 1_499, caught_up, &mut out).waiting.is_some(), "499 ms: still waiting");
        assert!(out.is_empty());
        let r = al.release(0, 1_500, caught_up, &mut out);
        assert_eq!(ids(&out), ["a@0"]);
        assert_eq!(r, Release { waiting: None, idle_expired: true, schema_wait: None });
        // The wait starts afresh for what comes next.
        al.push(arrival("a", 1, Some(20)));
        assert!(al.release(0, 1_600, caught_up, &mut out).waiting.is_some());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_caught_up_verdict_releases_only_messages_fetched_at_least_settle_ago() {
        let mut al = Aligner::new(["a".to_string(), "b".to_string()], 0, 10);
        al.push(Arrival { fetched_at: 100, ..arrival("a", 0, Some(10)) });
        al.push(Arrival { fetched_at: 105, ..arrival("a", 1, Some(20)) });
        let mut out = Vec::new();
        let caught_up = &mut |_: &str, _: Option<i64>| Position::CaughtUp;
        assert_eq!(al.release(0, 109, caught_up, &mut out).waiting, Some((1, Position::CaughtUp)));
        assert!(out.is_empty());
        al.release(0, 112, caught_up, &mut out);
        assert_eq!(ids(&out), ["a@0"], "the second was fetched 7 ms ago");
        al.release(0, 115, caught_up, &mut out);
        assert_eq!(ids(&out), ["a@0", "a@1"]);
        // Both topics with data: nothing depends on a verdict, nothing waits.
        al.push(Arrival { fetched_at: 200, ..arrival("a", 2, Some(30)) });
        al.push(Arrival { fetched_at: 200, ..arrival("b", 0, Some(25)) });
        al.release(0, 200, caught_up, &mut out);
        assert_eq!(ids(&out)[2..], ["b@0"], "b's head goes; a's waits for b (now empty) to settle");
    }

    #[test]
    fn bad_input_goes_as_soon_as_it_is_at_its_topics_head() {
        let mut al = two(0);
        al.push(arrival("a", 0, Some(10)));
        al.push(arrival("b", 0, None));
        al.push(arrival("b", 1, Some(5)));
        let mut out = Vec::new();
        al.release(0, 0, &mut |_, _| Position::CaughtUp, &mut out);
        assert_eq!(ids(&out), ["b@0", "b@1", "a@0"]);
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let mut al = two(0);
        al.push(arrival("a", 0, Some(10)));
        al.forget(0);
        assert_eq!((al.buffered(), al.pending()), (0, vec![]));
    }

    proptest! {
        /// However the messages are split into poll batches, whatever the clock
        /// does, and whenever positions are unknown, the order released is the
        /// order of the whole streams merged: fetch timing cannot change results.
        #[test]
        fn the_order_does_not_depend_on_how_messages_are_fetched(
            times in proptest::collection::vec(proptest::collection::vec(0i64..50, 0..12), 3),
            cuts in proptest::collection::vec(0usize..4, 0..40),
            unknown in proptest::collection::vec(any::<bool>(), 0..40),
        ) {
            let topics = ["a", "b", "c"];
            let streams: Vec<Vec<Arrival>> = times
                .iter()
                .zip(topics)
                .map(|(ts, t)| ts.iter().enumerate().map(|(o, &ms)| arrival(t, o as i64, Some(ms))).collect())
                .collect();
            let all: Vec<Arrival> = streams.iter().flatten().cloned().collect();
            let whole = merge_all(topics.map(String::from), all.clone());

            let mut al = Aligner::new(topics.map(String::from), 0, 0);
            let mut fetched = [0usize; 3];
            let mut out = Vec::new();
            // Each cut fetches the next message of one topic (or none: 3) and releases.
            for (step, &c) in cuts.iter().enumerate() {
                if c < 3 && fetched[c] < streams[c].len() {
                    al.push(streams[c][fetched[c]].clone());
                    fetched[c] += 1;
                }
                let ended = fetched;
                let lens: Vec<usize> = streams.iter().map(Vec::len).collect();
                let blind = unknown.get(step).copied().unwrap_or(false);
                al.release(0, step as Millis * 1_000, &mut |t, _| {
                    let i = topics.iter().position(|x| *x == t).expect("topic");
                    match (blind, ended[i] == lens[i]) {
                        (true, _) => Position::Unknown,
                        (false, true) => Position::CaughtUp,
                        (false, false) => Position::Behind,
                    }
                }, &mut out);
            }
            for (c, s) in streams.iter().enumerate() {
                for a in &s[fetched[c]..] {
                    al.push(a.clone());
                }
            }
            al.release(0, 0, &mut |_, _| Position::CaughtUp, &mut out);
            prop_assert_eq!(ids(&out), ids(&whole));
            prop_assert_eq!(al.buffered(), 0);
        }
    }
}
