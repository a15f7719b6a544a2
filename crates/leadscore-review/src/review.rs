//! `leadscore review`: the periodic check of a model against closed deals.
//!
//! Each opportunity in the history is attributed the lead's published score
//! and grade just before it opened (and some days before), then counted by
//! how it ended: conversion (won among closed) and lift over the base rate by
//! score tier, by grade and in the tier × grade matrix; ROC AUC of the score;
//! days from open (and from entering the sales-ready segment) to close; won
//! value by tier; the points each rule had awarded won and lost deals' leads;
//! and suggested changes: the sales-ready threshold that meets a target
//! precision, and rules whose points do not separate won from lost.

use crate::deals::{self, Deal, Outcome};
use crate::history::{self, Scored};
use crate::stats::{self, Bucket, Cut};
use crate::{Input, ReviewError};
use leadscore_core::model::{Cond, Grade};
use leadscore_core::time::{format_rfc3339, DAY};
use leadscore_core::{LeadState, Millis, Model};
use serde::Serialize;

mod text;
pub use text::render_text;

/// What the review looks at.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fire timers up to this instant at the end.
    pub until: Option<Millis>,
    /// Only opportunities opened at or after this instant (the period under
    /// review); the whole history is still scored.
    pub since: Option<Millis>,
    /// Also attribute each deal the score this many days before it opened.
    pub days_before: i64,
    /// The segment sales acts on.
    pub ready_segment: String,
    /// The precision a suggested sales-ready threshold must reach.
    pub target_precision: f64,
    /// The fewest deals at or above a suggested threshold.
    pub min_deals: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            until: None,
            since: None,
            days_before: 30,
            ready_segment: "sales-ready".into(),
            target_precision: 0.5,
            min_deals: 10,
        }
    }
}

/// Closed deals in one group, and how they did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub deals: usize,
    pub won: usize,
    /// Won among closed (`None` without closed deals).
    pub rate: Option<f64>,
    /// The rate over the base rate.
    pub lift: Option<f64>,
    pub won_value: f64,
    /// Median days from open to close of its won deals.
    pub median_days_to_close: Option<f64>,
}

/// One cell of the score tier × grade matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub tier: String,
    pub grade: String,
    pub deals: usize,
    pub won: usize,
    pub rate: Option<f64>,
}

/// What a rule had awarded the leads of won and of lost deals before they
/// opened, on average per deal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSplit {
    pub rule: String,
    pub won_mean_points: f64,
    pub lost_mean_points: f64,
    /// Whether it rewards won deals' leads clearly more (or, for a penalty,
    /// penalises lost deals' leads clearly more).
    pub separates: bool,
}

/// One deal as the review saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DealRow {
    pub lead: String,
    pub opportunity: String,
    pub opened: String,
    pub closed: Option<String>,
    pub outcome: Outcome,
    pub amount: Option<f64>,
    pub score_at_open: f64,
    pub score_before: f64,
    pub grade_at_open: String,
    pub tier: String,
}

/// The sales-ready threshold: as the model has it, and as suggested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub target_precision: f64,
    pub current: Option<f64>,
    pub current_cut: Option<Cut>,
    pub suggested: Option<Cut>,
}

/// The review's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub model_version: String,
    pub events: u64,
    pub as_of: String,
    pub since: Option<String>,
    pub days_before: i64,
    pub deals: usize,
    pub won: usize,
    pub lost: usize,
    pub still_open: usize,
    pub base_rate: Option<f64>,
    pub auc: Option<f64>,
    /// AUC of the score `days_before` days before the deal opened.
    pub auc_before: Option<f64>,
    pub tiers: Vec<Group>,
    pub grades: Vec<Group>,
    pub matrix: Vec<Cell>,
    pub deciles: Vec<Bucket>,
    pub roc: Vec<(f64, f64)>,
    pub median_days_open_to_close: Option<f64>,
    pub median_days_ready_to_close: Option<f64>,
    /// Days from open to close of each won deal (the chart's data).
    pub days_to_close_won: Vec<f64>,
    pub rules: Vec<RuleSplit>,
    pub threshold: Threshold,
    pub suggestions: Vec<String>,
    pub opportunities: Vec<DealRow>,
}

/// A named score range, in cents: `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
struct Tier {
    name: String,
    from: i64,
    to: i64,
}

/// The model's score tiers: its segments defined by a score range alone,
/// lowest first; four quarters of the score range if it has none.
fn tiers(model: &Model) -> Vec<Tier> {
    let mut t: Vec<Tier> = model
        .segments
        .iter()
        .filter_map(|s| {
            let cond = match &s.when {
                Cond::All(c) if c.len() == 1 => &c[0],
                c => c,
            };
            match cond {
                Cond::Score { at_least, below } => Some(Tier {
                    name: s.name.clone(),
                    from: at_least.unwrap_or(i64::MIN),
                    to: below.unwrap_or(i64::MAX),
                }),
                _ => None,
            }
        })
        .collect();
    t.sort_by_key(|t| t.from);
    if t.is_empty() {
        let (lo, hi) = ((model.score.min * 100.0) as i64, (model.score.max * 100.0) as i64);
        let q = (hi - lo) / 4;
        t = (0..4)
            .map(|i| {
                let from = lo + q * i;
                let to = if i == 3 { i64::MAX } else { from + q };
                Tier {
                    name: format!("{}-{}", from / 100, (from + q) / 100),
                    from: if i == 0 { i64::MIN } else { from },
                    to,
                }
            })
            .collect();
    }
    t
}

/// The `at_least` score of the ready segment's condition, if it has one.
fn ready_threshold(model: &Model, segment: &str) -> Option<f64> {
    fn find(c: &Cond) -> Option<i64> {
        match c {
            Cond::Score { at_least, .. } => *at_least,
            Cond::All(cs) => cs.iter().find_map(find),
            _ => None,
        }
    }
    let s = model.segments.iter().find(|s| s.name == segment)?;
    find(&s.when).map(|c| c as f64 / 100.0)
}

fn rate(won: usize, closed: usize) -> Option<f64> {
    (closed > 0).then(|| won as f64 / closed as f64)
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// Scores `input` under `model` and reviews its opportunities.
pub fn review(
    model: &Model,
    input: &Input,
    options: &Options,
    err: &mut impl std::io::Write,
) -> Result<Report, ReviewError> {
    writeln!(err, "leadscore: reading the history")?;
    let (input, _) = crate::input::prepare(input, options.until, err)?;
    let input = &input;
    let deals = deals::read(input)?;
    writeln!(err, "leadscore: scoring the history under model {}", model.version)?;
    let scored = history::score(model, input, options.until, true, err)?;
    Ok(analyse(&scored, &deals, options))
}

/// The review of `deals` against a scored history.
pub fn analyse(scored: &Scored<'_>, deals: &[Deal], options: &Options) -> Report {
    let model = scored.model;
    let fresh = LeadState::new(model, 0).grade;
    let tiers = tiers(model);
    let ready = model.segment_index(&options.ready_segment);
    let in_scope: Vec<&Deal> = deals.iter().filter(|d| options.since.is_none_or(|s| d.opened >= s)).collect();
    let rows: Vec<DealRow> = in_scope
        .iter()
        .map(|d| {
            let (score, grade) = scored.at(&d.lead, d.opened).unwrap_or((0.0, fresh));
            let before = scored.at(&d.lead, d.opened - options.days_before * DAY).map_or(0.0, |s| s.0);
            let cents = (score * 100.0).round() as i64;
            let tier = tiers.iter().find(|t| cents >= t.from && cents < t.to).map_or("-", |t| &t.name);
            DealRow {
                lead: d.lead.clone(),
                opportunity: d.id.clone(),
                opened: format_rfc3339(d.opened),
                closed: d.closed.map(format_rfc3339),
                outcome: d.outcome,
                amount: d.amount,
                score_at_open: round(score, 2),
                score_before: round(before, 2),
                grade_at_open: grade.as_str().to_string(),
                tier: tier.to_string(),
            }
        })
        .collect();
    let closed: Vec<(&Deal, &DealRow)> =
        in_scope.iter().copied().zip(&rows).filter(|(d, _)| d.outcome != Outcome::Open).collect();
    let won = closed.iter().filter(|(d, _)| d.outcome == Outcome::Won).count();
    let base_rate = rate(won, closed.len());
    let days = |d: &Deal| d.closed.map(|c| (c - d.opened) as f64 / DAY as f64);
    let group = |name: &str, members: &[&(&Deal, &DealRow)]| {
        let won_deals: Vec<&Deal> = members.iter().map(|(d, _)| *d).filter(|d| d.outcome == Outcome::Won).collect();
        let r = rate(won_deals.len(), members.len());
        Group {
            name: name.to_string(),
            deals: members.len(),
            won: won_deals.len(),
            rate: r.map(|r| round(r, 4)),
            lift: r.zip(base_rate).filter(|(_, b)| *b > 0.0).map(|(r, b)| round(r / b, 3)),
            won_value: round(won_deals.iter().filter_map(|d| d.amount).sum(), 2),
            median_days_to_close: stats::median(&won_deals.iter().filter_map(|d| days(d)).collect::<Vec<_>>())
                .map(|m| round(m, 1)),
        }
    };
    let tier_groups: Vec<Group> = tiers
        .iter()
        .map(|t| group(&t.name, &closed.iter().filter(|(_, r)| r.tier == t.name).collect::<Vec<_>>()))
        .collect();
    let grade_groups: Vec<Group> = Grade::ALL
        .iter()
        .map(|g| group(g.as_str(), &closed.iter().filter(|(_, r)| r.grade_at_open == g.as_str()).collect::<Vec<_>>()))
        .collect();
    let mut matrix = Vec::new();
    for t in &tiers {
        for g in Grade::ALL {
            let cell: Vec<_> =
                closed.iter().filter(|(_, r)| r.tier == t.name && r.grade_at_open == g.as_str()).collect();
            let w = cell.iter().filter(|(d, _)| d.outcome == Outcome::Won).count();
            matrix.push(Cell {
                tier: t.name.clone(),
                grade: g.as_str().to_string(),
                deals: cell.len(),
                won: w,
                rate: rate(w, cell.len()).map(|r| round(r, 4)),
            });
        }
    }
    let pairs: Vec<(f64, bool)> = closed.iter().map(|(d, r)| (r.score_at_open, d.outcome == Outcome::Won)).collect();
    let before: Vec<(f64, bool)> = closed.iter().map(|(d, r)| (r.score_before, d.outcome == Outcome::Won)).collect();
    let ready_days: Vec<f64> = closed
        .iter()
        .filter_map(|(d, _)| {
            let (seg, closed_at) = (ready?, d.closed?);
            let entered = scored
                .tracks
                .get(d.lead.as_str())?
                .entries
                .iter()
                .filter(|(at, s)| usize::from(*s) == seg && *at <= closed_at)
                .map(|(at, _)| *at)
                .max()?;
            Some((closed_at - entered) as f64 / DAY as f64)
        })
        .collect();
    let won_days: Vec<f64> =
        closed.iter().filter(|(d, _)| d.outcome == Outcome::Won).filter_map(|(d, _)| days(d)).collect();
    let rules = rule_splits(scored, &closed);
    let current = ready_threshold(model, &options.ready_segment);
    let threshold = Threshold {
        target_precision: options.target_precision,
        current,
        current_cut: current.and_then(|c| stats::cut_at(&pairs, c)),
        suggested: stats::threshold_for(&pairs, options.target_precision, options.min_deals),
    };
    let auc = stats::auc(&pairs).map(|a| round(a, 4));
    let mut report = Report {
        model_version: model.version.clone(),
        events: scored.summary.events_read,
        as_of: format_rfc3339(scored.as_of),
        since: options.since.map(format_rfc3339),
        days_before: options.days_before,
        deals: in_scope.len(),
        won,
        lost: closed.len() - won,
        still_open: in_scope.len() - closed.len(),
        base_rate: base_rate.map(|r| round(r, 4)),
        auc,
        auc_before: stats::auc(&before).map(|a| round(a, 4)),
        tiers: tier_groups,
        grades: grade_groups,
        matrix,
        deciles: stats::deciles(&pairs),
        roc: stats::roc(&pairs).into_iter().map(|(x, y)| (round(x, 4), round(y, 4))).collect(),
        median_days_open_to_close: stats::median(&closed.iter().filter_map(|(d, _)| days(d)).collect::<Vec<_>>())
            .map(|m| round(m, 1)),
        median_days_ready_to_close: stats::median(&ready_days).map(|m| round(m, 1)),
        days_to_close_won: won_days.iter().map(|d| round(*d, 2)).collect(),
        rules,
        threshold,
        suggestions: Vec::new(),
        opportunities: rows.clone(),
    };
    report.suggestions = suggest(&report, &options.ready_segment);
    report
}

/// Mean points per deal each rule had awarded the deal's lead before it
/// opened, for won and for lost deals.
fn rule_splits(scored: &Scored<'_>, closed: &[(&Deal, &DealRow)]) -> Vec<RuleSplit> {
    let model = scored.model;
    let (mut won, mut lost) = (vec![0.0; model.rules.len()], vec![0.0; model.rules.len()]);
    let (mut n_won, mut n_lost) = (0usize, 0usize);
    for (d, _) in closed {
        let totals = if d.outcome == Outcome::Won {
            n_won += 1;
            &mut won
        } else {
            n_lost += 1;
            &mut lost
        };
        if let Some(t) = scored.tracks.get(d.lead.as_str()) {
            for a in t.awards.iter().filter(|a| a.at < d.opened) {
                totals[usize::from(a.rule)] += a.points;
            }
        }
    }
    model
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let w = if n_won > 0 { won[i] / n_won as f64 } else { 0.0 };
            let l = if n_lost > 0 { lost[i] / n_lost as f64 } else { 0.0 };
            RuleSplit {
                rule: r.name.clone(),
                won_mean_points: round(w, 2),
                lost_mean_points: round(l, 2),
                // A reward should go more to won deals' leads, a penalty more
                // to lost ones'.
                separates: if w + l >= 0.0 { w > 0.0 && w >= 1.25 * l } else { l < 0.0 && l <= 1.25 * w },
            }
        })
        .collect()
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Plain-language suggestions from a report.
fn suggest(r: &Report, ready: &str) -> Vec<String> {
    let mut out = Vec::new();
    if r.won + r.lost < 20 {
        out.push(format!(
            "Only {} closed deals in the period: too few to change the model on; review a longer period.",
            r.won + r.lost
        ));
    }
    if let Some(a) = r.auc {
        if a < 0.6 {
            out.push(format!(
                "The score barely ranks won deals above lost ones (AUC {a:.2}, 0.5 is chance): the rules reward \
                 behaviour that does not lead to deals."
            ));
        }
    }
    let t = &r.threshold;
    match (&t.suggested, t.current) {
        (Some(s), Some(c)) if (s.threshold - c).abs() >= 1.0 => out.push(format!(
            "Move {ready} from score {c} to {}: {} of the deals at or above it were won (target {}), covering {} \
             of won deals{}.",
            s.threshold,
            pct(s.precision),
            pct(t.target_precision),
            pct(s.recall),
            t.current_cut.as_ref().map_or(String::new(), |cc| format!(
                "; at {c} it was {} covering {}",
                pct(cc.precision),
                pct(cc.recall)
            ))
        )),
        (None, _) => out.push(format!(
            "No score threshold reached a precision of {} with enough deals: {ready} cannot be made that precise \
             by score alone.",
            pct(t.target_precision)
        )),
        _ => {}
    }
    for x in r.rules.iter().filter(|x| !x.separates && (x.won_mean_points != 0.0 || x.lost_mean_points != 0.0)) {
        let advice = if x.won_mean_points + x.lost_mean_points < 0.0 {
            "it penalises won deals' leads as much or more: consider a smaller penalty"
        } else {
            "consider fewer points"
        };
        out.push(format!(
            "Rule {} does not separate won from lost deals (mean points before opening: won {}, lost {}): {advice}.",
            x.rule, x.won_mean_points, x.lost_mean_points
        ));
    }
    out
}
