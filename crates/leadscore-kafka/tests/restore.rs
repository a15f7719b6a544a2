//! Changelog restore, record by record, on the in-process mock broker: states
//! up to the last checkpoint marker are applied with their timers, tombstones
//! delete, the records of an unfinished step after the last marker are left for
//! the replay, and a second restore reads only what is new.

use leadscore_config::seed_model;
use leadscore_core::engine::apply;
use leadscore_core::{Event, Kind, LeadState, Outputs, Properties};
use leadscore_kafka::restore::Restorer;
use leadscore_kafka::Counters;
use leadscore_pipeline::messages::headers;
use leadscore_store::memory::MemoryStore;
use leadscore_store::{encode_state, Checkpoint, StateStore};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::Duration;

const CHANGELOG: &str = "leadscore-state-changelog";

/// The encoded state of a lead after one event at `at`.
fn state(lead: &str, at: i64) -> (Vec<u8>, Option<i64>) {
    let model = seed_model();
    let mut s: Option<LeadState> = None;
    let event = Event {
        event_id: format!("e-{lead}-{at}").as_str().into(),
        lead_id: lead.into(),
        kind: Kind::PageView,
        timestamp: at,
        properties: Properties::default(),
    };
    apply(&model, &mut s, &event, &mut Outputs::default());
    let s = s.expect("a lead");
    let mut bytes = Vec::new();
    encode_state(&s, &mut bytes);
    (bytes, s.next_due)
}

fn marker(next_offset: i64) -> Vec<u8> {
    Checkpoint {
        next_offsets: [("lead-events".to_string(), next_offset)].into_iter().collect(),
        model_version: seed_model().version.clone(),
        ..Checkpoint::default()
    }
    .encode()
}

enum Rec {
    State(&'static str, Vec<u8>),
    Tombstone(&'static str),
    Marker(Vec<u8>),
}

fn publish(bootstrap: &str, records: &[Rec]) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for r in records {
        let record = BaseRecord::<[u8], [u8]>::to(CHANGELOG).partition(0);
        let record = match r {
            Rec::State(lead, bytes) => record.key(lead.as_bytes()).payload(bytes),
            Rec::Tombstone(lead) => record.key(lead.as_bytes()),
            Rec::Marker(bytes) => record.key(&[][..]).payload(bytes).headers(
                OwnedHeaders::new().insert(Header { key: headers::CHANGELOG_RECORD, value: Some("checkpoint") }),
            ),
        };
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

#[test]
fn restores_up_to_the_last_marker_with_timers_and_tombstones() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(CHANGELOG, 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let model = seed_model();
    let (a1, _) = state("L-a", 1_000);
    let (a2, a2_due) = state("L-a", 2_000);
    let (b, _) = state("L-b", 1_500);
    let (c, c_due) = state("L-c", 1_700);
    publish(
        &bootstrap,
        &[
            Rec::State("L-a", a1),
            Rec::State("L-b", b),
            Rec::Marker(marker(10)),
            Rec::State("L-a", a2.clone()),
            Rec::Tombstone("L-b"),
            Rec::Marker(marker(20)),
            // An unfinished step: published, never committed.
            Rec::State("L-c", c.clone()),
        ],
    );
    let config = ClientConfig::new().set("bootstrap.servers", &bootstrap).clone();
    let restorer = Restorer::new(&config, CHANGELOG, Duration::from_secs(10)).expect("restorer");
    let store = MemoryStore::new();
    let counters = Counters::default();

    let done = restorer.restore(0, &store, &model, &counters).expect("restore");
    assert_eq!((done.from, done.to, done.records, done.ignored), (0, 7, 4, 1));
    let states = store.get_states(0, &["L-a", "L-b", "L-c"]).expect("states");
    assert_eq!(states, vec![Some(a2.clone()), None, None], "latest state of a, b erased, c not committed");
    let cp = store.checkpoint(0).expect("read").expect("a checkpoint");
    assert_eq!(cp.next_offsets.get("lead-events"), Some(&20));
    assert_eq!(cp.changelog_next_offset, Some(6), "just after the last marker");
    let timers = store.due_timers(0, None, i64::MAX, 10).expect("timers");
    assert_eq!(timers, vec![(a2_due.expect("a timer"), "L-a".into())], "one timer, the latest state's");

    // The unfinished step is replayed by its new owner, which then commits.
    publish(&bootstrap, &[Rec::State("L-c", c.clone()), Rec::Marker(marker(25))]);
    let again = restorer.restore(0, &store, &model, &counters).expect("second restore");
    assert_eq!((again.from, again.to, again.records, again.ignored), (6, 9, 1, 0), "reads from its last marker");
    assert_eq!(store.get_states(0, &["L-c"]).expect("state"), vec![Some(c)]);
    let mut timers = store.due_timers(0, None, i64::MAX, 10).expect("timers");
    timers.sort();
    let mut want = vec![(a2_due.expect("due"), "L-a".into()), (c_due.expect("due"), "L-c".into())];
    want.sort();
    assert_eq!(timers, want);

    // Nothing new: nothing read. Another partition: empty, nothing to do.
    let none = restorer.restore(0, &store, &model, &counters).expect("third restore");
    assert_eq!((none.from, none.to, none.records), (9, 9, 0));
    assert_eq!(restorer.restore(1, &store, &model, &counters).expect("empty").records, 0);
    assert_eq!(Counters::get(&counters.restores), 2);
}
