//! Changing the model under a running partition: a stream is processed under
//! the seed model, then the rest of it under a changed model on the same
//! store. Leads migrate by slot name as they are next touched, are
//! re-evaluated as of the switch, and publish what changed with cause
//! `model_change`; the reference is the same stream under the changed model
//! from the start (for changes that leave lead state alone) or the rule the
//! change makes (for changes that reset or re-weigh state).

use leadscore_codec::encode_event_json;
use leadscore_config::{parse_model, SEED_MODEL_TOML};
use leadscore_core::Model;
use leadscore_pipeline::{InputMessage, OutputTopic, Processor, Step, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::{decode_migrating, StateStore};
use leadscore_synth::{Generator, Settings};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

mod common;
use common::messages;

/// `n` generated events as JSON lines; an event every 6 hours on average
/// over 40 leads, so that windows slide and leads go quiet for 60 days.
fn lines(n: usize, seed: u64) -> Vec<String> {
    let mut g =
        Generator::new(Settings { seed, leads: 40, step: 6 * 3_600_000, erase_share: 0.005, ..Settings::default() });
    (0..n)
        .map(|_| {
            let mut buf = Vec::new();
            encode_event_json(&mut buf, &g.next_event());
            String::from_utf8(buf).expect("UTF-8")
        })
        .collect()
}

fn model(edit: impl Fn(String) -> String) -> Model {
    parse_model(&edit(SEED_MODEL_TOML.to_string())).expect("the changed model compiles")
}

/// `t` with the value of the first `key = ...` line after `anchor` replaced.
fn set_after(t: &str, anchor: &str, key: &str, value: &str) -> String {
    let at = t.find(anchor).expect("the anchor") + anchor.len();
    let start = at + t[at..].find(&format!("\n{key} = ")).expect("the key") + key.len() + 4;
    let end = start + t[start..].find('\n').expect("a line end");
    format!("{}{value}{}", &t[..start], &t[end..])
}

fn version(v: &str) -> impl Fn(String) -> String + '_ {
    move |t| t.replace("version = \"seed-1\"", &format!("version = \"{v}\""))
}

fn published(step: &Step) -> Vec<Value> {
    step.outputs
        .iter()
        .filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
        .map(|o| serde_json::from_slice(o.value.as_deref().expect("a value")).expect("JSON"))
        .collect()
}

/// Processes `msgs` in steps of 7 under `model` (event time), committing each.
fn run(store: &MemoryStore, model: &Model, msgs: &[InputMessage]) -> Vec<Value> {
    let topics = Topics::default();
    let p = Processor::new(model, store, &topics, TimeMode::EventTime);
    let mut out = Vec::new();
    for chunk in msgs.chunks(7) {
        let step = p.process(0, chunk, 0).expect("a step");
        out.extend(published(&step));
        store.write(&step.write).expect("commit");
    }
    out
}

fn lead_of(r: &Value) -> String {
    r["lead_id"].as_str().expect("lead").to_string()
}

/// Each lead's segments after `records` (applied to `start`).
fn membership(start: &BTreeMap<String, BTreeSet<String>>, records: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m = start.clone();
    for r in records.iter().filter(|r| r["kind"] == "segment_transition") {
        let set = m.entry(lead_of(r)).or_default();
        let segment = r["segment"].as_str().expect("segment").to_string();
        match r["transition"].as_str() {
            Some("entered") => assert!(set.insert(segment), "entered twice: {r}"),
            _ => assert!(set.remove(&segment), "exited without entering: {r}"),
        }
    }
    m
}

fn leads_in(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["lead_id"].as_str().expect("id").into())
        .collect()
}

/// A record without what differs between two runs that agree: its version
/// (a count of the lead's records) and the model version.
fn comparable(mut r: Value) -> String {
    let o = r.as_object_mut().expect("an object");
    o.remove("version");
    o.remove("model_version");
    r.to_string()
}

const EVENTS: usize = 2400;
const SWITCH: usize = 1600;

/// A partition's per-segment member counts must equal a recount over its
/// stored states (migrated by name, as a later step would load them).
fn assert_counts_match_states(store: &MemoryStore, model: &Model, leads: &BTreeSet<String>) {
    let c = store.checkpoint(0).expect("read").expect("a checkpoint");
    let names: Vec<&str> = leads.iter().map(String::as_str).collect();
    let mut members = vec![0i64; model.segments.len()];
    for bytes in store.get_states(0, &names).expect("read").into_iter().flatten() {
        let (s, _) = decode_migrating(&bytes, model, &c.layouts).expect("decodes");
        for m in &s.segments {
            members[usize::from(m.segment)] += 1;
        }
    }
    let mut counted = c.counts.members.clone();
    counted.resize(members.len(), 0);
    assert_eq!(counted, members, "per-segment counts");
}

#[test]
fn reordered_rules_tallies_and_segments_under_a_new_version_change_nothing_else() {
    let seed = model(|t| t);
    // Every block of each kind in reverse order.
    let reversed = model(|t| {
        let t = version("seed-2")(t);
        let mut parts: Vec<&str> = t.split("\n[[").collect();
        let head = parts.remove(0);
        let (mut rules, mut others) = (Vec::new(), Vec::new());
        for p in parts {
            if p.starts_with("segments]]") || p.starts_with("tallies]]") || p.starts_with("rules]]") {
                rules.push(p);
            } else {
                others.push(p);
            }
        }
        let kind = |k: &str| rules.iter().filter(|p| p.starts_with(k)).rev().copied().collect::<Vec<_>>();
        let mut out = head.to_string();
        for p in kind("rules]]").into_iter().chain(others).chain(kind("tallies]]")).chain(kind("segments]]")) {
            out.push_str("\n[[");
            out.push_str(p);
        }
        out
    });
    assert_eq!(reversed.segments.first().map(|s| s.name.as_str()), Some("open-opportunity"));
    let l = lines(EVENTS, 3);
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);

    let reference = run(&MemoryStore::new(), &seed, &msgs);
    let store = MemoryStore::new();
    let mut switched = run(&store, &seed, &msgs[..SWITCH]);
    let after = run(&store, &reversed, &msgs[SWITCH..]);
    assert!(after.iter().all(|r| r["cause"] != "model_change"), "nothing changed, nothing to publish");
    assert!(after.iter().all(|r| r["model_version"] == "seed-2"));
    switched.extend(after);
    // Reasons follow the rules' order, and transitions of one instant the
    // segments' order: compare them as sets.
    let normal = |v: Vec<Value>| {
        let mut v: Vec<String> = v
            .into_iter()
            .map(|mut r| {
                if let Some(reasons) = r.get_mut("reasons").and_then(Value::as_array_mut) {
                    reasons.sort_by_key(|x| x.to_string());
                }
                comparable(r)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(normal(switched), normal(reference));
    assert_counts_match_states(&store, &reversed, &leads_in(&l));
}

#[test]
fn changed_segments_and_grades_are_published_with_cause_model_change_as_of_the_switch() {
    let seed = model(|t| t);
    // A lower sales-ready threshold, a new segment, a removed one, and a
    // grade criterion worth more.
    let changed = model(|t| {
        let t = version("seed-2")(t)
            .replace(
                "when = [{ score = { gte = 76 } }, { grade = [\"A\", \"B\"] }]",
                "when = [{ score = { gte = 40 } }, { grade = [\"A\", \"B\"] }]",
            )
            .replace(
                "[[segments]]\nname = \"surging\"\ndescription = \"Rule points of the last 30 days add up to 20 or more.\"\nwhen = [{ tally = \"points-30d\", gte = 20 }]\n",
                "[[segments]]\nname = \"warm\"\ndescription = \"Score 20 or more.\"\nwhen = [{ score = { gte = 20 } }]\n",
            );
        set_after(&t, "name = \"title-manager\"", "fit", "40")
    });
    assert!(changed.segment_index("surging").is_none() && changed.segment_index("warm").is_some());
    let l = lines(EVENTS, 9);
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);

    let reference = run(&MemoryStore::new(), &changed, &msgs);
    let store = MemoryStore::new();
    let before = run(&store, &seed, &msgs[..SWITCH]);
    let after = run(&store, &changed, &msgs[SWITCH..]);

    let touched = leads_in(&l[SWITCH..]);
    let at_switch = membership(&BTreeMap::new(), &before);
    let ours = membership(&at_switch, &after);
    let theirs = membership(&BTreeMap::new(), &reference);
    let mut compared = 0;
    for lead in &touched {
        let (a, b) = (ours.get(lead).cloned().unwrap_or_default(), theirs.get(lead).cloned().unwrap_or_default());
        assert_eq!(a, b, "segments of {lead} after the switch");
        compared += 1;
    }
    assert!(compared > 20, "{compared} leads compared");

    // What the events did after the switch is what the changed model does.
    let by_event = |v: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = v
            .iter()
            .filter(|r| r["kind"] == "score_change" && !r["event_id"].is_null())
            .filter(|r| touched.contains(&lead_of(r)))
            .map(|r| comparable(r.clone()))
            .collect();
        v.sort();
        v
    };
    let ours_after = by_event(&after);
    let theirs_after: Vec<String> = {
        let ids: BTreeSet<String> = l[SWITCH..]
            .iter()
            .map(|x| serde_json::from_str::<Value>(x).expect("JSON")["event_id"].as_str().expect("id").to_string())
            .collect();
        let v: Vec<Value> =
            reference.iter().filter(|r| r["event_id"].as_str().is_some_and(|id| ids.contains(id))).cloned().collect();
        by_event(&v)
    };
    assert_eq!(ours_after, theirs_after);

    // The re-evaluation: cause model_change, stamped at or after the switch,
    // exits from the removed segment, entries to the new one, grade changes
    // as score changes without an event.
    let switch_time = serde_json::from_str::<Value>(&l[SWITCH - 1]).expect("JSON")["timestamp"].clone();
    let remodel: Vec<&Value> = after
        .iter()
        .filter(|r| r["cause"] == "model_change" || (r["kind"] == "score_change" && r["event_id"].is_null()))
        .collect();
    assert!(remodel.iter().all(|r| r["timestamp"].as_str() >= switch_time.as_str()), "as of the switch");
    let count = |seg: &str, dir: &str| remodel.iter().filter(|r| r["segment"] == seg && r["transition"] == dir).count();
    let surging_then = touched.iter().filter(|l| at_switch.get(*l).is_some_and(|s| s.contains("surging"))).count();
    assert!(surging_then > 0, "the stream has surging leads to retire");
    assert_eq!(count("surging", "exited"), surging_then, "every touched member leaves the removed segment");
    assert!(count("warm", "entered") > 0 && count("sales-ready", "entered") > 0);
    let regraded: Vec<&&Value> = remodel.iter().filter(|r| r["kind"] == "score_change").collect();
    assert!(!regraded.is_empty(), "a criterion worth more changes grades");
    assert!(regraded
        .iter()
        .all(|r| r["delta"] == 0.0 && r["grade"] != r["previous_grade"] && r["reasons"] == serde_json::json!([])));
    assert_counts_match_states(&store, &changed, &leads_in(&l));
}

#[test]
fn a_renamed_tally_starts_empty_and_its_segments_follow() {
    let seed = model(|t| t);
    let renamed = model(|t| {
        version("seed-2")(t)
            .replace("name = \"activity\"", "name = \"activity-v2\"")
            .replace("{ since = \"activity\",", "{ since = \"activity-v2\",")
    });
    let l = lines(EVENTS, 21);
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);
    let store = MemoryStore::new();
    let before = run(&store, &seed, &msgs[..SWITCH]);
    let after = run(&store, &renamed, &msgs[SWITCH..]);
    let at_switch = membership(&BTreeMap::new(), &before);
    let touched = leads_in(&l[SWITCH..]);
    let inactive: Vec<&String> =
        touched.iter().filter(|l| at_switch.get(*l).is_some_and(|s| s.contains("inactive-60d"))).collect();
    assert!(!inactive.is_empty(), "the stream has inactive leads");
    for lead in inactive {
        let first = after
            .iter()
            .find(|r| lead_of(r) == *lead && r["segment"] == "inactive-60d")
            .unwrap_or_else(|| panic!("{lead} leaves inactive-60d"));
        assert_eq!((&first["transition"], &first["cause"]), (&"exited".into(), &"model_change".into()), "{first}");
    }
}

#[test]
fn new_points_and_half_life_apply_from_the_switch_to_the_score_kept() {
    use leadscore_core::decay::{decayed, round2};
    use leadscore_core::time::{parse_rfc3339, DAY};
    let seed = model(|t| t);
    let reweighed = model(|t| {
        let t = version("seed-2")(t).replace("half_life = \"30d\"", "half_life = \"10d\"");
        set_after(&t, "name = \"pricing-page\"", "points", "15")
    });
    let pricing = reweighed.rules.iter().find(|r| r.name == "pricing-page").expect("the rule");
    assert_eq!(pricing.points, 15.0);
    let l = lines(EVENTS, 4);
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);
    let store = MemoryStore::new();
    run(&store, &seed, &msgs[..SWITCH]);
    // Each lead's score as the seed model left it.
    let leads: Vec<String> = leads_in(&l).into_iter().collect();
    let names: Vec<&str> = leads.iter().map(String::as_str).collect();
    let kept: BTreeMap<String, (f64, i64, i64)> = leads
        .iter()
        .zip(store.get_states(0, &names).expect("read"))
        .filter_map(|(lead, b)| {
            let s = leadscore_store::decode_state(&b?, &seed).expect("decodes");
            Some((lead.clone(), (s.score, s.score_at, s.clock)))
        })
        .collect();
    let after = run(&store, &reweighed, &msgs[SWITCH..]);
    // The effective instant of each event: never before the lead's clock.
    let mut clock: BTreeMap<String, i64> = kept.iter().map(|(l, k)| (l.clone(), k.2)).collect();
    let mut effective = BTreeMap::new();
    let mut erased = BTreeSet::new();
    for line in &l[SWITCH..] {
        let e: Value = serde_json::from_str(line).expect("JSON");
        let (lead, ts) = (
            e["lead_id"].as_str().expect("id").to_string(),
            parse_rfc3339(e["timestamp"].as_str().expect("ts")).expect("time"),
        );
        if e["type"] == "erase" {
            erased.insert(lead.clone());
        }
        let c = clock.entry(lead).or_insert(ts);
        *c = (*c).max(ts);
        effective.insert(e["event_id"].as_str().expect("id").to_string(), *c);
    }
    let (mut seen, mut checked, mut priced) = (BTreeSet::new(), 0, 0);
    for r in after.iter().filter(|r| r["kind"] == "score_change" && !r["event_id"].is_null()) {
        for reason in r["reasons"].as_array().expect("reasons").iter().filter(|x| x["rule"] == "pricing-page") {
            assert_eq!(reason["points"], 15.0, "{r}");
            priced += 1;
        }
        let lead = lead_of(r);
        let Some(&(score, anchor, _)) = kept.get(&lead).filter(|_| !erased.contains(&lead)) else { continue };
        if !seen.insert(lead) {
            continue;
        }
        // A lead's first change after the switch: its previous score is the
        // kept score, decayed at the new half-life.
        let t = effective[r["event_id"].as_str().expect("id")];
        assert_eq!(r["previous_score"], round2(decayed(score, anchor, t, 10 * DAY)), "{r}");
        checked += 1;
    }
    assert!(checked > 10 && priced > 0, "{checked} leads, {priced} pricing awards");
}

#[test]
fn an_erase_under_a_changed_model_exits_removed_and_kept_segments() {
    let seed = model(|t| t);
    let without_low = model(|t| {
        version("seed-2")(t).replace(
            "[[segments]]\nname = \"score-low\"\ndescription = \"Score below 31.\"\nwhen = [{ score = { lt = 31 } }]\n",
            "",
        )
    });
    assert!(without_low.segment_index("score-low").is_none());
    let view = r#"{"event_id":"e1","lead_id":"L-1","type":"page_view","timestamp":"2026-01-01T00:00:00Z","properties":{"url":"https://example.com/product/analytics"}}"#;
    let erase = r#"{"event_id":"e2","lead_id":"L-1","type":"erase","timestamp":"2026-01-02T00:00:00Z"}"#;
    let msgs = messages("lead-events", &[view, erase]);
    let store = MemoryStore::new();
    let before = run(&store, &seed, &msgs[..1]);
    let at_switch = membership(&BTreeMap::new(), &before);
    let kept: BTreeSet<String> = at_switch["L-1"].iter().filter(|s| *s != "score-low").cloned().collect();
    assert!(at_switch["L-1"].contains("score-low") && !kept.is_empty());
    let after = run(&store, &without_low, &msgs[1..]);
    let first = &after[0];
    assert_eq!(
        (&first["segment"], &first["transition"], &first["cause"]),
        (&"score-low".into(), &"exited".into(), &"model_change".into())
    );
    assert_eq!(first["model_version"], "seed-2");
    let erased: BTreeSet<String> = after[1..]
        .iter()
        .inspect(|r| assert_eq!(r["cause"], "erase", "{r}"))
        .map(|r| r["segment"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(erased, kept);
    assert!(store.get_states(0, &["L-1"]).expect("read")[0].is_none());
    let versions: Vec<u64> = before.iter().chain(&after).map(|r| r["version"].as_u64().expect("version")).collect();
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "one version per record");
}

#[test]
fn added_and_removed_rules_take_and_give_up_their_slots() {
    let seed = model(|t| t);
    // The escalating download rule goes; a capped search rule and an
    // escalating webinar rule come.
    let changed = model(|t| {
        version("seed-2")(t)
            .replace(
                "[[rules]]\nname = \"download\"\ndescription = \"2 points for the lead's first download, 5 for each later one.\"\non = \"download\"\npoints = 2\nescalate = { after = 1, points = 5 }\n",
                "[[rules]]\nname = \"search-capped\"\ndescription = \"Searches, at most 6 points a day.\"\non = \"search\"\npoints = 3\ncap = { points = 6, per = \"24h\" }\n\n[[rules]]\nname = \"webinar-regular\"\ndescription = \"Webinars: 1 point, 4 from the third on.\"\non = \"webinar\"\npoints = 1\nescalate = { after = 2, points = 4 }\n",
            )
    });
    assert!(changed.rules.iter().all(|r| r.name != "download"));
    assert_eq!(changed.layout().rules, ["page-view", "search-capped", "webinar-regular"]);
    let l = lines(EVENTS, 17);
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);
    let store = MemoryStore::new();
    run(&store, &seed, &msgs[..SWITCH]);
    let after = run(&store, &changed, &msgs[SWITCH..]);
    let reasons: Vec<&Value> = after.iter().filter_map(|r| r["reasons"].as_array()).flatten().collect();
    assert!(reasons.iter().all(|x| x["rule"] != "download"), "a removed rule awards nothing");
    // The new rules start from nothing: no lead searched more than twice in
    // a day before its first capped award, and webinars escalate only after
    // two attended since the switch.
    let mut webinars: BTreeMap<String, u32> = BTreeMap::new();
    for r in after.iter().filter(|r| r["kind"] == "score_change") {
        for x in r["reasons"].as_array().expect("reasons") {
            if x["rule"] == "webinar-regular" {
                let n = webinars.entry(lead_of(r)).or_default();
                *n += 1;
                assert_eq!(x["points"], if *n > 2 { 4.0 } else { 1.0 }, "{r}");
            }
            if x["rule"] == "search-capped" {
                assert!(x["points"].as_f64().expect("points") <= 3.0, "{r}");
            }
        }
    }
    assert!(webinars.values().any(|n| *n > 2), "the stream escalates some lead: {webinars:?}");
    assert_counts_match_states(&store, &changed, &leads_in(&l));
}

#[test]
fn the_sweep_migrates_every_lead_without_waiting_for_its_events() {
    let seed = model(|t| t);
    let changed = model(|t| {
        version("seed-2")(t).replace(
            "when = [{ score = { gte = 76 } }, { grade = [\"A\", \"B\"] }]",
            "when = [{ score = { gte = 5 } }, { grade = [\"A\", \"B\", \"C\"] }]",
        )
    });
    // More leads than one sweep page.
    let mut g = Generator::new(Settings { seed: 31, leads: 700, step: 3_600_000, ..Settings::default() });
    let l: Vec<String> = (0..4000)
        .map(|_| {
            let mut buf = Vec::new();
            encode_event_json(&mut buf, &g.next_event());
            String::from_utf8(buf).expect("UTF-8")
        })
        .collect();
    let refs: Vec<&str> = l.iter().map(String::as_str).collect();
    let msgs = messages("lead-events", &refs);
    let store = MemoryStore::new();
    let before = run(&store, &seed, &msgs);
    let watermark = store.checkpoint(0).expect("read").expect("a checkpoint").watermark.expect("a watermark");
    let leads = store.leads(0).len();
    assert!(leads > 2 * leadscore_pipeline::processor::SWEEP_LEADS, "{leads} leads");

    // No more events: each tick at the watermark sweeps one page.
    let topics = Topics::default();
    let p = Processor::new(&changed, &store, &topics, TimeMode::EventTime);
    let (mut after, mut ticks) = (Vec::new(), 0);
    loop {
        let step = p.tick(0, watermark).expect("a tick");
        assert!(step.swept, "a sweep under way moves on at every step");
        after.extend(published(&step));
        store.write(&step.write).expect("commit");
        ticks += 1;
        let c = store.checkpoint(0).expect("read").expect("a checkpoint");
        if c.layouts.len() == 1 {
            assert_eq!(c.sweep_after, None);
            break;
        }
        assert!(ticks < 50, "the sweep ends");
    }
    assert_eq!(ticks, leads.div_ceil(leadscore_pipeline::processor::SWEEP_LEADS) + 1, "one page a step, then done");
    assert!(!p.tick(0, watermark).expect("a tick").swept, "nothing left to sweep");
    // Every state is the current model's, and every lead is where the
    // changed model from the start puts it.
    for (lead, bytes) in store.leads(0) {
        leadscore_store::decode_state(&bytes, &changed).unwrap_or_else(|e| panic!("{lead}: {e}"));
    }
    let reference_store = MemoryStore::new();
    let mut reference = run(&reference_store, &changed, &msgs);
    let step =
        Processor::new(&changed, &reference_store, &topics, TimeMode::EventTime).tick(0, watermark).expect("tick");
    reference.extend(published(&step));
    let ours = membership(&membership(&BTreeMap::new(), &before), &after);
    assert_eq!(ours, membership(&BTreeMap::new(), &reference));
    assert!(after.iter().any(|r| r["cause"] == "model_change" && r["segment"] == "sales-ready"));
    let all: BTreeSet<String> = store.leads(0).into_iter().map(|(l, _)| l.to_string()).collect();
    assert_counts_match_states(&store, &changed, &all);
}
