//! The tests a model applies to values: numeric ranges, text and list
//! tests on one field, and event matchers (kinds and field tests), with the
//! bounds where a falling value changes a range test.

use crate::event::{Event, Field, KindSet, Value};
use crate::text::{email_domain, phrase_in, Needle, Phrase};
use std::fmt;

/// A numeric range; every bound that is set must hold.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Range {
    pub fn contains(&self, v: f64) -> bool {
        self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
            && self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
    }

    /// The nearest place at or below `v` where a falling value changes this
    /// test, if any: the bound it will pass first.
    pub fn bound_below(&self, v: f64) -> Option<Bound> {
        // Falling past `gte θ` / `lt θ` happens at x < θ; past `gt θ` / `lte θ` at x <= θ.
        [(self.gte, false), (self.lt, false), (self.gt, true), (self.lte, true)]
            .into_iter()
            .filter_map(|(b, at)| b.map(|theta| Bound { theta, inclusive: at }))
            .filter(|b| !b.passed(v))
            .max_by(|a, b| a.theta.total_cmp(&b.theta).then(a.inclusive.cmp(&b.inclusive)))
    }

    pub fn is_empty_spec(&self) -> bool {
        self.gt.is_none() && self.gte.is_none() && self.lt.is_none() && self.lte.is_none()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [(">", self.gt), ("≥", self.gte), ("<", self.lt), ("≤", self.lte)]
            .into_iter()
            .filter_map(|(op, b)| b.map(|b| format!("{op} {b}")))
            .collect();
        f.write_str(&parts.join(" and "))
    }
}

/// A place where a falling value changes a range test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub theta: f64,
    /// Passed at `x <= theta` (else at `x < theta`).
    pub inclusive: bool,
}

impl Bound {
    #[inline]
    pub fn passed(&self, x: f64) -> bool {
        if self.inclusive {
            x <= self.theta
        } else {
            x < self.theta
        }
    }
}

/// What a [`FieldTest`] checks about a value. Text tests on a list field match
/// when any element matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// The whole value is one of these (surrounding spaces ignored).
    OneOf(Vec<Needle>),
    /// The value contains one of these.
    Contains(Vec<Needle>),
    /// The value starts with one of these.
    Prefix(Vec<Needle>),
    /// The value contains one of these phrases as whole words.
    Words(Vec<Phrase>),
    /// The value is an e-mail address whose domain is one of these.
    DomainIn(Vec<Needle>),
    /// A number within the range.
    Range(Range),
    /// A boolean equal to this.
    Is(bool),
    /// The field is present (true) or absent (false).
    Present(bool),
}

/// One test on one field of an event or a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTest {
    pub field: Field,
    pub test: Test,
}

impl FieldTest {
    pub fn matches(&self, value: Option<Value<'_>>) -> bool {
        let Some(value) = value else {
            return self.test == Test::Present(false);
        };
        match (&self.test, value) {
            (Test::Present(p), _) => *p,
            (Test::Range(r), v) => v.as_number().is_some_and(|n| r.contains(n)),
            (Test::Is(b), Value::Boolean(v)) => *b == v,
            (Test::Is(_), _) => false,
            (test, Value::Text(s)) => text_test(test, s),
            (test, Value::TextList(list)) => list.iter().any(|s| text_test(test, s)),
            _ => false,
        }
    }
}

fn text_test(test: &Test, s: &str) -> bool {
    match test {
        Test::OneOf(n) => n.iter().any(|n| n.equals(s)),
        Test::Contains(n) => n.iter().any(|n| n.found_in(s)),
        Test::Prefix(n) => n.iter().any(|n| n.prefix_of(s)),
        Test::Words(p) => phrase_in(p, s),
        Test::DomainIn(n) => email_domain(s).is_some_and(|d| n.iter().any(|n| n.equals(d))),
        Test::Range(_) | Test::Is(_) | Test::Present(_) => false,
    }
}

/// Which events something applies to: any of `kinds`, with every test holding.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMatcher {
    pub kinds: KindSet,
    pub when: Vec<FieldTest>,
}

impl EventMatcher {
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        self.kinds.contains(event.kind) && self.when.iter().all(|t| t.matches(event.properties.get(t.field)))
    }
}
