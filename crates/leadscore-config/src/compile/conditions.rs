//! Segment conditions of a model file compiled into core [`Cond`]s: score
//! and grade thresholds (in cents), tallies, stages, profile tests and
//! combinations, every name resolved and every problem reported with its key
//! path.

use super::*;

/// A threshold the score (rounded to cents) is compared with, in cents.
pub(super) fn cents(path: &str, v: f64) -> Result<i64> {
    let c = (v * 100.0).round();
    if (c - v * 100.0).abs() > 1e-6 {
        return Err(ConfigError::at(path, format!("{v} has more than two decimals; scores are compared in cents")));
    }
    Ok(c as i64)
}

/// The model's tallies and grade criteria, for resolving names in conditions.
pub(super) struct Names<'a> {
    pub(super) tallies: &'a [TallyFile],
    pub(super) criteria: &'a [CriterionFile],
}

impl Names<'_> {
    fn tally(&self, path: &str, name: &str) -> Result<usize> {
        self.tallies.iter().position(|t| t.name == name).ok_or_else(|| {
            ConfigError::at(
                path,
                format!("{name:?} is not a tally; expected one of: {}", list(self.tallies.iter().map(|t| &t.name))),
            )
        })
    }
    fn criterion(&self, path: &str, name: &str) -> Result<usize> {
        self.criteria.iter().position(|c| c.name == name).ok_or_else(|| {
            ConfigError::at(
                path,
                format!(
                    "{name:?} is not a grade criterion; expected one of: {}",
                    list(self.criteria.iter().map(|c| &c.name))
                ),
            )
        })
    }
}

pub(super) fn stage(path: &str, s: &str) -> Result<Stage> {
    Stage::parse(s).ok_or_else(|| {
        ConfigError::at(
            path,
            format!("{s:?} is not a stage; expected one of: {}", list(Stage::ALL.iter().map(|s| s.as_str()))),
        )
    })
}

pub(super) fn cond(path: &str, c: &CondFile, names: &Names, profile_tests: &mut Vec<FieldTest>) -> Result<Cond> {
    let subjects: Vec<&str> = [
        ("score", c.score.is_some()),
        ("grade", c.grade.is_some()),
        ("tally", c.tally.is_some()),
        ("since", c.since.is_some()),
        ("below_peak", c.below_peak.is_some()),
        ("profile", c.profile.is_some()),
        ("criterion", c.criterion.is_some()),
        ("opportunity_in", c.opportunity_in.is_some()),
        ("opportunity_reached", c.opportunity_reached.is_some()),
        ("all", c.all.is_some()),
        ("any", c.any.is_some()),
        ("not", c.not.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    let subject = match subjects.as_slice() {
        [one] => *one,
        [] => {
            return Err(ConfigError::at(
                path,
                "expected one of: score, grade, tally, since, below_peak, profile, criterion, opportunity_in, opportunity_reached, all, any, not",
            ))
        }
        many => return Err(ConfigError::at(path, format!("expected one condition per table, found {}", list(many)))),
    };
    let range = Range { gt: c.gt, gte: c.gte, lt: c.lt, lte: c.lte };
    // Qualifiers that do not belong to the subject are mistakes worth naming.
    let allowed: &[&str] = match subject {
        "tally" => &["gt", "gte", "lt", "lte"],
        "since" => &["at_least", "less_than"],
        "below_peak" => &["by"],
        _ => &[],
    };
    for (k, present) in [
        ("gt", c.gt.is_some()),
        ("gte", c.gte.is_some()),
        ("lt", c.lt.is_some()),
        ("lte", c.lte.is_some()),
        ("at_least", c.at_least.is_some()),
        ("less_than", c.less_than.is_some()),
        ("by", c.by.is_some()),
    ] {
        if present && !allowed.contains(&k) {
            return Err(ConfigError::at(format!("{path}.{k}"), format!("{k} does not go with {subject}")));
        }
    }
    let sub = |key: &str| format!("{path}.{key}");
    Ok(match subject {
        "score" => {
            let r = c.score.as_ref().expect("subject");
            let p = sub("score");
            let at_least = match (r.gte, r.gt) {
                (Some(v), None) => Some(cents(&format!("{p}.gte"), v)?),
                (None, Some(v)) => Some(cents(&format!("{p}.gt"), v)? + 1),
                (None, None) => None,
                _ => return Err(ConfigError::at(&p, "use gte or gt, not both")),
            };
            let below = match (r.lt, r.lte) {
                (Some(v), None) => Some(cents(&format!("{p}.lt"), v)?),
                (None, Some(v)) => Some(cents(&format!("{p}.lte"), v)? + 1),
                (None, None) => None,
                _ => return Err(ConfigError::at(&p, "use lt or lte, not both")),
            };
            if at_least.is_none() && below.is_none() {
                return Err(ConfigError::at(&p, "expected a bound: gt, gte, lt or lte"));
            }
            Cond::Score { at_least, below }
        }
        "grade" => {
            let mut mask = 0u8;
            for (i, g) in c.grade.as_ref().expect("subject").iter().enumerate() {
                let grade = Grade::parse(g).ok_or_else(|| {
                    ConfigError::at(
                        format!("{}[{i}]", sub("grade")),
                        format!("{g:?} is not a grade; expected A, B, C, D, E or F"),
                    )
                })?;
                mask |= 1 << grade as u8;
            }
            Cond::Grade(mask)
        }
        "tally" => {
            if range.is_empty_spec() {
                return Err(ConfigError::at(path, "a tally condition needs a bound: gt, gte, lt or lte"));
            }
            Cond::Tally { tally: names.tally(&sub("tally"), c.tally.as_deref().expect("subject"))?, range }
        }
        "since" => {
            let at_least = c.at_least.as_deref().map(|d| duration(&sub("at_least"), d)).transpose()?;
            let less_than = c.less_than.as_deref().map(|d| duration(&sub("less_than"), d)).transpose()?;
            if at_least.is_none() && less_than.is_none() {
                return Err(ConfigError::at(path, "a since condition needs at_least or less_than (a duration)"));
            }
            Cond::Since {
                tally: names.tally(&sub("since"), c.since.as_deref().expect("subject"))?,
                at_least,
                less_than,
            }
        }
        "below_peak" => {
            let tally = names.tally(&sub("below_peak"), c.below_peak.as_deref().expect("subject"))?;
            if names.tallies[tally].measure != "peak_score" || names.tallies[tally].window.is_none() {
                return Err(ConfigError::at(
                    sub("below_peak"),
                    format!("tally {:?} must have measure = \"peak_score\" and a window", names.tallies[tally].name),
                ));
            }
            let by = c.by.ok_or_else(|| ConfigError::at(path, "below_peak needs by = <points>"))?;
            Cond::BelowPeak { tally, by: cents(&sub("by"), by)? }
        }
        "profile" => {
            let t = field_test(&sub("profile"), c.profile.as_ref().expect("subject"), Subject::Profile)?;
            let i = match profile_tests.iter().position(|p| *p == t) {
                Some(i) => i,
                None => {
                    profile_tests.push(t);
                    profile_tests.len() - 1
                }
            };
            Cond::Profile(i)
        }
        "criterion" => Cond::Criterion(names.criterion(&sub("criterion"), c.criterion.as_deref().expect("subject"))?),
        "opportunity_in" => {
            Cond::OpportunityIn(stage(&sub("opportunity_in"), c.opportunity_in.as_deref().expect("subject"))?)
        }
        "opportunity_reached" => Cond::OpportunityReached(stage(
            &sub("opportunity_reached"),
            c.opportunity_reached.as_deref().expect("subject"),
        )?),
        "all" | "any" => {
            let items = if subject == "all" { c.all.as_ref() } else { c.any.as_ref() }.expect("subject");
            if items.is_empty() {
                return Err(ConfigError::at(sub(subject), "expected at least one condition"));
            }
            let conds = items
                .iter()
                .enumerate()
                .map(|(i, c)| cond(&format!("{path}.{subject}[{i}]"), c, names, profile_tests))
                .collect::<Result<Vec<_>>>()?;
            if subject == "all" {
                Cond::All(conds)
            } else {
                Cond::Any(conds)
            }
        }
        "not" => Cond::Not(Box::new(cond(&sub("not"), c.not.as_ref().expect("subject"), names, profile_tests)?)),
        _ => unreachable!("every subject is handled"),
    })
}
