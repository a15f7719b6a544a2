//! `leadscore replay`: one history under the current model and a candidate,
//! and what would differ at its end: members of each segment under each,
//! the leads that would enter or leave it (the sales-ready segment first),
//! the score and grade distributions, and the points each rule awards.

use crate::history::{self, Scored};
use crate::{Input, ReviewError};
use leadscore_core::model::Grade;
use leadscore_core::time::format_rfc3339;
use leadscore_core::{LeadId, Millis, Model};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What the replay compares and how much it lists.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fire timers up to this instant at the end (default: the last event).
    pub until: Option<Millis>,
    /// The segment listed first (what sales acts on).
    pub ready_segment: String,
    /// How many lead ids to list per segment and direction.
    pub examples: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { until: None, ready_segment: "sales-ready".into(), examples: 10 }
    }
}

/// One segment under both models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentDiff {
    pub segment: String,
    /// Members at the end (`None`: the model has no such segment).
    pub current: Option<usize>,
    pub candidate: Option<usize>,
    /// Leads in it under the candidate only, and under the current only.
    pub entering: usize,
    pub leaving: usize,
    pub entering_leads: Vec<String>,
    pub leaving_leads: Vec<String>,
}

/// A distribution of final scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
}

/// Leads per score band under each model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub current: usize,
    pub candidate: usize,
}

/// Points one rule awards under each model (a rule one model lacks has 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePoints {
    pub rule: String,
    pub current_points: f64,
    pub current_awards: u64,
    pub candidate_points: f64,
    pub candidate_awards: u64,
}

/// The replay's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub current_model: String,
    pub candidate_model: String,
    pub events: u64,
    pub leads: usize,
    pub as_of: String,
    /// Leads whose segments differ between the two models.
    pub leads_moved: usize,
    pub segments: Vec<SegmentDiff>,
    /// Leads whose final score differs (by a cent or more).
    pub scores_changed: usize,
    pub current_scores: Distribution,
    pub candidate_scores: Distribution,
    pub bands: Vec<Band>,
    /// `(grade, leads under current, under candidate)`.
    pub grades: Vec<(String, usize, usize)>,
    pub rules: Vec<RulePoints>,
}

/// Scores `input` under both models and compares the ends.
pub fn replay(
    current: &Model,
    candidate: &Model,
    input: &Input,
    options: &Options,
    err: &mut impl std::io::Write,
) -> Result<Report, ReviewError> {
    // Both end at the same instant, with every timer due by then fired.
    let (input, latest) = crate::input::prepare(input, options.until, err)?;
    let (input, until) = (&input, options.until.or(latest));
    writeln!(err, "leadscore: scoring the history under the current model ({})", current.version)?;
    let a = history::score(current, input, until, false, err)?;
    writeln!(err, "leadscore: scoring the history under the candidate model ({})", candidate.version)?;
    let b = history::score(candidate, input, until, false, err)?;
    Ok(compare(&a, &b, options))
}

fn segments_of<'a>(s: &'a Scored<'a>) -> BTreeMap<&'a LeadId, BTreeSet<&'a str>> {
    s.finals
        .iter()
        .map(|(lead, state)| {
            (lead, state.segments.iter().map(|m| s.model.segments[usize::from(m.segment)].name.as_str()).collect())
        })
        .collect()
}

fn distribution(scores: &[f64]) -> Distribution {
    let mut v = scores.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    Distribution { mean: round2(mean), median: at(0.5), p90: at(0.9) }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Compares two runs over the same history.
pub fn compare(a: &Scored<'_>, b: &Scored<'_>, options: &Options) -> Report {
    let (in_a, in_b) = (segments_of(a), segments_of(b));
    let leads: BTreeSet<&LeadId> = in_a.keys().chain(in_b.keys()).copied().collect();
    let none = BTreeSet::new();
    let mut names: Vec<&str> = vec![options.ready_segment.as_str()];
    for s in a.model.segments.iter().chain(b.model.segments.iter()) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let has = |m: &Model, name: &str| m.segments.iter().any(|s| s.name == name);
    let mut segments = Vec::new();
    for name in names {
        if !has(a.model, name) && !has(b.model, name) {
            continue;
        }
        let mut d = SegmentDiff {
            segment: name.to_string(),
            current: has(a.model, name).then_some(0),
            candidate: has(b.model, name).then_some(0),
            entering: 0,
            leaving: 0,
            entering_leads: Vec::new(),
            leaving_leads: Vec::new(),
        };
        for lead in &leads {
            let x = in_a.get(lead).unwrap_or(&none).contains(name);
            let y = in_b.get(lead).unwrap_or(&none).contains(name);
            if let (true, Some(n)) = (x, d.current.as_mut()) {
                *n += 1;
            }
            if let (true, Some(n)) = (y, d.candidate.as_mut()) {
                *n += 1;
            }
            if y && !x {
                d.entering += 1;
                if d.entering_leads.len() < options.examples {
                    d.entering_leads.push(lead.to_string());
                }
            }
            if x && !y {
                d.leaving += 1;
                if d.leaving_leads.len() < options.examples {
                    d.leaving_leads.push(lead.to_string());
                }
            }
        }
        segments.push(d);
    }
    let leads_moved = leads.iter().filter(|l| in_a.get(*l).unwrap_or(&none) != in_b.get(*l).unwrap_or(&none)).count();

    let score = |s: &Scored<'_>, lead: &LeadId| s.finals.get(lead).map(|st| s.final_score(st));
    let (sa, sb): (Vec<f64>, Vec<f64>) =
        leads.iter().map(|l| (score(a, l).unwrap_or(0.0), score(b, l).unwrap_or(0.0))).unzip();
    let scores_changed = sa.iter().zip(&sb).filter(|(x, y)| (*x - *y).abs() >= 0.01).count();
    let (lo, hi) = sa.iter().chain(&sb).fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let width = ((hi - lo) / 10.0).max(1.0).ceil();
    let bands = (0..10)
        .map(|i| {
            let from = lo.floor() + width * f64::from(i);
            let to = from + width;
            let count = |v: &[f64]| v.iter().filter(|s| **s >= from && (**s < to || i == 9)).count();
            Band { from, to, current: count(&sa), candidate: count(&sb) }
        })
        .filter(|b| b.current + b.candidate > 0)
        .collect();
    let grades = Grade::ALL
        .iter()
        .map(|g| {
            let n = |s: &Scored<'_>| s.finals.values().filter(|st| st.grade == *g).count();
            (g.as_str().to_string(), n(a), n(b))
        })
        .collect();
    let mut rules: Vec<RulePoints> = Vec::new();
    for (m, s, is_a) in [(a.model, a, true), (b.model, b, false)] {
        for (rule, (points, awards)) in m.rules.iter().zip(&s.rule_points) {
            let i = match rules.iter().position(|r| r.rule == rule.name) {
                Some(i) => i,
                None => {
                    rules.push(RulePoints {
                        rule: rule.name.clone(),
                        current_points: 0.0,
                        current_awards: 0,
                        candidate_points: 0.0,
                        candidate_awards: 0,
                    });
                    rules.len() - 1
                }
            };
            let r = &mut rules[i];
            if is_a {
                (r.current_points, r.current_awards) = (round2(*points), *awards);
            } else {
                (r.candidate_points, r.candidate_awards) = (round2(*points), *awards);
            }
        }
    }
    Report {
        current_model: a.model.version.clone(),
        candidate_model: b.model.version.clone(),
        events: a.summary.events_read,
        leads: leads.len(),
        as_of: format_rfc3339(a.as_of.max(b.as_of)),
        leads_moved,
        segments,
        scores_changed,
        current_scores: distribution(&sa),
        candidate_scores: distribution(&sb),
        bands,
        grades,
        rules,
    }
}

fn count(n: Option<usize>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

/// The report as tables for a terminal.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Replay of {} events ({} leads, as of {}): current model {}, candidate {}",
        r.events, r.leads, r.as_of, r.current_model, r.candidate_model
    );
    let _ = writeln!(
        o,
        "{} leads would change segments; {} would end with another score.\n",
        r.leads_moved, r.scores_changed
    );
    let _ = writeln!(o, "{:<32} {:>9} {:>9} {:>9} {:>9}", "segment", "current", "candidate", "entering", "leaving");
    for s in &r.segments {
        let _ = writeln!(
            o,
            "{:<32} {:>9} {:>9} {:>9} {:>9}",
            s.segment,
            count(s.current),
            count(s.candidate),
            s.entering,
            s.leaving
        );
    }
    for s in r.segments.iter().filter(|s| s.entering + s.leaving > 0).take(1) {
        if !s.entering_leads.is_empty() {
            let _ = writeln!(o, "\nwould enter {}: {}", s.segment, s.entering_leads.join(", "));
        }
        if !s.leaving_leads.is_empty() {
            let _ = writeln!(o, "would leave {}: {}", s.segment, s.leaving_leads.join(", "));
        }
    }
    let (c, d) = (&r.current_scores, &r.candidate_scores);
    let _ = writeln!(o, "\nscore          {:>9} {:>9}", "current", "candidate");
    let _ = writeln!(o, "mean           {:>9.2} {:>9.2}", c.mean, d.mean);
    let _ = writeln!(o, "median         {:>9.2} {:>9.2}", c.median, d.median);
    let _ = writeln!(o, "90th pct       {:>9.2} {:>9.2}", c.p90, d.p90);
    for b in &r.bands {
        let _ = writeln!(o, "{:>6.0}-{:<7.0} {:>9} {:>9}", b.from, b.to, b.current, b.candidate);
    }
    let _ = writeln!(o, "\ngrade          {:>9} {:>9}", "current", "candidate");
    for (g, x, y) in &r.grades {
        let _ = writeln!(o, "{g:<14} {x:>9} {y:>9}");
    }
    let _ = writeln!(o, "\n{:<28} {:>12} {:>8} {:>12} {:>8}", "rule", "points", "awards", "points", "awards");
    let _ = writeln!(o, "{:<28} {:>21} {:>21}", "", "(current)", "(candidate)");
    for x in &r.rules {
        let _ = writeln!(
            o,
            "{:<28} {:>12.2} {:>8} {:>12.2} {:>8}",
            x.rule, x.current_points, x.current_awards, x.candidate_points, x.candidate_awards
        );
    }
    o
}
