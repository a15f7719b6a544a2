//! Turns a parsed [`ModelFile`] into a checked core [`Model`]: names resolved to
//! indices, fields checked against the kinds they are tested on, durations and
//! thresholds parsed, and every problem reported with its key path.

use crate::error::ConfigError;
use crate::model_file::*;
use leadscore_core::event::{Field, FieldType, Kind, KindSet, Stage};
use leadscore_core::model::{
    Cap, Cond, Criterion, Escalation, EventMatcher, FieldTest, Grade, GradeSpec, Measure, Model, ModelSpec, Range,
    Rule, ScoreSpec, Segment, Tally, Test,
};
use leadscore_core::text::{Needle, Phrase};
use leadscore_core::time::{parse_duration, Millis, MAX_DURATION};

mod conditions;
use conditions::{cond, Names};

type Result<T> = std::result::Result<T, ConfigError>;

/// Caps are kept exact, one entry per award; this bounds the entries per lead.
const MAX_CAP_ENTRIES: f64 = 1000.0;

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items.into_iter().map(|s| s.as_ref().to_string()).collect::<Vec<_>>().join(", ")
}

fn duration(path: &str, s: &str) -> Result<Millis> {
    let d = parse_duration(s).map_err(|e| ConfigError::at(path, e.to_string()))?;
    if d <= 0 {
        return Err(ConfigError::at(path, format!("{s:?}: expected a duration above zero")));
    }
    if d > MAX_DURATION {
        return Err(ConfigError::at(path, format!("{s:?}: expected at most 100 years (\"36525d\")")));
    }
    Ok(d)
}

fn kinds(path: &str, on: &OneOrMany) -> Result<KindSet> {
    let names = on.to_vec();
    if names.is_empty() {
        return Err(ConfigError::at(path, "expected at least one event kind"));
    }
    let mut set = Vec::new();
    for n in &names {
        let k = Kind::parse(n).ok_or_else(|| {
            ConfigError::at(
                path,
                format!("{n:?} is not an event kind; expected one of: {}", list(Kind::ALL.iter().map(|k| k.as_str()))),
            )
        })?;
        set.push(k);
    }
    Ok(KindSet::of(&set))
}

/// Where a field test applies: to events of some kinds, or to the profile.
#[derive(Clone, Copy)]
enum Subject {
    Events(KindSet),
    Profile,
}

fn field_test(path: &str, t: &FieldTestFile, subject: Subject) -> Result<FieldTest> {
    let fpath = format!("{path}.field");
    let field = Field::parse(&t.field).ok_or_else(|| {
        let known: Vec<&str> = match subject {
            Subject::Profile => leadscore_core::event::PROFILE_FIELDS.iter().map(|f| f.as_str()).collect(),
            Subject::Events(k) => {
                let mut v: Vec<&str> = k.iter().flat_map(|k| k.properties().iter().map(|(f, _)| f.as_str())).collect();
                v.dedup();
                v
            }
        };
        ConfigError::at(&fpath, format!("{:?} is not a known field; expected one of: {}", t.field, list(known)))
    })?;
    match subject {
        Subject::Profile if !field.is_profile() => {
            return Err(ConfigError::at(
                &fpath,
                format!(
                    "{field} is not a profile field; expected one of: {}",
                    list(leadscore_core::event::PROFILE_FIELDS.iter().map(|f| f.as_str()))
                ),
            ))
        }
        Subject::Events(k) => {
            if let Some(kind) = k.iter().find(|k| !k.has_property(field)) {
                return Err(ConfigError::at(
                    &fpath,
                    format!(
                        "{kind} events have no property {field}; their properties are: {}",
                        list(kind.properties().iter().map(|(f, _)| f.as_str()))
                    ),
                ));
            }
        }
        _ => {}
    }
    let ty = field.field_type();
    let text = matches!(ty, FieldType::Text | FieldType::TextList);
    let numeric = matches!(ty, FieldType::Integer | FieldType::Number);
    let cs = t.case_sensitive;
    let needles = |v: &[String]| v.iter().map(|s| Needle::new(s, cs)).collect::<Vec<_>>();
    let mut tests: Vec<(&str, Test)> = Vec::new();
    if let Some(v) = &t.one_of {
        tests.push(("one_of", Test::OneOf(needles(v))));
    }
    if let Some(v) = &t.contains {
        tests.push(("contains", Test::Contains(needles(&v.to_vec()))));
    }
    if let Some(v) = &t.prefix {
        tests.push(("prefix", Test::Prefix(needles(&v.to_vec()))));
    }
    if let Some(v) = &t.words {
        tests.push(("words", Test::Words(v.iter().map(|s| Phrase::new(s, cs)).collect())));
    }
    if let Some(v) = &t.domain_in {
        tests.push(("domain_in", Test::DomainIn(needles(v))));
    }
    if let Some(p) = t.present {
        tests.push(("present", Test::Present(p)));
    }
    let range = Range { gt: t.gt, gte: t.gte, lt: t.lt, lte: t.lte };
    if !range.is_empty_spec() {
        tests.push(("gt/gte/lt/lte", Test::Range(range)));
    }
    match &t.equals {
        Some(Scalar::Text(s)) => tests.push(("equals", Test::OneOf(needles(std::slice::from_ref(s))))),
        Some(Scalar::Bool(b)) => tests.push(("equals", Test::Is(*b))),
        Some(Scalar::Number(n)) => {
            tests.push(("equals", Test::Range(Range { gte: Some(*n), lte: Some(*n), ..Range::default() })))
        }
        None => {}
    }
    let (key, test) = match tests.len() {
        1 => tests.pop().expect("one test"),
        0 => {
            return Err(ConfigError::at(
                path,
                "expected one test: equals, one_of, contains, prefix, words, domain_in, present, or gt/gte/lt/lte",
            ))
        }
        _ => {
            return Err(ConfigError::at(
                path,
                format!("expected one test, found {}", list(tests.iter().map(|(k, _)| *k))),
            ))
        }
    };
    let fits = match &test {
        Test::Present(_) => true,
        Test::Range(_) => numeric,
        Test::Is(_) => ty == FieldType::Boolean,
        Test::DomainIn(_) => ty == FieldType::Text,
        _ => text,
    };
    if !fits {
        let hint = match ty {
            FieldType::Text | FieldType::TextList => "a text test (equals \"...\", one_of, contains, prefix, words)",
            FieldType::Integer | FieldType::Number => "a numeric test (gt, gte, lt, lte, equals <number>)",
            FieldType::Boolean => "equals = true or equals = false",
        };
        return Err(ConfigError::at(format!("{path}.{key}"), format!("{field} is {}; expected {hint}", ty.describe())));
    }
    Ok(FieldTest { field, test })
}

fn matcher(path: &str, on: &OneOrMany, when: &[FieldTestFile]) -> Result<EventMatcher> {
    let kinds = kinds(&format!("{path}.on"), on)?;
    let when = when
        .iter()
        .enumerate()
        .map(|(i, t)| field_test(&format!("{path}.when[{i}]"), t, Subject::Events(kinds)))
        .collect::<Result<_>>()?;
    Ok(EventMatcher { kinds, when })
}

fn unique_names<'a>(section: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        if n.trim().is_empty() {
            return Err(ConfigError::at(format!("{section}[{i}].name"), "expected a non-empty name"));
        }
        if !seen.insert(n) {
            return Err(ConfigError::at(
                format!("{section}[{i}].name"),
                format!("{n:?} is used twice; names must be unique"),
            ));
        }
    }
    Ok(())
}

/// Compiles a model file; see the module documentation.
pub fn compile(f: &ModelFile) -> Result<Model> {
    if f.version.trim().is_empty() {
        return Err(ConfigError::at("version", "expected a non-empty model version, e.g. \"seed-1\""));
    }
    let half_life = match f.score.half_life.trim() {
        "none" | "off" => 0,
        s => duration("score.half_life", s)?,
    };
    if f.score.min.partial_cmp(&f.score.max) != Some(std::cmp::Ordering::Less) {
        return Err(ConfigError::at("score", format!("min ({}) must be below max ({})", f.score.min, f.score.max)));
    }
    let remember_event_ids = f.dedup.remember_event_ids.unwrap_or(ModelSpec::DEFAULT_REMEMBER_EVENT_IDS);
    if !(1..=10_000).contains(&remember_event_ids) {
        return Err(ConfigError::at("dedup.remember_event_ids", format!("{remember_event_ids}: expected 1 to 10000")));
    }
    let bucket = match &f.windows.bucket {
        Some(b) => duration("windows.bucket", b)?,
        None => ModelSpec::DEFAULT_BUCKET,
    };
    if bucket > leadscore_core::time::HOUR {
        return Err(ConfigError::at(
            "windows.bucket",
            format!("{:?}: expected at most 1h", f.windows.bucket.as_deref().unwrap_or("")),
        ));
    }

    unique_names("rules", f.rules.iter().map(|r| r.name.as_str()))?;
    unique_names("grade.criteria", f.grade.criteria.iter().map(|c| c.name.as_str()))?;
    unique_names("tallies", f.tallies.iter().map(|t| t.name.as_str()))?;
    unique_names("segments", f.segments.iter().map(|s| s.name.as_str()))?;

    let mut rules = Vec::new();
    for (i, r) in f.rules.iter().enumerate() {
        let p = format!("rules[{i}]");
        let on = matcher(&p, &r.on, &r.when)?;
        let cap = match &r.cap {
            Some(c) => {
                if c.points <= 0.0 {
                    return Err(ConfigError::at(
                        format!("{p}.cap.points"),
                        format!("{}: expected a positive number", c.points),
                    ));
                }
                if r.points < 0.0 {
                    return Err(ConfigError::at(
                        format!("{p}.cap"),
                        "a cap limits positive points; this rule awards negative points",
                    ));
                }
                let smallest = r.escalate.as_ref().map_or(r.points, |e| e.points.min(r.points));
                if smallest <= 0.0 || c.points / smallest > MAX_CAP_ENTRIES {
                    return Err(ConfigError::at(
                        format!("{p}.cap.points"),
                        format!(
                            "{}: a capped rule must award positive points, and at most {MAX_CAP_ENTRIES} awards may fit under the cap",
                            c.points
                        ),
                    ));
                }
                Some(Cap { points: c.points, window: duration(&format!("{p}.cap.per"), &c.per)? })
            }
            None => None,
        };
        rules.push(Rule {
            name: r.name.clone(),
            description: r.description.clone(),
            on,
            points: r.points,
            escalate: r.escalate.as_ref().map(|e| Escalation { after: e.after, points: e.points }),
            cap,
        });
    }

    let mut letters = Vec::new();
    for (letter, min) in &f.grade.letters {
        let g = Grade::parse(letter).ok_or_else(|| {
            ConfigError::at(
                format!("grade.letters.{letter}"),
                format!("{letter:?} is not a grade; expected A, B, C, D, E or F"),
            )
        })?;
        letters.push((g, *min));
    }
    letters.sort_by_key(|(g, _)| *g);
    for w in letters.windows(2) {
        if w[0].1 <= w[1].1 {
            return Err(ConfigError::at(
                format!("grade.letters.{}", w[1].0),
                format!("{} must be below the minimum of {} ({})", w[1].1, w[0].0, w[0].1),
            ));
        }
    }
    let lowest = Grade::parse(&f.grade.lowest).ok_or_else(|| {
        ConfigError::at("grade.lowest", format!("{:?} is not a grade; expected A, B, C, D, E or F", f.grade.lowest))
    })?;
    if letters.iter().any(|(g, _)| *g >= lowest) {
        return Err(ConfigError::at(
            "grade.lowest",
            format!("{lowest} must be worse than every letter in grade.letters"),
        ));
    }
    let mut criteria = Vec::new();
    for (i, c) in f.grade.criteria.iter().enumerate() {
        let p = format!("grade.criteria[{i}]");
        if c.when.is_empty() {
            return Err(ConfigError::at(format!("{p}.when"), "expected at least one test"));
        }
        let when = c
            .when
            .iter()
            .enumerate()
            .map(|(j, t)| field_test(&format!("{p}.when[{j}]"), t, Subject::Profile))
            .collect::<Result<_>>()?;
        let unless = c
            .unless
            .iter()
            .enumerate()
            .map(|(j, n)| {
                f.grade.criteria.iter().position(|o| &o.name == n).ok_or_else(|| {
                    ConfigError::at(format!("{p}.unless[{j}]"), format!("{n:?} is not a grade criterion"))
                })
            })
            .collect::<Result<_>>()?;
        criteria.push(Criterion { name: c.name.clone(), description: c.description.clone(), when, unless, fit: c.fit });
    }

    let mut tallies = Vec::new();
    for (i, t) in f.tallies.iter().enumerate() {
        let p = format!("tallies[{i}]");
        let measure = match t.measure.as_str() {
            "count" => Measure::Count,
            "points" => Measure::Points,
            "positive_points" => Measure::PositivePoints,
            "peak_score" => Measure::PeakScore,
            m => {
                return Err(ConfigError::at(
                    format!("{p}.measure"),
                    format!("{m:?}: expected count, points, positive_points or peak_score"),
                ))
            }
        };
        let events = t
            .events
            .iter()
            .enumerate()
            .map(|(j, m)| matcher(&format!("{p}.events[{j}]"), &m.on, &m.when))
            .collect::<Result<_>>()?;
        let window = t.window.as_deref().map(|w| duration(&format!("{p}.window"), w)).transpose()?;
        let reset_on_change = match &t.reset_on_change {
            Some(name) => match Field::parse(name) {
                Some(f) if f.is_profile() => Some(f),
                _ => {
                    return Err(ConfigError::at(
                        format!("{p}.reset_on_change"),
                        format!(
                            "{name:?} is not a profile field; expected one of: {}",
                            list(leadscore_core::event::PROFILE_FIELDS.iter().map(|f| f.as_str()))
                        ),
                    ))
                }
            },
            None => None,
        };
        tallies.push(Tally {
            name: t.name.clone(),
            description: t.description.clone(),
            events,
            measure,
            window,
            reset_on_change,
        });
    }

    let names = Names { tallies: &f.tallies, criteria: &f.grade.criteria };
    let mut profile_tests = Vec::new();
    let mut segments = Vec::new();
    for (i, s) in f.segments.iter().enumerate() {
        let p = format!("segments[{i}]");
        if s.when.is_empty() {
            return Err(ConfigError::at(format!("{p}.when"), "expected at least one condition"));
        }
        let conds = s
            .when
            .iter()
            .enumerate()
            .map(|(j, c)| cond(&format!("{p}.when[{j}]"), c, &names, &mut profile_tests))
            .collect::<Result<Vec<_>>>()?;
        let when = if conds.len() == 1 { conds.into_iter().next().expect("one") } else { Cond::All(conds) };
        segments.push(Segment { name: s.name.clone(), description: s.description.clone(), when });
    }

    let spec = ModelSpec {
        version: f.version.clone(),
        description: f.description.clone(),
        score: ScoreSpec { min: f.score.min, max: f.score.max, half_life },
        rules,
        grade: GradeSpec { start: f.grade.start, letters, lowest, criteria },
        tallies,
        segments,
        profile_tests,
        remember_event_ids,
        bucket,
    };
    Model::new(spec).map_err(|e| ConfigError::at("", e.0))
}
