//! A scoring model as data: rules that award points, grade criteria over the
//! profile, tallies (counters and sums over rolling windows), and segments built
//! from conditions. Built by the config crate from a TOML file; nothing here is
//! specific to the seed model.
//!
//! [`Model::new`] checks the cross references and precomputes what the hot path
//! needs (the score thresholds of all segments, in cents).

use crate::event::{Event, Field, Stage};
use crate::layout::{stable_hash, StateLayout};
use crate::time::{format_duration, Millis, HOUR};
use std::fmt;

/// Limits that keep per-lead state in fixed-size bit sets.
pub const MAX_SEGMENTS: usize = 128;
pub const MAX_CRITERIA: usize = 64;
pub const MAX_PROFILE_TESTS: usize = 64;

macro_rules! grades {
    ($($g:ident),+) => {
        /// A demographic grade, A (best fit) to F.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Grade { $($g),+ }
        impl Grade {
            pub const ALL: &'static [Grade] = &[$(Grade::$g),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Grade::$g => stringify!($g)),+ }
            }
            pub fn parse(s: &str) -> Option<Grade> {
                match s { $(stringify!($g) => Some(Grade::$g),)+ _ => None }
            }
        }
    };
}
grades!(A, B, C, D, E, F);

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

mod flat;
mod matching;
mod timed;
pub(crate) use flat::{BitSet, SegmentTest, SegmentTests};
pub use matching::{Bound, EventMatcher, FieldTest, Range, Test};
pub use timed::CACHED_DEADLINES;
pub(crate) use timed::{score_slots, timed_conds, TimedCond};

/// After `after` matches, each further match earns `points` instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Escalation {
    pub after: u32,
    pub points: f64,
}

/// A rule awards points only while what it awarded in the preceding `window` is
/// below `points`, and never more than the remainder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cap {
    pub points: f64,
    pub window: Millis,
}

/// A scoring rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub on: EventMatcher,
    pub points: f64,
    pub escalate: Option<Escalation>,
    pub cap: Option<Cap>,
}

/// A grade criterion: adds `fit` when every test holds on the profile and none of
/// the `unless` criteria match.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub name: String,
    pub description: String,
    pub when: Vec<FieldTest>,
    pub unless: Vec<usize>,
    pub fit: f64,
}

/// The demographic grade: fit starts at `start`; the first letter whose
/// threshold the fit reaches, else `lowest`.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeSpec {
    pub start: f64,
    /// `(letter, minimum fit)`, best letter first.
    pub letters: Vec<(Grade, f64)>,
    pub lowest: Grade,
    pub criteria: Vec<Criterion>,
}

/// What a tally adds up for each matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// One per event.
    Count,
    /// The rule points the event earned (negative included, before clamping).
    Points,
    /// The positive rule points the event earned.
    PositivePoints,
    /// The score right after the event; the tally keeps the highest.
    PeakScore,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Count => "count",
            Measure::Points => "points",
            Measure::PositivePoints => "positive_points",
            Measure::PeakScore => "peak_score",
        }
    }
}

/// A per-lead counter, sum or peak over matching events, over a rolling window or
/// for ever; optionally reset whenever a profile field changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub name: String,
    pub description: String,
    /// Empty: every event counts.
    pub events: Vec<EventMatcher>,
    pub measure: Measure,
    pub window: Option<Millis>,
    pub reset_on_change: Option<Field>,
}

impl Tally {
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        self.events.is_empty() || self.events.iter().any(|m| m.matches(event))
    }
}

/// A segment membership condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// The score rounded to cents is at least `at_least` and below `below` (cents).
    Score {
        at_least: Option<i64>,
        below: Option<i64>,
    },
    /// The grade is one of these (bit `1 << grade`).
    Grade(u8),
    /// The tally's current value lies in the range.
    Tally {
        tally: usize,
        range: Range,
    },
    /// Time since the tally last matched lies in the range; false if it never did.
    Since {
        tally: usize,
        at_least: Option<Millis>,
        less_than: Option<Millis>,
    },
    /// The score is at least `by` cents below the tally's peak (a `peak_score` tally).
    BelowPeak {
        tally: usize,
        by: i64,
    },
    /// A profile test (index into [`ModelSpec::profile_tests`]).
    Profile(usize),
    /// A grade criterion matches (index into the criteria).
    Criterion(usize),
    /// At least one opportunity is now in this stage.
    OpportunityIn(Stage),
    /// An opportunity has ever reached this stage.
    OpportunityReached(Stage),
}

impl Cond {
    fn visit(&self, f: &mut impl FnMut(&Cond)) {
        f(self);
        match self {
            Cond::All(c) | Cond::Any(c) => c.iter().for_each(|c| c.visit(f)),
            Cond::Not(c) => c.visit(f),
            _ => {}
        }
    }
}

/// A named segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub description: String,
    pub when: Cond,
}

/// The behavioural score's range and decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSpec {
    pub min: f64,
    pub max: f64,
    /// 0 disables decay.
    pub half_life: Millis,
}

/// Everything a model says, before [`Model::new`] checks and prepares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub version: String,
    pub description: String,
    pub score: ScoreSpec,
    pub rules: Vec<Rule>,
    pub grade: GradeSpec,
    pub tallies: Vec<Tally>,
    pub segments: Vec<Segment>,
    pub profile_tests: Vec<FieldTest>,
    /// How many recent event ids each lead remembers to drop duplicates.
    pub remember_event_ids: usize,
    /// Window granularity: events within one bucket leave a window together.
    pub bucket: Millis,
}

impl ModelSpec {
    /// The defaults every model starts from.
    pub const DEFAULT_REMEMBER_EVENT_IDS: usize = 32;
    pub const DEFAULT_BUCKET: Millis = HOUR;
}

/// A checked, prepared model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    /// Every static score threshold of the segments, in cents, ascending.
    pub(crate) score_thresholds: Vec<i64>,
    /// For each rule, its slot in the lead's rule state, if it needs one (an
    /// escalation count or a cap window): most rules keep no state per lead.
    pub(crate) rule_slots: Vec<Option<u16>>,
    /// The lead's window holding each capped rule's awards.
    pub(crate) rule_windows: Vec<Option<u16>>,
    /// The lead's window of each tally that has one.
    pub(crate) tally_windows: Vec<Option<u16>>,
    pub(crate) window_count: usize,
    /// How long an entry stays in each window (a tally's width, a cap's period).
    pub(crate) window_widths: Vec<Millis>,
    /// The same for tallies' windows only (`None`: a cap's): what time
    /// expires before an event or a timer is evaluated.
    pub(crate) tally_window_widths: Vec<Option<Millis>>,
    /// The segments' conditions that time alone can change, each once.
    pub(crate) timed: Vec<TimedCond>,
    /// The slots of those whose kept deadline a score change makes stale.
    pub(crate) timed_score_slots: u8,
    /// Every segment's condition as flat tests.
    pub(crate) segment_tests: SegmentTests,
    /// What the slots of a lead's state mean under this model.
    pub(crate) layout: StateLayout,
    fingerprint: u64,
}

impl std::ops::Deref for Model {
    type Target = ModelSpec;
    fn deref(&self) -> &ModelSpec {
        &self.spec
    }
}

/// A model that refers to something that does not exist or breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError(pub String);

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

impl Model {
    pub fn new(spec: ModelSpec) -> Result<Model, ModelError> {
        let e = |m: String| Err(ModelError(m));
        if spec.segments.len() > MAX_SEGMENTS {
            return e(format!("at most {MAX_SEGMENTS} segments are supported, got {}", spec.segments.len()));
        }
        if spec.grade.criteria.len() > MAX_CRITERIA {
            return e(format!("at most {MAX_CRITERIA} grade criteria are supported"));
        }
        if spec.profile_tests.len() > MAX_PROFILE_TESTS {
            return e(format!("at most {MAX_PROFILE_TESTS} profile tests in segments are supported"));
        }
        if spec.score.min.partial_cmp(&spec.score.max) != Some(std::cmp::Ordering::Less) {
            return e(format!("score.min ({}) must be below score.max ({})", spec.score.min, spec.score.max));
        }
        if spec.bucket <= 0 || spec.bucket > HOUR {
            return e("window buckets must be between 1 ms and 1 hour".into());
        }
        if spec.remember_event_ids == 0 {
            return e("remember_event_ids must be at least 1".into());
        }
        for c in &spec.grade.criteria {
            if let Some(&u) = c.unless.iter().find(|&&u| u >= spec.grade.criteria.len()) {
                return e(format!("criterion {} refers to criterion #{u}, which does not exist", c.name));
            }
        }
        let mut thresholds = Vec::new();
        for s in &spec.segments {
            let mut bad = None;
            s.when.visit(&mut |c| match *c {
                Cond::Score { at_least, below } => thresholds.extend(at_least.into_iter().chain(below)),
                Cond::Tally { tally, .. } | Cond::Since { tally, .. } if tally >= spec.tallies.len() => {
                    bad = Some(format!("segment {} refers to tally #{tally}, which does not exist", s.name))
                }
                Cond::BelowPeak { tally, .. } => match spec.tallies.get(tally) {
                    Some(t) if t.measure == Measure::PeakScore && t.window.is_some() => {}
                    _ => bad = Some(format!("segment {}: below_peak needs a peak_score tally with a window", s.name)),
                },
                Cond::Profile(i) if i >= spec.profile_tests.len() => {
                    bad = Some(format!("segment {} refers to profile test #{i}, which does not exist", s.name))
                }
                Cond::Criterion(i) if i >= spec.grade.criteria.len() => {
                    bad = Some(format!("segment {} refers to criterion #{i}, which does not exist", s.name))
                }
                _ => {}
            });
            if let Some(m) = bad {
                return e(m);
            }
        }
        thresholds.sort_unstable();
        thresholds.dedup();
        let mut next = 0u16;
        let rule_slots = spec
            .rules
            .iter()
            .map(|r| {
                (r.escalate.is_some() || r.cap.is_some()).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let mut windows = 0u16;
        let mut next_window = |has: bool| {
            has.then(|| {
                windows += 1;
                windows - 1
            })
        };
        let tally_windows = spec.tallies.iter().map(|t| next_window(t.window.is_some())).collect();
        let rule_windows = spec.rules.iter().map(|r| next_window(r.cap.is_some())).collect();
        let mut model = Model {
            spec,
            score_thresholds: thresholds,
            rule_slots,
            rule_windows,
            tally_windows,
            window_count: usize::from(windows),
            window_widths: Vec::new(),
            tally_window_widths: Vec::new(),
            timed: Vec::new(),
            timed_score_slots: 0,
            segment_tests: SegmentTests::default(),
            layout: StateLayout::default(),
            fingerprint: 0,
        };
        model.window_widths = vec![0; model.window_count];
        model.tally_window_widths = vec![None; model.window_count];
        for (t, w) in model.spec.tallies.iter().zip(&model.tally_windows) {
            if let (Some(w), Some(width)) = (w, t.window) {
                model.window_widths[usize::from(*w)] = width;
                model.tally_window_widths[usize::from(*w)] = Some(width);
            }
        }
        for (r, w) in model.spec.rules.iter().zip(&model.rule_windows) {
            if let (Some(w), Some(cap)) = (w, r.cap) {
                model.window_widths[usize::from(*w)] = cap.window;
            }
        }
        model.timed = timed_conds(&model.spec.segments, &model.spec.tallies, &model.tally_windows);
        model.timed_score_slots = score_slots(&model.timed);
        model.segment_tests = SegmentTests::of(&model.spec.segments, &model.spec.tallies, &model.tally_windows);
        model.layout = StateLayout::of(&model);
        // Everything the model computes with, descriptions included (a change
        // of those alone re-evaluates leads once and publishes nothing).
        model.fingerprint = stable_hash(format!("{:?}", model.spec).as_bytes()).max(1);
        Ok(model)
    }

    /// Each window a lead may keep, named, with the most entries it can hold:
    /// a tally's window holds at most one entry per bucket it spans (plus
    /// the bucket in progress and one on its way out); a cap's holds full
    /// awards that fit under the cap, each possibly followed by a remainder
    /// that tops the cap up.
    pub fn window_bounds(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for t in &self.tallies {
            if let Some(width) = t.window {
                let buckets = (width / self.bucket.max(1)) as u64;
                out.push((
                    format!(
                        "tally {} ({} at {} buckets)",
                        t.name,
                        format_duration(width),
                        format_duration(self.bucket)
                    ),
                    buckets + 2,
                ));
            }
        }
        for r in &self.rules {
            if let Some(cap) = &r.cap {
                let smallest = r.escalate.as_ref().map_or(r.points, |e| e.points.min(r.points));
                let awards =
                    if smallest > 0.0 { (cap.points / smallest).ceil().min(1e9) as u64 } else { 1_000_000_000 };
                out.push((
                    format!("rule {} (cap {} per {})", r.name, cap.points, format_duration(cap.window)),
                    2 * awards + 2,
                ));
            }
        }
        out
    }

    /// How many rules keep state per lead.
    pub fn stateful_rules(&self) -> usize {
        self.rule_slots.iter().flatten().count()
    }

    /// The names of the slots of this model's lead states.
    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// A hash of everything the model says, stored with each lead's state:
    /// a state of another fingerprint was computed under another model and
    /// is migrated and re-evaluated when next touched. Never 0.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Looks a segment up by name.
    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.segments.iter().position(|s| s.name == name)
    }

    /// The letter for a fit value.
    pub fn letter(&self, fit: f64) -> Grade {
        self.grade.letters.iter().find(|(_, min)| fit >= *min).map_or(self.grade.lowest, |(g, _)| *g)
    }
}
