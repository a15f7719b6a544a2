//! The recent published records of this instance, typed, for lookups and the
//! demo's view: a ring of the last transitions, the last few score changes of
//! recently changed leads, and entries per segment. Records are kept as the
//! engine produced them and rendered as the contract's JSON only when asked.

use leadscore_codec::{encode_json, RecordContext};
use leadscore_core::output::Reason;
use leadscore_core::{Direction, EventId, Kind, LeadId, Model, Record};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// One published score change or transition of a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRecord {
    pub lead: LeadId,
    /// The event that caused it (absent for timers).
    pub event: Option<(EventId, Kind)>,
    pub record: Record,
    /// A score change's reasons (its `reasons` range indexes this list).
    pub reasons: Vec<Reason>,
}

impl PublishedRecord {
    /// For a transition: the segment's index in the model and its direction.
    pub fn transition(&self) -> Option<(u16, Direction)> {
        match &self.record {
            Record::Transition(t) => Some((t.segment, t.direction)),
            Record::ScoreChange(_) => None,
        }
    }

    /// The record as the JSON of the output contract.
    pub fn to_json(&self, model: &Model) -> String {
        let ctx = RecordContext {
            model,
            lead_id: self.lead.as_str(),
            event: self.event.as_ref().map(|(id, kind)| (id.as_str(), *kind)),
        };
        let mut out = Vec::with_capacity(320);
        encode_json(&mut out, &ctx, &self.record, &self.reasons);
        String::from_utf8_lossy(&out).into_owned()
    }
}

const RECENT: usize = 64;
/// Leads whose last score changes are kept for lookups, and changes per lead.
const CHANGED_LEADS: usize = 10_000;
const CHANGES_PER_LEAD: usize = 5;

/// See the module documentation. Each kind of history has its own lock, taken
/// once per committed step.
#[derive(Debug, Default)]
pub struct History {
    transitions: Mutex<VecDeque<PublishedRecord>>,
    changes: Mutex<RecentChanges>,
    /// Entries per segment index.
    entered: Mutex<BTreeMap<u16, u64>>,
}

/// The last few published score changes of up to `CHANGED_LEADS` leads. When
/// full, the lead that entered first is forgotten, even if it changed since:
/// first in, first out, not least recently used (no reordering per change; the
/// history only serves `/leads/{id}` lookups).
#[derive(Debug, Default)]
struct RecentChanges {
    by_lead: HashMap<LeadId, VecDeque<PublishedRecord>>,
    order: VecDeque<LeadId>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl History {
    /// Remembers a committed step's published records.
    pub fn note(&self, published: Vec<PublishedRecord>) {
        let (transitions, changes): (Vec<PublishedRecord>, Vec<PublishedRecord>) =
            published.into_iter().partition(|p| p.transition().is_some());
        if !changes.is_empty() {
            let mut r = lock(&self.changes);
            for change in changes {
                let kept = match r.by_lead.get_mut(&change.lead) {
                    Some(kept) => kept,
                    None => {
                        if r.order.len() == CHANGED_LEADS {
                            if let Some(old) = r.order.pop_front() {
                                r.by_lead.remove(&old);
                            }
                        }
                        r.order.push_back(change.lead.clone());
                        r.by_lead.entry(change.lead.clone()).or_default()
                    }
                };
                if kept.len() == CHANGES_PER_LEAD {
                    kept.pop_front();
                }
                kept.push_back(change);
            }
        }
        if transitions.is_empty() {
            return;
        }
        let mut recent = lock(&self.transitions);
        let mut entered = lock(&self.entered);
        for t in transitions {
            if let Some((segment, Direction::Entered)) = t.transition() {
                *entered.entry(segment).or_default() += 1;
            }
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(t);
        }
    }

    /// The last score changes of `lead` published by this instance, oldest first.
    pub fn score_changes_of(&self, lead: &str) -> Vec<PublishedRecord> {
        lock(&self.changes).by_lead.get(lead).map(|c| c.iter().cloned().collect()).unwrap_or_default()
    }

    /// The most recent transitions, oldest first.
    pub fn recent_transitions(&self, n: usize) -> Vec<PublishedRecord> {
        let recent = lock(&self.transitions);
        recent.iter().skip(recent.len().saturating_sub(n)).cloned().collect()
    }

    /// Entries per segment so far, by segment index.
    pub fn entered(&self) -> Vec<(u16, u64)> {
        lock(&self.entered).iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_core::output::{Cause, ScoreChange, Transition};
    use leadscore_core::Grade;

    fn transition(lead: &str, version: u64, segment: u16, direction: Direction) -> PublishedRecord {
        PublishedRecord {
            lead: LeadId::from(lead),
            event: None,
            record: Record::Transition(Transition {
                version,
                segment,
                direction,
                timestamp: 0,
                cause: Cause::Timer,
                score: 1.0,
                grade: Grade::D,
                retired_segment: None,
            }),
            reasons: Vec::new(),
        }
    }

    fn change(lead: &str, version: u64) -> PublishedRecord {
        PublishedRecord {
            lead: LeadId::from(lead),
            event: Some((EventId::from("e"), Kind::PageView)),
            record: Record::ScoreChange(ScoreChange {
                version,
                timestamp: 0,
                score: 1.0,
                previous_score: 0.0,
                delta: 1.0,
                grade: Grade::D,
                previous_grade: Grade::D,
                reasons: 0..0,
            }),
            reasons: Vec::new(),
        }
    }

    #[test]
    fn keeps_the_last_changes_per_lead_and_the_last_transitions() {
        let h = History::default();
        h.note((1..=7).map(|v| change("L-1", v)).collect());
        let versions: Vec<u64> = h.score_changes_of("L-1").iter().map(|p| p.record.version()).collect();
        assert_eq!(versions, [3, 4, 5, 6, 7]);
        assert!(h.score_changes_of("L-2").is_empty());
        h.note((0..70).map(|v| transition("L-2", v, (v % 3) as u16, Direction::Entered)).collect());
        h.note(vec![transition("L-2", 70, 1, Direction::Exited)]);
        let recent = h.recent_transitions(3);
        assert_eq!(recent.iter().map(|p| p.record.version()).collect::<Vec<_>>(), [68, 69, 70]);
        assert_eq!(h.recent_transitions(1000).len(), RECENT);
        assert_eq!(h.entered(), vec![(0, 24), (1, 23), (2, 23)], "exits are not entries");
    }
}
