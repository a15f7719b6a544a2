//! One seed's input stream and what it must produce.
//!
//! Realistic events (leadscore-synth's generator, with erasures) over a few
//! leads, spread over the input topics by kind as `leadscore gen --by-kind`
//! does and over the partitions by lead, produced live in event-time order
//! (each at a simulated instant, stamped with the matching event time), with
//! exact re-sends of earlier events (an at-least-once upstream) and bad
//! messages among them, then one closing event per partition far in the
//! future so that event time passes every timer. The reference is what
//! `leadscore score` prints for the good messages in production order, and the
//! lead states it ends with.

use leadscore_codec::encode_event_json;
use leadscore_core::{Event, Kind, Millis, Model};
use leadscore_pipeline::{offline, Admission};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_synth::{Generator, Rng, Settings};
use std::collections::BTreeMap;

/// Event time per simulated millisecond: a run of a few simulated seconds
/// covers months, so decay and 60 days of inactivity happen.
pub const SCALE: Millis = 3_600_000;
/// The admission rules of every simulated run and of its reference: the
/// default floor, and a horizon past the 400 days by which the last events
/// move event time (to fire every timer).
pub const ADMISSION: Admission = Admission {
    min_timestamp: leadscore_pipeline::admission::DEFAULT_MIN_TIMESTAMP,
    max_future: Some(1000 * DAY),
    unknown_kinds: leadscore_pipeline::UnknownKinds::DeadLetter,
};

/// Event time at simulated time 0.
pub const BASE: Millis = 1_767_225_600_000;
const DAY: Millis = 86_400_000;

/// The partition of a key (FNV-1a), as every simulated producer computes it.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    (hash % u64::from(partitions.max(1))) as u32
}

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Input {
    /// When (simulated milliseconds) it is produced.
    pub at: i64,
    pub topic: String,
    pub partition: u32,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// A good event (not a dead letter).
    pub good: bool,
}

/// What the stream must publish.
#[derive(Debug, Default)]
pub struct Reference {
    /// (topic, lead, version) -> the record's JSON.
    pub records: BTreeMap<(String, String, u64), String>,
    /// Every lead's encoded final state (erased leads are absent).
    pub states: BTreeMap<String, Vec<u8>>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Scenario {
    /// Input topics and their kinds (`None`: any).
    pub inputs: BTreeMap<String, Option<Kind>>,
    pub partitions: u32,
    pub messages: Vec<Input>,
}

/// The input topic of a kind, given how many topics the scenario has.
fn topic_of(kind: Kind, topics: usize) -> &'static str {
    match (kind, topics) {
        (Kind::PageView, 2..) => "page-views",
        (Kind::ProfileUpdate | Kind::OpportunityUpdate | Kind::Erase, 3..) => "lead-profiles",
        _ => "lead-events",
    }
}

impl Scenario {
    /// A scenario of `events` events over `leads` leads on `topics` input
    /// topics (1 to 3) and `partitions` partitions.
    pub fn generate(rng: &mut Rng, leads: u64, events: usize, topics: usize, partitions: u32) -> Scenario {
        let mut inputs: BTreeMap<String, Option<Kind>> = [("lead-events".to_string(), None)].into();
        if topics >= 2 {
            inputs.insert("page-views".into(), Some(Kind::PageView));
        }
        if topics >= 3 {
            inputs.insert("lead-profiles".into(), None);
        }
        let settings = Settings { seed: rng.next_u64(), leads, start: BASE, step: 1, erase_share: 0.03, sweep: false };
        let mut generator = Generator::new(settings);
        let mut messages: Vec<Input> = Vec::new();
        let (mut at, mut last_time) = (0i64, BASE);
        let mut line = Vec::with_capacity(512);
        // Erased leads, and how many times each id was erased (its next life
        // gets a new id).
        let mut lives: BTreeMap<String, u32> = BTreeMap::new();
        let mut erased: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for _ in 0..events {
            at += rng.below(30) as i64;
            let mut event: Event = generator.next_event();
            let life = lives.get(event.lead_id.as_str()).copied().unwrap_or(0);
            if life > 0 {
                event.lead_id = format!("{}-life-{life}", event.lead_id).as_str().into();
            }
            if event.kind == Kind::Erase {
                let original = event.lead_id.as_str().split("-life-").next().unwrap_or_default().to_string();
                *lives.entry(original).or_default() += 1;
            }
            // Strictly increasing event times: the order across topics is exact.
            event.timestamp = (BASE + at * SCALE + rng.below(SCALE as u64 / 2) as i64).max(last_time + 1);
            last_time = event.timestamp;
            line.clear();
            encode_event_json(&mut line, &event);
            let key = event.lead_id.as_str().as_bytes().to_vec();
            let topic = topic_of(event.kind, topics).to_string();
            let partition = partition_of(&key, partitions);
            messages.push(Input { at, topic, partition, key, payload: line.clone(), good: true });
            if event.kind == Kind::Erase {
                erased.insert(event.lead_id.as_str().to_string());
            }
            if rng.chance(0.05) {
                // An at-least-once upstream sends an earlier event again (not
                // one of an erased lead: it would bring the lead back).
                // A recent one: the lead still remembers its id (the seed model
                // remembers 32 per lead). A re-send it has forgotten is a late
                // event, whose place among other topics' events depends on when
                // it is fetched, so no reference could say where it goes.
                let recent = messages.len().min(16);
                let again = messages[messages.len() - 1 - rng.below(recent as u64) as usize].clone();
                let lead = String::from_utf8_lossy(&again.key).into_owned();
                if again.good && !erased.contains(&lead) {
                    messages.push(Input { at, ..again });
                }
            }
            if rng.chance(0.03) {
                let topic = rng.pick(&inputs.keys().cloned().collect::<Vec<_>>()).clone();
                let key = event.lead_id.as_str().as_bytes().to_vec();
                let partition = partition_of(&key, partitions);
                let payload = format!("{{\"broken\": {}", rng.below(1000)).into_bytes();
                messages.push(Input { at, topic, partition, key, payload, good: false });
            }
        }
        // Event time passes every timer in every partition.
        let end = last_time + 400 * DAY;
        for p in 0..partitions {
            let lead = (0..).map(|k| format!("close-{p}-{k}")).find(|l| partition_of(l.as_bytes(), partitions) == p);
            let lead = lead.expect("some lead id falls in every partition");
            let mut event = Event::new(format!("close-{p}").as_str(), lead.as_str(), Kind::PageView, end);
            event.properties.set_text(leadscore_core::Field::Url, "https://example.com/");
            line.clear();
            encode_event_json(&mut line, &event);
            messages.push(Input {
                at: at + 1,
                topic: topic_of(Kind::PageView, topics).to_string(),
                partition: p,
                key: lead.into_bytes(),
                payload: line.clone(),
                good: true,
            });
        }
        Scenario { inputs, partitions, messages }
    }

    /// What `leadscore score` prints for the good messages in production
    /// order, and the states it ends with.
    pub fn reference(&self, model: &Model, score_changes: &str, transitions: &str) -> Reference {
        let mut file = Vec::new();
        for m in self.messages.iter().filter(|m| m.good) {
            file.extend_from_slice(&m.payload);
            file.push(b'\n');
        }
        let store = MemoryStore::new();
        let mut out = Vec::new();
        let options = offline::Options { admission: ADMISSION, ..Default::default() };
        offline::score_into(&store, model, &file[..], &options, &mut out, &mut std::io::sink())
            .expect("in-memory scoring");
        let mut reference = Reference::default();
        for line in String::from_utf8(out).expect("UTF-8").lines() {
            let (kind, lead, version) = identity(line);
            let topic = if kind == "score_change" { score_changes } else { transitions };
            reference.records.insert((topic.to_string(), lead, version), line.to_string());
        }
        let leads: Vec<String> = self.messages.iter().map(|m| String::from_utf8_lossy(&m.key).into_owned()).collect();
        let names: Vec<&str> = leads.iter().map(String::as_str).collect();
        for (lead, state) in names.iter().zip(store.get_states(0, &names).expect("states")) {
            if let Some(state) = state {
                reference.states.insert(lead.to_string(), state);
            }
        }
        reference
    }
}

/// (kind, lead id, version) of an output record's JSON.
pub fn identity(json: &str) -> (String, String, u64) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let text = |name: &str| v[name].as_str().unwrap_or_default().to_string();
    (text("kind"), text("lead_id"), v["version"].as_u64().unwrap_or(0))
}
