//! The state of one lead: score (lazily decayed), profile and grade, its
//! counters ([`Cells`]: rules, tallies, windows, recent event ids),
//! opportunities, segment memberships, and the next instant at which time
//! alone could change a segment.
//!
//! The fields are public so that a store adapter can encode them; they are only
//! ever changed by the engine.

use crate::bounds::MAX_OPPORTUNITIES;
use crate::cells::Cells;
use crate::decay;
use crate::event::{Field, OwnedValue, Stage, Value};
use crate::model::{Grade, Model, CACHED_DEADLINES};
use crate::text::same_email;
use crate::time::Millis;

/// A segment the lead is in, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub segment: u16,
    pub since: Millis,
}

/// One opportunity and its current stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Opportunity {
    pub id: Box<str>,
    pub stage: Option<Stage>,
}

/// Everything leadscore knows about one lead.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadState {
    /// The version of the last output record about this lead.
    pub version: u64,
    /// The latest instant the state has been evaluated at; never moves back.
    pub clock: Millis,
    /// The score as of `score_at`, before decay.
    pub score: f64,
    pub score_at: Millis,
    pub profile: Vec<(Field, OwnedValue)>,
    pub fit: f64,
    pub grade: Grade,
    /// Bit `i`: grade criterion `i` matches.
    pub criteria: u64,
    /// Bit `i`: the model's profile test `i` holds.
    pub profile_tests: u64,
    /// Stateful rules' match counts, tallies, the rolling windows of tallies
    /// and capped rules, and the recent event ids, in one buffer.
    pub cells: Cells,
    pub opportunities: Vec<Opportunity>,
    /// Bit `1 << stage`: some opportunity has been in that stage.
    pub stages_reached: u8,
    /// Bit `1 << stage`: some opportunity is in that stage now (derived from
    /// `opportunities` by [`LeadState::restage`], so that a segment test does
    /// not read the list; not stored).
    pub stages_now: u8,
    /// Ordered by segment index.
    pub segments: Vec<Membership>,
    /// Bit `i`: in segment `i` (the same as `segments`, kept for a cheap compare).
    pub member: u128,
    /// When time alone could next change a segment.
    pub next_due: Option<Millis>,
    /// The deadlines solved for the instants above, kept until what they were
    /// solved from changes (derived, not stored; the default: none kept).
    pub deadlines: Deadlines,
    /// No rolling-window entry leaves its window before this instant
    /// (derived, a lower bound; `Millis::MIN`: not known). Until then an
    /// event need not look at any window's oldest entry to expire it.
    pub expiry_floor: Millis,
}

/// Solved deadlines, kept so that an event solves again only those whose
/// inputs it changed: when decay next takes the score across a static
/// threshold of the model (kept while the score's value and anchor stay),
/// and when each kept timed condition of the model next changes (kept while
/// the window it reads, and the score if it reads it, stay). A deadline that
/// has passed is solved again. Not stored: a decoded lead solves them all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Deadlines {
    /// The score (`value`'s bits, `anchor`) the score's deadlines were solved
    /// for; `None`: none was.
    pub(crate) score: Option<(u64, Millis)>,
    pub(crate) threshold: Option<Millis>,
    /// By the model's slot; [`NEVER`]: the condition never changes.
    pub(crate) conds: [Millis; CACHED_DEADLINES],
    /// Bit `i`: `conds[i]` is current.
    pub(crate) kept: u8,
}

/// A kept deadline of a condition that never changes by time alone.
pub(crate) const NEVER: Millis = Millis::MAX;

impl LeadState {
    /// About what the state takes in memory, itself and what it owns on the
    /// heap (allocator overhead aside): what a cache of decoded states counts
    /// against its budget.
    pub fn memory_bytes(&self) -> usize {
        let text = |v: &OwnedValue| match v {
            OwnedValue::Text(t) => t.len(),
            OwnedValue::TextList(l) => l.iter().map(|t| t.len() + std::mem::size_of::<Box<str>>()).sum(),
            OwnedValue::Integer(_) | OwnedValue::Number(_) => 0,
        };
        std::mem::size_of::<LeadState>()
            + self.profile.capacity() * std::mem::size_of::<(Field, OwnedValue)>()
            + self.profile.iter().map(|(_, v)| text(v)).sum::<usize>()
            + self.cells.heap_bytes()
            + self.opportunities.capacity() * std::mem::size_of::<Opportunity>()
            + self.opportunities.iter().map(|o| o.id.len()).sum::<usize>()
            + self.segments.capacity() * std::mem::size_of::<Membership>()
    }

    /// Hints the cache to fetch what applying an event reads beyond the
    /// state itself: its counters and memberships. For a caller that knows
    /// the next events, after [`prefetch_slot`] had time to bring the state
    /// (see the `prefetch` module).
    #[inline]
    pub fn prefetch(&self) {
        self.cells.prefetch();
        if !self.segments.is_empty() {
            // Read (and rewritten) when a membership changes.
            crate::prefetch::bytes(self.segments.as_ptr(), 1, 1);
        }
    }

    /// A lead that has just come into existence at `now`: score 0, the grade of an
    /// empty profile, in no segment yet.
    pub fn new(model: &Model, now: Millis) -> LeadState {
        let mut s = LeadState {
            version: 0,
            clock: now,
            score: 0.0,
            score_at: now,
            profile: Vec::new(),
            fit: 0.0,
            grade: Grade::F,
            criteria: 0,
            profile_tests: 0,
            cells: Cells::new(model.stateful_rules(), model.tallies.len(), model.window_count),
            opportunities: Vec::new(),
            stages_reached: 0,
            stages_now: 0,
            segments: Vec::new(),
            member: 0,
            next_due: None,
            deadlines: Deadlines::default(),
            expiry_floor: Millis::MIN,
        };
        s.regrade(model);
        s
    }

    /// The score at `now` (not before the state's clock), unrounded.
    pub fn score_at_time(&self, model: &Model, now: Millis) -> f64 {
        decay::decayed(self.score, self.score_at, now.max(self.clock), model.score.half_life)
    }

    pub fn profile_value(&self, field: Field) -> Option<Value<'_>> {
        self.profile.iter().find(|(f, _)| *f == field).map(|(_, v)| v.borrow())
    }

    pub fn in_segment(&self, segment: usize) -> bool {
        self.member & (1 << segment) != 0
    }

    /// Sets (or with `None` deletes) a profile field. Returns `(changed,
    /// changed_ignoring_case)`: the second ignores case and surrounding spaces of
    /// text, which is what "the email address changed" means.
    pub fn set_profile(&mut self, field: Field, value: Option<OwnedValue>) -> (bool, bool) {
        let at = self.profile.iter().position(|(f, _)| *f == field);
        let old = at.map(|i| &self.profile[i].1);
        let changed = old != value.as_ref();
        let loosely = match (old, value.as_ref()) {
            (Some(OwnedValue::Text(a)), Some(OwnedValue::Text(b))) => !same_email(a, b),
            _ => changed,
        };
        match (at, value) {
            (Some(i), Some(v)) => self.profile[i].1 = v,
            (Some(i), None) => {
                self.profile.remove(i);
            }
            (None, Some(v)) => self.profile.push((field, v)),
            (None, None) => {}
        }
        (changed, loosely)
    }

    /// Recomputes criteria, profile tests, fit and grade from the profile.
    pub fn regrade(&mut self, model: &Model) {
        let mut raw = 0u64;
        for (i, c) in model.grade.criteria.iter().enumerate() {
            if c.when.iter().all(|t| t.matches(self.profile_value(t.field))) {
                raw |= 1 << i;
            }
        }
        let mut fit = model.grade.start;
        let mut matched = 0u64;
        for (i, c) in model.grade.criteria.iter().enumerate() {
            if raw & (1 << i) != 0 && c.unless.iter().all(|&u| raw & (1 << u) == 0) {
                matched |= 1 << i;
                fit += c.fit;
            }
        }
        let mut tests = 0u64;
        for (i, t) in model.profile_tests.iter().enumerate() {
            if t.matches(self.profile_value(t.field)) {
                tests |= 1 << i;
            }
        }
        self.criteria = matched;
        self.profile_tests = tests;
        self.fit = fit;
        self.grade = model.letter(fit);
    }

    /// Applies an opportunity update.
    pub fn update_opportunity(&mut self, id: &str, stage: Option<Stage>) {
        if let Some(stage) = stage {
            self.stages_reached |= 1 << (stage as u8);
        }
        match self.opportunities.iter_mut().find(|o| &*o.id == id) {
            Some(o) => {
                if stage.is_some() {
                    o.stage = stage;
                }
            }
            None => {
                if self.opportunities.len() >= MAX_OPPORTUNITIES {
                    let closed = |o: &Opportunity| matches!(o.stage, Some(Stage::ClosedWon | Stage::ClosedLost));
                    let oldest = self.opportunities.iter().position(closed).unwrap_or(0);
                    self.opportunities.remove(oldest);
                }
                self.opportunities.push(Opportunity { id: id.into(), stage })
            }
        }
        self.restage();
    }

    /// Recomputes `stages_now` from the opportunities.
    pub fn restage(&mut self) {
        self.stages_now = self.opportunities.iter().filter_map(|o| o.stage).fold(0, |m, s| m | 1 << (s as u8));
    }
}

/// Hints the cache to fetch a slot's state itself, not what it points to:
/// the first of two hints, a few events ahead of [`LeadState::prefetch`]
/// (which reads the pointers this one brings in).
#[inline]
pub fn prefetch_slot(slot: &Option<LeadState>) {
    crate::prefetch::bytes(slot as *const Option<LeadState>, std::mem::size_of::<Option<LeadState>>(), 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead() -> LeadState {
        let model = Model::new(crate::model::ModelSpec {
            version: "t".into(),
            description: String::new(),
            score: crate::model::ScoreSpec { min: 0.0, max: 100.0, half_life: 0 },
            rules: Vec::new(),
            grade: crate::model::GradeSpec { start: 0.0, letters: Vec::new(), lowest: Grade::F, criteria: Vec::new() },
            tallies: Vec::new(),
            segments: Vec::new(),
            profile_tests: Vec::new(),
            remember_event_ids: 1,
            bucket: 1,
        })
        .expect("model");
        LeadState::new(&model, 0)
    }

    #[test]
    fn past_the_bound_the_oldest_closed_opportunity_is_forgotten_first() {
        let mut s = lead();
        s.update_opportunity("open-0", Some(Stage::Open));
        s.update_opportunity("won-1", Some(Stage::ClosedWon));
        for i in 2..MAX_OPPORTUNITIES {
            s.update_opportunity(&format!("open-{i}"), Some(Stage::Open));
        }
        assert_eq!(s.opportunities.len(), MAX_OPPORTUNITIES);
        s.update_opportunity("new", Some(Stage::Open));
        assert_eq!(s.opportunities.len(), MAX_OPPORTUNITIES);
        assert!(s.opportunities.iter().all(|o| &*o.id != "won-1"), "the closed one went first");
        assert!(s.stages_reached & (1 << Stage::ClosedWon as u8) != 0, "what it reached stays known");
        assert_eq!(s.stages_now, 1 << Stage::Open as u8, "no opportunity is won now");
        s.update_opportunity("newer", Some(Stage::Open));
        assert_eq!(&*s.opportunities[0].id, "open-2", "then the oldest");
    }

    #[test]
    fn memory_counts_what_the_state_owns() {
        let mut s = lead();
        let empty = s.memory_bytes();
        assert!(empty >= std::mem::size_of::<LeadState>());
        s.update_opportunity("an-opportunity-with-a-long-id", Some(Stage::Open));
        let with_opportunity = s.memory_bytes();
        assert!(with_opportunity >= empty + "an-opportunity-with-a-long-id".len(), "{empty} -> {with_opportunity}");
        s.set_profile(Field::Company, Some(OwnedValue::Text("x".repeat(300).into())));
        assert!(s.memory_bytes() >= with_opportunity + 300);
    }
}
