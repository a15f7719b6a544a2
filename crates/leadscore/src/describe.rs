//! A readable summary of a model, for `leadscore check-model`: every rule,
//! criterion, tally and segment in one line of plain words.

use leadscore_core::model::{Cond, EventMatcher, FieldTest, Measure, Model, Range, Test};
use leadscore_core::text::Needle;
use leadscore_core::time::format_duration;
use std::fmt::Write;

fn quoted(n: &[Needle]) -> String {
    n.iter().map(|n| format!("{:?}", n.as_str())).collect::<Vec<_>>().join(", ")
}

fn range(r: &Range) -> String {
    r.to_string()
}

/// `url contains "/pricing"`.
pub fn field_test(t: &FieldTest) -> String {
    let f = t.field.as_str();
    match &t.test {
        Test::OneOf(n) if n.len() == 1 => format!("{f} is {}", quoted(n)),
        Test::OneOf(n) => format!("{f} is one of {}", quoted(n)),
        Test::Contains(n) => format!("{f} contains {}", quoted(n)),
        Test::Prefix(n) => format!("{f} starts with {}", quoted(n)),
        Test::Words(p) => format!(
            "{f} has the words {}",
            p.iter().map(|p| format!("{:?}", p.words.join(" "))).collect::<Vec<_>>().join(", ")
        ),
        Test::DomainIn(n) => format!("{f} domain is one of {}", quoted(n)),
        Test::Range(r) => format!("{f} {}", range(r)),
        Test::Is(b) => format!("{f} is {b}"),
        Test::Present(true) => format!("{f} is set"),
        Test::Present(false) => format!("{f} is not set"),
    }
}

fn matcher(m: &EventMatcher) -> String {
    let kinds: Vec<&str> = m.kinds.iter().map(|k| k.as_str()).collect();
    let mut s = kinds.join("|");
    if !m.when.is_empty() {
        s.push_str(" where ");
        s.push_str(&m.when.iter().map(field_test).collect::<Vec<_>>().join(" and "));
    }
    s
}

fn points(p: f64) -> String {
    if p >= 0.0 {
        format!("+{p}")
    } else {
        format!("{p}")
    }
}

fn cents(c: i64) -> String {
    format!("{}", c as f64 / 100.0)
}

/// A segment condition in words.
pub fn cond(model: &Model, c: &Cond) -> String {
    match c {
        Cond::All(c) => c.iter().map(|c| cond(model, c)).collect::<Vec<_>>().join(" and "),
        Cond::Any(c) => format!("({})", c.iter().map(|c| cond(model, c)).collect::<Vec<_>>().join(" or ")),
        Cond::Not(c) => format!("not ({})", cond(model, c)),
        Cond::Score { at_least, below } => match (at_least, below) {
            (Some(a), Some(b)) => format!("score ≥ {} and < {}", cents(*a), cents(*b)),
            (Some(a), None) => format!("score ≥ {}", cents(*a)),
            (None, Some(b)) => format!("score < {}", cents(*b)),
            (None, None) => "always".into(),
        },
        Cond::Grade(mask) => format!(
            "grade is {}",
            leadscore_core::Grade::ALL
                .iter()
                .filter(|g| mask & (1 << **g as u8) != 0)
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Cond::Tally { tally, range: r } => format!("{} {}", model.tallies[*tally].name, range(r)),
        Cond::Since { tally, at_least, less_than } => {
            let name = &model.tallies[*tally].name;
            match (at_least, less_than) {
                (Some(a), None) => format!("last {name} at least {} ago", format_duration(*a)),
                (None, Some(b)) => format!("last {name} less than {} ago", format_duration(*b)),
                (Some(a), Some(b)) => {
                    format!("last {name} between {} and {} ago", format_duration(*a), format_duration(*b))
                }
                (None, None) => format!("{name} ever"),
            }
        }
        Cond::BelowPeak { tally, by } => format!("score at least {} below {}", cents(*by), model.tallies[*tally].name),
        Cond::Profile(i) => field_test(&model.profile_tests[*i]),
        Cond::Criterion(i) => format!("criterion {} matches", model.grade.criteria[*i].name),
        Cond::OpportunityIn(s) => format!("an opportunity is {s}"),
        Cond::OpportunityReached(s) => format!("an opportunity reached {s}"),
    }
}

/// The whole summary.
pub fn describe(model: &Model) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model {}: {}", model.version, model.description);
    let hl = if model.score.half_life > 0 { format_duration(model.score.half_life) } else { "none".into() };
    let _ = writeln!(s, "score: {} to {}, half-life {hl}", model.score.min, model.score.max);
    let _ = writeln!(s, "\nrules ({}):", model.rules.len());
    for r in &model.rules {
        let mut p = points(r.points);
        if let Some(e) = r.escalate {
            let _ = write!(p, " for the first {}, then {}", e.after, points(e.points));
        }
        if let Some(c) = r.cap {
            let _ = write!(p, ", at most {} per {}", c.points, format_duration(c.window));
        }
        let _ = writeln!(s, "  {:<18} on {}: {p}", r.name, matcher(&r.on));
    }
    let g = &model.grade;
    let letters: Vec<String> = g.letters.iter().map(|(l, m)| format!("{l} ≥ {m}")).collect();
    let _ = writeln!(s, "\ngrade: fit starts at {}; {}, else {}", g.start, letters.join(", "), g.lowest);
    for c in &g.criteria {
        let mut when = c.when.iter().map(field_test).collect::<Vec<_>>().join(" and ");
        if !c.unless.is_empty() {
            let _ = write!(
                when,
                ", unless {}",
                c.unless.iter().map(|u| g.criteria[*u].name.as_str()).collect::<Vec<_>>().join(" or ")
            );
        }
        let _ = writeln!(s, "  {:<18} {when}: {}", c.name, points(c.fit));
    }
    let _ = writeln!(s, "\ntallies ({}):", model.tallies.len());
    for t in &model.tallies {
        let what = match t.measure {
            Measure::Count => "count of",
            Measure::Points => "rule points of",
            Measure::PositivePoints => "positive rule points of",
            Measure::PeakScore => "peak score after",
        };
        let events = if t.events.is_empty() {
            "every event".to_string()
        } else {
            t.events.iter().map(matcher).collect::<Vec<_>>().join("; ")
        };
        let window = t.window.map_or("ever".into(), |w| format!("in the last {}", format_duration(w)));
        let reset = t.reset_on_change.map_or(String::new(), |f| format!(", reset when {f} changes"));
        let _ = writeln!(s, "  {:<24} {what} {events}, {window}{reset}", t.name);
    }
    let _ = writeln!(s, "\nsegments ({}):", model.segments.len());
    for seg in &model.segments {
        let _ = writeln!(s, "  {:<30} {}", seg.name, cond(model, &seg.when));
    }
    let _ = writeln!(
        s,
        "\nduplicates: each lead remembers its last {} event ids; windows group events by {}",
        model.remember_event_ids,
        format_duration(model.bucket)
    );
    let (largest, parts) = leadscore_store::max_state_bytes(model);
    let _ = writeln!(
        s,
        "largest lead state: {largest} bytes at most (largest part: {})",
        parts.first().map_or(String::new(), |(what, n)| format!("{what}, {n} bytes"))
    );
    s
}
