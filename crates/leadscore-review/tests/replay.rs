//! `replay` against an independent count: the history is scored under both
//! models by the offline scorer as `leadscore score` prints it, each lead's
//! final segments are rebuilt from the transitions it published, and the
//! leads that differ are counted per segment. The replay, which reads final
//! states instead, must count exactly the same leads.

use leadscore_codec::encode_event_json;
use leadscore_core::{Millis, Model};
use leadscore_pipeline::offline::{score, Options};
use leadscore_review::replay::{replay, Options as ReplayOptions};
use leadscore_review::Input;
use leadscore_synth::{Generator, Settings};
use std::collections::{BTreeMap, BTreeSet};

fn history() -> Vec<u8> {
    let mut g = Generator::new(Settings { seed: 3, leads: 400, step: 20 * 60_000, ..Settings::default() });
    let mut bytes = Vec::new();
    for _ in 0..30_000 {
        encode_event_json(&mut bytes, &g.next_event());
        bytes.push(b'\n');
    }
    bytes
}

/// Each lead's segments at the end, from the records the scorer prints.
fn final_segments(model: &Model, bytes: &[u8], until: Millis) -> BTreeMap<String, BTreeSet<String>> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let options = Options { until: Some(until), ..Options::default() };
    score(model, bytes, &options, &mut out, &mut err).expect("scores");
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out).expect("utf-8").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        if v["kind"] != "segment_transition" {
            continue;
        }
        let set = m.entry(v["lead_id"].as_str().expect("lead").to_string()).or_default();
        let segment = v["segment"].as_str().expect("segment").to_string();
        if v["transition"] == "entered" {
            set.insert(segment);
        } else {
            set.remove(&segment);
        }
    }
    m
}

#[test]
fn a_one_rule_change_moves_exactly_the_leads_the_scorer_moves() {
    let seed = leadscore_config::seed_model();
    let text = leadscore_config::SEED_MODEL_TOML.replace("version = \"seed-1\"", "version = \"pricing-30\"");
    let at = text.find("name = \"pricing-page\"").expect("the rule");
    let points = at + text[at..].find("\npoints = ").expect("its points") + 1;
    let end = points + text[points..].find('\n').expect("a line end");
    let candidate = leadscore_config::parse_model(&format!("{}points = 30{}", &text[..points], &text[end..]))
        .expect("the candidate");
    let bytes = history();
    let input = Input::Bytes(bytes.clone());
    let mut err = Vec::new();
    let report = replay(&seed, &candidate, &input, &ReplayOptions { examples: 1000, ..Default::default() }, &mut err)
        .expect("replays");
    let until = leadscore_core::time::parse_rfc3339(&report.as_of).expect("as of");
    let (a, b) = (final_segments(&seed, &bytes, until), final_segments(&candidate, &bytes, until));
    let none = BTreeSet::new();
    let leads: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    assert_eq!(report.segments[0].segment, "sales-ready", "what sales acts on comes first");
    let mut moved_somewhere = 0;
    for s in &report.segments {
        let entering: Vec<&String> = leads
            .iter()
            .copied()
            .filter(|l| {
                b.get(*l).unwrap_or(&none).contains(&s.segment) && !a.get(*l).unwrap_or(&none).contains(&s.segment)
            })
            .collect();
        let leaving: Vec<&String> = leads
            .iter()
            .copied()
            .filter(|l| {
                a.get(*l).unwrap_or(&none).contains(&s.segment) && !b.get(*l).unwrap_or(&none).contains(&s.segment)
            })
            .collect();
        assert_eq!((s.entering, s.leaving), (entering.len(), leaving.len()), "{}", s.segment);
        assert_eq!(s.entering_leads, entering.iter().map(|l| l.to_string()).collect::<Vec<_>>(), "{}", s.segment);
        let members = |m: &BTreeMap<String, BTreeSet<String>>| m.values().filter(|x| x.contains(&s.segment)).count();
        assert_eq!((s.current, s.candidate), (Some(members(&a)), Some(members(&b))), "{}", s.segment);
        moved_somewhere += s.entering + s.leaving;
    }
    let ready = &report.segments[0];
    assert!(ready.entering > 0, "more points for pricing visits make more leads sales-ready");
    assert!(moved_somewhere > 0);
    let pricing = report.rules.iter().find(|r| r.rule == "pricing-page").expect("the rule");
    assert_eq!(pricing.current_awards, pricing.candidate_awards, "the same visits");
    assert!(pricing.candidate_points > 2.5 * pricing.current_points, "{pricing:?}");
    assert_eq!(report.leads_moved, leads.iter().filter(|l| a.get(**l) != b.get(**l)).count());
    let text = leadscore_review::replay::render_text(&report);
    assert!(text.contains("sales-ready") && text.contains("pricing-page"), "{text}");
}
