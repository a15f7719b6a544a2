//! The invariants checked after every simulated run (beside those checked as
//! they happen: a checkpoint never covers an input whose outputs were not
//! acknowledged, and no instance stops with an error the simulation did not
//! cause):
//!
//! - no `(lead_id, version)` is published with two different contents;
//! - exactly once: a read_committed reader sees every record once;
//! - event time: the published records, de-duplicated by `(lead_id,
//!   version)`, are exactly what `leadscore score` prints for the stream;
//!   wall clock: every lead's versions run from 1 without a gap;
//! - every bad message is in the dead-letter topic (exactly once, for a
//!   read_committed reader in exactly-once mode), and no good one;
//! - each partition's state is on its owner only, and equals the reference's
//!   (event time) or holds exactly the leads it should (wall clock): an erased
//!   lead leaves no state on any instance.

use crate::harness::Plan;
use crate::scenario::{identity, Reference, Scenario};
use crate::world::World;
use leadscore_pipeline::messages::headers;
use leadscore_pipeline::{Guarantee, TimeMode, Topics};
use std::collections::{BTreeMap, BTreeSet};

/// What the checks found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<String>,
    /// Distinct records published.
    pub records: usize,
}

/// At most this many differences of one kind are reported.
const SHOWN: usize = 3;

/// See the module documentation.
pub fn check(w: &World, plan: &Plan, scenario: &Scenario, reference: &Reference, topics: &Topics) -> Outcome {
    let mut v = w.violations.clone();
    if crate::world::tracing() {
        dump_changelog(w, scenario, topics);
    }
    let read_committed = plan.guarantee == Guarantee::ExactlyOnce;
    let mut published: BTreeMap<(String, String, u64), Vec<String>> = BTreeMap::new();
    for topic in [&topics.score_changes, &topics.transitions] {
        for p in 0..scenario.partitions {
            let Some(log) = w.broker.log(topic, p) else { continue };
            for offset in 0..log.end() {
                if !log.visible(offset, read_committed) {
                    continue;
                }
                let json = String::from_utf8_lossy(log.records[offset as usize].value.as_deref().unwrap_or_default())
                    .into_owned();
                let (_, lead, version) = identity(&json);
                published.entry((topic.clone(), lead, version)).or_default().push(json);
            }
        }
    }
    for (id, copies) in &published {
        if let Some(other) = copies.iter().find(|c| *c != &copies[0]) {
            v.push(format!("{id:?} was published with different contents:\n    {}\n    {other}", copies[0]));
        }
        if read_committed && copies.len() > 1 {
            v.push(format!("exactly once: a read_committed reader sees {id:?} {} times", copies.len()));
        }
    }
    if plan.time_mode == TimeMode::EventTime {
        let missing: Vec<_> = reference.records.keys().filter(|k| !published.contains_key(*k)).take(SHOWN).collect();
        let extra: Vec<_> = published.keys().filter(|k| !reference.records.contains_key(*k)).take(SHOWN).collect();
        let wrong: Vec<_> = reference
            .records
            .iter()
            .filter_map(|(k, want)| published.get(k).filter(|got| &got[0] != want).map(|got| (want, &got[0])))
            .take(SHOWN)
            .collect();
        for k in missing {
            v.push(format!("missing record {k:?}: {}", reference.records[k]));
        }
        for k in extra {
            v.push(format!("a record the reference does not have {k:?}: {}", published[k][0]));
        }
        for (want, got) in wrong {
            v.push(format!("wrong record:\n    want {want}\n    got  {got}"));
        }
    } else {
        let mut versions: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        for (_, lead, version) in published.keys() {
            versions.entry(lead).or_default().insert(*version);
        }
        for (lead, vs) in versions {
            let max = vs.iter().next_back().copied().unwrap_or(0);
            if vs.len() as u64 != max {
                v.push(format!("lead {lead}: versions {vs:?} have gaps"));
            }
        }
    }
    dead_letters(w, scenario, topics, read_committed, &mut v);
    states(w, plan, scenario, reference, &mut v);
    Outcome { violations: v, records: published.len() }
}

fn dead_letters(w: &World, scenario: &Scenario, topics: &Topics, read_committed: bool, v: &mut Vec<String>) {
    let mut bad: BTreeSet<(String, u32, i64)> = BTreeSet::new();
    let mut good: BTreeSet<(String, u32, i64)> = BTreeSet::new();
    for topic in scenario.inputs.keys() {
        for p in 0..scenario.partitions {
            let Some(log) = w.broker.log(topic, p) else { continue };
            for (o, r) in log.records.iter().enumerate() {
                let id = (topic.clone(), p, o as i64);
                if r.value.as_deref().is_some_and(|b| b.starts_with(b"{\"broken\"")) {
                    bad.insert(id);
                } else {
                    good.insert(id);
                }
            }
        }
    }
    let mut seen: BTreeMap<(String, u32, i64), usize> = BTreeMap::new();
    let mut why: BTreeMap<(String, u32, i64), String> = BTreeMap::new();
    for p in 0..scenario.partitions {
        let Some(log) = w.broker.log(&topics.dead_letters, p) else { continue };
        for (o, r) in log.records.iter().enumerate() {
            if !log.visible(o as i64, read_committed) {
                continue;
            }
            let header = |name: &str| {
                r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let source = (
                header(headers::SOURCE_TOPIC).unwrap_or_default(),
                header(headers::SOURCE_PARTITION).and_then(|p| p.parse().ok()).unwrap_or(u32::MAX),
                header(headers::SOURCE_OFFSET).and_then(|o| o.parse().ok()).unwrap_or(-1),
            );
            let message = header(headers::ERROR_MESSAGE).unwrap_or_default();
            why.insert(source.clone(), format!("{}: {message}", header(headers::ERROR_CLASS).unwrap_or_default()));
            *seen.entry(source).or_default() += 1;
        }
    }
    for id in &bad {
        match seen.get(id) {
            None => v.push(format!("bad message {id:?} is not in the dead-letter topic")),
            Some(n) if read_committed && *n > 1 => v.push(format!("bad message {id:?} dead-lettered {n} times")),
            Some(_) => {}
        }
    }
    for id in seen.keys().filter(|id| good.contains(*id)) {
        v.push(format!("good message {id:?} in the dead-letter topic ({})", why.get(id).map_or("", String::as_str)));
    }
}

fn states(w: &World, plan: &Plan, scenario: &Scenario, reference: &Reference, v: &mut Vec<String>) {
    let owner = &w.final_owners;
    let mut found: BTreeSet<String> = BTreeSet::new();
    for (s, slot) in w.slots.iter().enumerate() {
        for p in 0..scenario.partitions {
            let leads = slot.store.current.leads(p);
            if owner.get(&p) != Some(&s) {
                if let Some((lead, _)) = leads.first() {
                    v.push(format!("slot {s} keeps state of partition {p} (lead {lead}) which it does not own"));
                }
                continue;
            }
            for (lead, bytes) in leads {
                let lead = lead.as_str().to_string();
                match reference.states.get(&lead) {
                    None => v.push(format!("slot {s} partition {p} holds lead {lead}, which the reference does not")),
                    Some(want) if plan.time_mode == TimeMode::EventTime && *want != bytes => {
                        v.push(format!("slot {s} partition {p}: the state of lead {lead} differs from the reference"))
                    }
                    Some(_) => {}
                }
                found.insert(lead);
            }
        }
    }
    for lead in reference.states.keys().filter(|l| !found.contains(*l)).take(SHOWN) {
        v.push(format!("lead {lead} is in no owner's state"));
    }
}

/// The changelog as written, for tracing a failure.
fn dump_changelog(w: &World, scenario: &Scenario, topics: &Topics) {
    for p in 0..scenario.partitions {
        let Some(log) = w.broker.log(&topics.changelog, p) else { continue };
        for (o, r) in log.records.iter().enumerate() {
            let header = |name: &str| {
                r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            eprintln!(
                "changelog {p}@{o}: key {:?} {} epoch {:?} {}{}{}",
                String::from_utf8_lossy(&r.key),
                if r.value.is_none() { "tombstone" } else { "value" },
                header(headers::CHANGELOG_EPOCH),
                header(headers::CHANGELOG_RECORD).unwrap_or_default(),
                if r.control.is_some() { " control" } else { "" },
                if r.compacted { " compacted" } else { "" },
            );
        }
    }
}
