//! Event-time order across co-partitioned input topics, across poll batches.
//!
//! Partition *p* of every input topic is one partition group: one lead's page
//! views, clicks and downloads arrive on different topics, but must be applied
//! in event-time order, or the results would depend on which fetch came back
//! first. The [`Aligner`] holds each group's fetched messages in one queue per
//! topic and releases them by merging the queue heads by event time. While a
//! topic's queue is empty, the next message of that topic could be earlier than
//! every head, so the group waits, as Kafka Streams does (`max.task.idle.ms`),
//! unless the empty topic is known to be caught up (nothing more on the broker)
//! or the group has waited `max_idle` already; then it goes ahead with what it
//! has. Waiting is bounded in time, so the buffer is bounded by `max_idle` times
//! the input rate. With a single input topic nothing ever waits.
//!
//! Pure: the caller says what time it is and whether a topic-partition is
//! caught up; the order released depends only on the messages and on those
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
}

impl Arrival {
    /// The merge key: bad input has no event time and goes first, as soon as
    /// it is at the head of its topic (it changes no state).
    fn time(&self) -> Millis {
        self.event.as_ref().map_or(Millis::MIN, |e| e.timestamp)
    }
}

/// One partition group's fetched, not yet released messages.
#[derive(Debug, Default)]
struct Group {
    /// One queue per input topic, in offset order.
    queues: Vec<VecDeque<Arrival>>,
    /// The next offset expected from each topic: the last fetched + 1, or where
    /// the partition's checkpoint resumes.
    next: Vec<Option<i64>>,
    /// When this group started waiting for an empty topic.
    waiting_since: Option<Millis>,
}

/// What one [`Aligner::release`] did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Release {
    /// The group is holding messages back, waiting for an empty topic.
    pub waiting: bool,
    /// The wait ran out (`max_idle`) and the group went ahead without it.
    pub idle_expired: bool,
}

/// Holds partition groups' messages until they can be applied in event-time
/// order; see the module docs.
#[derive(Debug)]
pub struct Aligner {
    topics: Vec<String>,
    max_idle: Millis,
    groups: BTreeMap<Partition, Group>,
    buffered: usize,
}

impl Aligner {
    /// `topics`: every input topic of the group; `max_idle`: how long a group
    /// waits for an empty topic that is not caught up (0: never waits).
    pub fn new(topics: impl IntoIterator<Item = String>, max_idle: Millis) -> Aligner {
        Aligner { topics: topics.into_iter().collect(), max_idle, groups: BTreeMap::new(), buffered: 0 }
    }

    fn group(&mut self, partition: Partition) -> &mut Group {
        let n = self.topics.len();
        self.groups.entry(partition).or_insert_with(|| Group {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            next: vec![None; n],
            waiting_since: None,
        })
    }

    /// A newly owned partition resumes where its checkpoint says (next offset
    /// per topic): an empty topic whose checkpoint is at the broker's end is
    /// then known to be caught up before anything is fetched from it.
    pub fn assign(&mut self, partition: Partition, next_offsets: &BTreeMap<String, i64>) {
        self.forget(partition);
        let topics = self.topics.clone();
        let group = self.group(partition);
        for (i, topic) in topics.iter().enumerate() {
            group.next[i] = next_offsets.get(topic).copied();
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

    /// Takes the messages of `partition` that can be applied now, in the order
    /// to apply them. `caught_up(topic, next_offset)` says whether the broker
    /// has nothing at or after `next_offset` for that topic in this partition
    /// (`None`: nothing fetched and no checkpoint).
    pub fn release(
        &mut self,
        partition: Partition,
        now: Millis,
        caught_up: &mut dyn FnMut(&str, Option<i64>) -> bool,
        out: &mut Vec<Arrival>,
    ) -> Release {
        let Some(group) = self.groups.get_mut(&partition) else { return Release::default() };
        let expired = group.waiting_since.is_some_and(|since| now.saturating_sub(since) >= self.max_idle);
        let before = out.len();
        let mut blocked = false;
        // An empty topic, once found caught up, is not asked again in this call.
        let mut clear = vec![false; group.queues.len()];
        loop {
            let head = (0..group.queues.len())
                .filter_map(|i| group.queues[i].front().map(|a| (a.time(), i)))
                .min_by_key(|&(t, i)| (t, i));
            let Some((_, first)) = head else { break };
            for (i, ok) in clear.iter_mut().enumerate() {
                if group.queues[i].is_empty() && !expired && !*ok {
                    *ok = caught_up(&self.topics[i], group.next[i]);
                    blocked |= !*ok;
                }
            }
            if blocked {
                break;
            }
            out.push(group.queues[first].pop_front().expect("a head"));
        }
        self.buffered -= out.len() - before;
        let release = Release { waiting: blocked, idle_expired: expired && out.len() > before };
        if blocked {
            group.waiting_since.get_or_insert(now);
        } else {
            group.waiting_since = None;
        }
        release
    }
}

/// Every message of one batch in apply order, as if every topic were caught
/// up: each topic's messages in offset order, merged by event time.
pub fn merge_all(topics: impl IntoIterator<Item = String>, arrivals: Vec<Arrival>) -> Vec<Arrival> {
    let mut aligner = Aligner::new(topics, 0);
    let mut out = Vec::with_capacity(arrivals.len());
    for a in arrivals {
        aligner.push(a);
    }
    for p in aligner.pending() {
        aligner.release(p, 0, &mut |_, _| true, &mut out);
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
        Arrival { message, event }
    }

    fn ids(out: &[Arrival]) -> Vec<String> {
        out.iter().map(|a| format!("{}@{}", a.message.topic, a.message.offset)).collect()
    }

    fn two() -> Aligner {
        Aligner::new(["a".to_string(), "b".to_string()], 500)
    }

    #[test]
    fn a_single_topic_never_waits() {
        let mut al = Aligner::new(["a".to_string()], 500);
        al.push(arrival("a", 0, Some(10)));
        al.push(arrival("a", 1, Some(5)));
        let mut out = Vec::new();
        let r = al.release(0, 0, &mut |_, _| false, &mut out);
        assert_eq!(ids(&out), ["a@0", "a@1"], "offset order within a topic");
        assert_eq!(r, Release::default());
        assert_eq!(al.buffered(), 0);
    }

    #[test]
    fn an_empty_topic_that_is_behind_holds_the_group_until_it_arrives() {
        let mut al = two();
        al.push(arrival("a", 0, Some(10)));
        al.push(arrival("a", 1, Some(30)));
        let mut out = Vec::new();
        let r = al.release(0, 0, &mut |_, _| false, &mut out);
        assert!(out.is_empty() && r.waiting && al.buffered() == 2);
        // The next poll brings b's message, earlier than a's second.
        al.push(arrival("b", 0, Some(20)));
        let r = al.release(0, 100, &mut |_, _| false, &mut out);
        assert_eq!(ids(&out), ["a@0", "b@0"]);
        assert!(r.waiting, "b is empty again and a's next (30) could be after b's next");
        assert_eq!(al.buffered(), 1);
    }

    #[test]
    fn a_caught_up_topic_does_not_hold_the_group() {
        let mut al = two();
        al.push(arrival("a", 0, Some(10)));
        let mut asked = Vec::new();
        let mut out = Vec::new();
        let r = al.release(
            0,
            0,
            &mut |t, next| {
                asked.push((t.to_string(), next));
                true
            },
            &mut out,
        );
        assert_eq!(ids(&out), ["a@0"]);
        assert!(!r.waiting);
        assert_eq!(asked, [("b".to_string(), None)], "asked once, about the empty topic");
    }

    #[test]
    fn the_checkpoint_says_where_an_unfetched_topic_resumes() {
        let mut al = two();
        al.assign(0, &BTreeMap::from([("b".to_string(), 42)]));
        al.push(arrival("a", 7, Some(10)));
        let mut seen = None;
        al.release(
            0,
            0,
            &mut |_, next| {
                seen = next;
                true
            },
            &mut Vec::new(),
        );
        assert_eq!(seen, Some(42));
    }

    #[test]
    fn the_wait_is_bounded_by_max_idle() {
        let mut al = two();
        al.push(arrival("a", 0, Some(10)));
        let mut out = Vec::new();
        assert!(al.release(0, 1_000, &mut |_, _| false, &mut out).waiting);
        assert!(al.release(0, 1_499, &mut |_, _| false, &mut out).waiting, "499 ms: still waiting");
        assert!(out.is_empty());
        let r = al.release(0, 1_500, &mut |_, _| false, &mut out);
        assert_eq!(ids(&out), ["a@0"]);
        assert_eq!(r, Release { waiting: false, idle_expired: true });
        // The wait starts afresh for what comes next.
        al.push(arrival("a", 1, Some(20)));
        assert!(al.release(0, 1_600, &mut |_, _| false, &mut out).waiting);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn max_idle_zero_never_waits() {
        let mut al = Aligner::new(["a".to_string(), "b".to_string()], 0);
        al.push(arrival("a", 0, Some(10)));
        let mut out = Vec::new();
        al.release(0, 0, &mut |_, _| false, &mut out);
        assert!(out.is_empty(), "the first call starts the wait");
        al.release(0, 0, &mut |_, _| false, &mut out);
        assert_eq!(ids(&out), ["a@0"]);
    }

    #[test]
    fn bad_input_goes_as_soon_as_it_is_at_its_topics_head() {
        let mut al = two();
        al.push(arrival("a", 0, Some(10)));
        al.push(arrival("b", 0, None));
        al.push(arrival("b", 1, Some(5)));
        let mut out = Vec::new();
        al.release(0, 0, &mut |_, _| true, &mut out);
        assert_eq!(ids(&out), ["b@0", "b@1", "a@0"]);
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let mut al = two();
        al.push(arrival("a", 0, Some(10)));
        al.forget(0);
        assert_eq!((al.buffered(), al.pending()), (0, vec![]));
    }

    proptest! {
        /// However the messages are split into poll batches, and whatever the
        /// clock does (short of the idle limit), the order released is the
        /// order of the whole streams merged: fetch timing cannot change results.
        #[test]
        fn the_order_does_not_depend_on_how_messages_are_fetched(
            times in proptest::collection::vec(proptest::collection::vec(0i64..50, 0..12), 3),
            cuts in proptest::collection::vec(0usize..4, 0..40),
        ) {
            let topics = ["a", "b", "c"];
            let streams: Vec<Vec<Arrival>> = times
                .iter()
                .zip(topics)
                .map(|(ts, t)| ts.iter().enumerate().map(|(o, &ms)| arrival(t, o as i64, Some(ms))).collect())
                .collect();
            let all: Vec<Arrival> = streams.iter().flatten().cloned().collect();
            let whole = merge_all(topics.map(String::from), all.clone());

            let mut al = Aligner::new(topics.map(String::from), 1_000_000);
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
                al.release(0, step as Millis, &mut |t, _| {
                    let i = topics.iter().position(|x| *x == t).expect("topic");
                    ended[i] == lens[i]
                }, &mut out);
            }
            for (c, s) in streams.iter().enumerate() {
                for a in &s[fetched[c]..] {
                    al.push(a.clone());
                }
            }
            al.release(0, 0, &mut |_, _| true, &mut out);
            prop_assert_eq!(ids(&out), ids(&whole));
            prop_assert_eq!(al.buffered(), 0);
        }
    }
}
