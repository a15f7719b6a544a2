//! Golden scenarios: every folder under `tests/golden/` is scored with the seed
//! model exactly as `leadscore score` does, and the output must equal
//! `expected.jsonl` byte for byte. Together the scenarios must exercise every
//! rule, grade criterion and segment of the seed model.

use leadscore_suite::codec::{decode_json, Limits};
use leadscore_suite::config::seed_model;
use leadscore_suite::core::engine::apply;
use leadscore_suite::core::time::parse_rfc3339;
use leadscore_suite::core::{LeadState, Outputs};
use leadscore_suite::pipeline::offline::{score as run_offline, Options};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn scenarios() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "expected the golden scenarios under {}", root.display());
    dirs
}

fn score(dir: &Path) -> String {
    let events = std::fs::read(dir.join("events.jsonl")).expect("events.jsonl");
    let until =
        std::fs::read_to_string(dir.join("until")).ok().map(|s| parse_rfc3339(s.trim()).expect("until is RFC 3339"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run_offline(&seed_model(), &events[..], &Options { until, ..Options::default() }, &mut out, &mut err)
        .expect("in-memory IO");
    assert_eq!(summary.rejected, 0, "{}: {}", dir.display(), String::from_utf8_lossy(&err));
    String::from_utf8(out).expect("UTF-8 output")
}

#[test]
fn every_scenario_matches_its_expected_output() {
    let bless = std::env::var_os("LEADSCORE_BLESS").is_some();
    let mut failures = Vec::new();
    for dir in scenarios() {
        let actual = score(&dir);
        let path = dir.join("expected.jsonl");
        if bless {
            std::fs::write(&path, &actual).expect("write expected.jsonl");
            continue;
        }
        let expected = std::fs::read_to_string(&path).expect("expected.jsonl");
        assert!(!expected.trim().is_empty(), "{} is empty", path.display());
        if actual != expected {
            let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
            let at = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(a.len().min(e.len()));
            failures.push(format!(
                "{}: first difference at line {}\n  expected: {}\n  actual:   {}\n  ({} lines expected, {} produced)",
                dir.display(),
                at + 1,
                e.get(at).unwrap_or(&"<none>"),
                a.get(at).unwrap_or(&"<none>"),
                e.len(),
                a.len()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn scenarios_cover_every_rule_criterion_and_segment() {
    let model = seed_model();
    let (mut rules, mut entered, mut exited, mut criteria) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), 0u64);
    let mut causes = BTreeSet::new();
    for dir in scenarios() {
        for line in std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON record");
            if let Some(reasons) = v["reasons"].as_array() {
                rules.extend(reasons.iter().map(|r| r["rule"].as_str().expect("rule").to_string()));
            }
            if let Some(seg) = v["segment"].as_str() {
                causes.insert(v["cause"].as_str().expect("cause").to_string());
                let set = if v["transition"] == "entered" { &mut entered } else { &mut exited };
                set.insert(seg.to_string());
            }
        }
        // Criteria are not in the outputs: apply the events and look at the states.
        let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
        let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
        for line in events.lines() {
            let e = decode_json(line.as_bytes(), None, None, &Limits::default()).expect("valid event");
            let slot = leads.entry(e.lead_id.as_str().to_string()).or_default();
            apply(&model, slot, &e, &mut Outputs::default());
            if let Some(s) = slot {
                criteria |= s.criteria;
            }
        }
    }
    for r in &model.rules {
        // email-open awards 0 points by design: it never appears in reasons.
        if r.points != 0.0 {
            assert!(rules.contains(&r.name), "no scenario awards points by rule {}", r.name);
        }
    }
    for s in &model.segments {
        assert!(entered.contains(&s.name), "no scenario enters segment {}", s.name);
    }
    for (i, c) in model.grade.criteria.iter().enumerate() {
        assert!(criteria & (1 << i) != 0, "no scenario matches criterion {}", c.name);
    }
    for needed in ["score-high", "sales-ready", "cooling", "surging", "hard-bounced", "persona-champion"] {
        assert!(exited.contains(needed), "no scenario exits {needed}");
    }
    assert_eq!(causes, ["erase", "event", "timer"].map(String::from).into_iter().collect());
}
