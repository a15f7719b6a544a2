//! The segment conditions that time alone can change (a windowed tally, time
//! since a tally last matched, the score below a windowed peak), collected
//! once per model, without duplicates. The engine solves when each next
//! changes from this list instead of walking every segment's condition, and
//! keeps what it solved for the ones worth keeping until their inputs change.

use super::{Cond, Segment, Tally};
use crate::cells::window_bit;

/// How many solved deadlines a lead keeps (in `LeadState::deadlines`); the
/// timed conditions beyond these are solved afresh each time.
pub const CACHED_DEADLINES: usize = 8;

/// A condition whose truth can change with no new event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimedCond {
    pub cond: Cond,
    /// Where its solved deadline is kept, if it is kept: a tally window's
    /// next change and the below-peak test cost a walk over entries, time
    /// since a match costs two additions.
    pub slot: Option<u8>,
    /// The window its deadline is solved from ([`window_bit`]; 0: none).
    pub window: u64,
    /// Its deadline also depends on the score.
    pub reads_score: bool,
}

/// The slots (bit per slot) of the kept deadlines that read the score: what
/// a change of the score makes stale.
pub(crate) fn score_slots(timed: &[TimedCond]) -> u8 {
    timed.iter().filter(|t| t.reads_score).filter_map(|t| t.slot).fold(0, |m, s| m | 1 << s)
}

/// Every timed condition of the segments, each once.
pub(crate) fn timed_conds(segments: &[Segment], tallies: &[Tally], tally_windows: &[Option<u16>]) -> Vec<TimedCond> {
    let mut found: Vec<TimedCond> = Vec::new();
    let mut slots = 0u8;
    for s in segments {
        s.when.visit(&mut |c| {
            let (window, reads_score) = match *c {
                Cond::Tally { tally, .. } if tallies[tally].window.is_some() => (tally_windows[tally], false),
                Cond::BelowPeak { tally, .. } => (tally_windows[tally], true),
                Cond::Since { .. } => (None, false),
                _ => return,
            };
            if found.iter().any(|t| t.cond == *c) {
                return;
            }
            let keep = !matches!(c, Cond::Since { .. }) && usize::from(slots) < CACHED_DEADLINES;
            let slot = keep.then(|| {
                slots += 1;
                slots - 1
            });
            let window = window.map_or(0, |w| window_bit(usize::from(w)));
            found.push(TimedCond { cond: c.clone(), slot, window, reads_score });
        });
    }
    found
}
