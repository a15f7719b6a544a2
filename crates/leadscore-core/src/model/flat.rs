//! The segments' conditions flattened for the hot path. Every event and
//! every timer re-evaluates every segment, and most segments are one simple
//! test or a conjunction of a few: as a flat list of tests, each with what
//! it reads resolved once per model (which window or tally slot, open
//! bounds as the widest value), they are evaluated by a loop instead of a
//! recursive walk of the condition tree. What is not a conjunction of simple
//! tests (`any`, `not`) stays a tree, evaluated as before.

use super::{Cond, Measure, Range, Segment, Tally};
use crate::time::Millis;

/// Which of a lead's bit sets a [`SegmentTest::Bits`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitSet {
    ProfileTests,
    Criteria,
    StagesNow,
    StagesReached,
}

/// One simple test, with what it reads resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SegmentTest {
    /// The score in cents is in `at_least..below` (open ends: the extremes).
    Score { at_least: i64, below: i64 },
    /// The grade's bit is in the mask.
    Grade(u8),
    /// A summing window's sum is in the range.
    WindowSum { window: u16, range: Range },
    /// A maximum window has a value and its maximum is in the range.
    WindowMax { window: u16, range: Range },
    /// A tally without a window: its total (0 if none) is in the range.
    Total { tally: usize, range: Range },
    /// A peak tally without a window has a peak and it is in the range.
    Peak { tally: usize, range: Range },
    /// The tally has matched, and the time since lies in `at_least..less_than`
    /// (open ends: the extremes, which no elapsed time of bounded instants reaches).
    Since { tally: usize, at_least: Millis, less_than: Millis },
    /// The maximum window's peak is at least `by` cents above the score.
    BelowPeak { window: u16, by: i64 },
    /// Some bit of the mask is set in the lead's set.
    Bits { set: BitSet, mask: u64 },
    /// Anything else: the condition tree `trees[i]`.
    Tree(usize),
}

/// Every segment's tests: segment `i` holds when every test of
/// `tests[ends[i - 1]..ends[i]]` passes (none: it always holds).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SegmentTests {
    pub tests: Vec<SegmentTest>,
    pub ends: Vec<usize>,
    pub trees: Vec<Cond>,
}

impl SegmentTests {
    /// The tests of each segment, in order.
    pub fn of(segments: &[Segment], tallies: &[Tally], tally_windows: &[Option<u16>]) -> SegmentTests {
        let mut flat = SegmentTests::default();
        for s in segments {
            flat.push(&s.when, tallies, tally_windows);
            flat.ends.push(flat.tests.len());
        }
        flat
    }

    fn push(&mut self, cond: &Cond, tallies: &[Tally], tally_windows: &[Option<u16>]) {
        let test = match *cond {
            Cond::All(ref all) => {
                for c in all {
                    self.push(c, tallies, tally_windows);
                }
                return;
            }
            Cond::Any(_) | Cond::Not(_) => self.tree(cond),
            Cond::Score { at_least, below } => {
                SegmentTest::Score { at_least: at_least.unwrap_or(i64::MIN), below: below.unwrap_or(i64::MAX) }
            }
            Cond::Grade(mask) => SegmentTest::Grade(mask),
            Cond::Tally { tally, range } => match (tally_windows[tally], tallies[tally].measure) {
                (Some(w), Measure::PeakScore) => SegmentTest::WindowMax { window: w, range },
                (Some(w), _) => SegmentTest::WindowSum { window: w, range },
                (None, Measure::PeakScore) => SegmentTest::Peak { tally, range },
                (None, _) => SegmentTest::Total { tally, range },
            },
            Cond::Since { tally, at_least, less_than } => SegmentTest::Since {
                tally,
                at_least: at_least.unwrap_or(Millis::MIN),
                less_than: less_than.unwrap_or(Millis::MAX),
            },
            // Model::new checked that it reads a peak tally with a window.
            Cond::BelowPeak { tally, by } => match tally_windows[tally] {
                Some(window) => SegmentTest::BelowPeak { window, by },
                None => self.tree(cond),
            },
            Cond::Profile(i) => SegmentTest::Bits { set: BitSet::ProfileTests, mask: 1 << i },
            Cond::Criterion(i) => SegmentTest::Bits { set: BitSet::Criteria, mask: 1 << i },
            Cond::OpportunityIn(stage) => SegmentTest::Bits { set: BitSet::StagesNow, mask: 1 << (stage as u8) },
            Cond::OpportunityReached(stage) => {
                SegmentTest::Bits { set: BitSet::StagesReached, mask: 1 << (stage as u8) }
            }
        };
        self.tests.push(test);
    }

    fn tree(&mut self, cond: &Cond) -> SegmentTest {
        self.trees.push(cond.clone());
        SegmentTest::Tree(self.trees.len() - 1)
    }
}
