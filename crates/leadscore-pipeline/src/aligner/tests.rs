//! Tests of the aligner module.

use super::*;
use leadscore_codec::ErrorClass;
use leadscore_core::Kind;
use proptest::prelude::*;

fn arrival(topic: &str, offset: i64, time: Option<Millis>) -> Arrival {
    let message = InputMessage { topic: topic.into(), partition: 0, offset, key: None, payload: None, timestamp: None };
    let event = match time {
        Some(t) => Ok(Event::new(format!("{topic}-{offset}"), "L-1", Kind::PageView, t)),
        None => Err(DecodeError::new(ErrorClass::NotJson, "bad")),
    };
    Arrival { message, event, fetched_at: 0, schema_wait: None }
}

fn ids(out: &[Arrival]) -> Vec<String> {
    out.iter().map(|a| format!("{}@{}", a.message.topic, a.message.offset)).collect()
}

#[test]
fn partitions_keep_their_own_messages_in_the_store_they_share() {
    let mut al = Aligner::new(["a".to_string()], 0, 0);
    let on = |partition: Partition, offset: i64| {
        let a = arrival("a", offset, Some(100 - offset));
        Arrival { message: InputMessage { partition, ..a.message.clone() }, ..a }
    };
    for offset in 0..10 {
        for partition in 0..3 {
            al.push(on(partition, offset));
        }
    }
    al.forget(1);
    assert_eq!(al.buffered(), 20);
    let mut out = Vec::new();
    al.release(2, 0, &mut |_, _| Position::CaughtUp, &mut out);
    assert!(out.iter().all(|a| a.message.partition == 2), "only the partition asked for");
    assert_eq!(out.iter().map(|a| a.message.offset).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(al.pending(), [0]);
    out.clear();
    al.release(0, 0, &mut |_, _| Position::CaughtUp, &mut out);
    assert_eq!(out.len(), 10);
    assert_eq!(al.buffered(), 0);
    // What was released (or forgotten) is room for what comes next, whatever
    // its partition: the store is as large as the most held at once.
    for offset in 10..40 {
        al.push(on(0, offset));
    }
    assert_eq!(al.held.positions(), 30);
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
    let r = al.release(0, 1_499, caught_up, &mut out);
    assert_eq!((r.waiting.is_some(), r.until), (true, Some(1_500)), "499 ms: still waiting, until 1,500");
    assert!(out.is_empty());
    let r = al.release(0, 1_500, caught_up, &mut out);
    assert_eq!(ids(&out), ["a@0"]);
    assert_eq!(r, Release { waiting: None, until: None, idle_expired: true, schema_wait: None });
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
    let r = al.release(0, 109, caught_up, &mut out);
    assert_eq!((r.waiting, r.until), (Some((1, Position::CaughtUp)), Some(110)), "a@0 settles at 110");
    assert!(out.is_empty());
    let r = al.release(0, 112, caught_up, &mut out);
    assert_eq!(ids(&out), ["a@0"], "the second was fetched 7 ms ago");
    assert_eq!(r.until, Some(115), "a@1 settles at 115");
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
