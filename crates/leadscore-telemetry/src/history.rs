//! The recent published records of this instance, typed, for lookups and the
//! demo's view: a ring of the last transitions, the last few score changes of
//! recently changed leads, and entries per segment. Records are kept as the
//! engine produced them and rendered as the contract's JSON only when asked.
//! Notes are folded in on a thread of the history's own, off the runtime's
//! loop.

use leadscore_codec::{encode_json, RecordContext};
use leadscore_core::output::Reason;
use leadscore_core::{Direction, EventId, Kind, LeadId, Model, Record};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

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

/// See the module documentation.
///
/// [`History::note`] only queues a committed step's records: a commit can
/// carry tens of thousands of them, and remembering them costs about a
/// microsecond each, which on the runtime's loop delayed every event that
/// arrived meanwhile. A thread of its own (started at the first note) folds
/// the queue into the history, and every reader folds what is still queued
/// first, so a read sees every record noted before it.
#[derive(Debug)]
pub struct History {
    shared: Arc<Shared>,
    folder: Mutex<Folder>,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while records move from the queue into it, so that they arrive
    /// in the order they were noted whoever folds them.
    folded: Mutex<Folded>,
}

#[derive(Debug, Default)]
struct Queue {
    batches: Vec<Vec<PublishedRecord>>,
    closed: bool,
}

#[derive(Debug, Default)]
enum Folder {
    #[default]
    NotStarted,
    Running(std::thread::JoinHandle<()>),
    /// It could not be started: notes are folded where they are made.
    Inline,
}

#[derive(Debug, Default)]
struct Folded {
    transitions: VecDeque<PublishedRecord>,
    changes: RecentChanges,
    /// Entries per segment index.
    entered: BTreeMap<u16, u64>,
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

impl Default for History {
    fn default() -> History {
        History { shared: Arc::default(), folder: Mutex::new(Folder::NotStarted) }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_all();
        if let Folder::Running(handle) = std::mem::take(&mut *lock(&self.folder)) {
            let _ = handle.join();
        }
    }
}

impl Shared {
    /// Moves everything queued into the history, in the order noted.
    fn fold(&self) -> std::sync::MutexGuard<'_, Folded> {
        let mut folded = lock(&self.folded);
        let batches = std::mem::take(&mut lock(&self.queue).batches);
        for batch in batches {
            folded.note(batch);
        }
        folded
    }

    fn run_folder(&self) {
        loop {
            {
                let mut queue = lock(&self.queue);
                while queue.batches.is_empty() && !queue.closed {
                    queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.batches.is_empty() {
                    return;
                }
            }
            drop(self.fold());
        }
    }
}

impl History {
    /// Remembers a committed step's published records (folded on the
    /// history's own thread; see [`History`]).
    pub fn note(&self, published: Vec<PublishedRecord>) {
        self.note_all(vec![published]);
    }

    /// Remembers the published records of many committed steps, in order
    /// (one hand-over to the history's thread for all of them).
    pub fn note_all(&self, mut published: Vec<Vec<PublishedRecord>>) {
        published.retain(|p| !p.is_empty());
        if published.is_empty() {
            return;
        }
        let mut folder = lock(&self.folder);
        if matches!(*folder, Folder::NotStarted) {
            let shared = Arc::clone(&self.shared);
            *folder = match std::thread::Builder::new()
                .name("leadscore-history".into())
                .spawn(move || shared.run_folder())
            {
                Ok(handle) => Folder::Running(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "the history's thread could not start; notes are folded where they are made");
                    Folder::Inline
                }
            };
        }
        let inline = matches!(*folder, Folder::Inline);
        drop(folder);
        lock(&self.shared.queue).batches.append(&mut published);
        if inline {
            drop(self.shared.fold());
        } else {
            self.shared.wake.notify_one();
        }
    }

    /// The last score changes of `lead` published by this instance, oldest first.
    pub fn score_changes_of(&self, lead: &str) -> Vec<PublishedRecord> {
        self.shared.fold().changes.by_lead.get(lead).map(|c| c.iter().cloned().collect()).unwrap_or_default()
    }

    /// The most recent transitions, oldest first.
    pub fn recent_transitions(&self, n: usize) -> Vec<PublishedRecord> {
        let folded = self.shared.fold();
        let recent = &folded.transitions;
        recent.iter().skip(recent.len().saturating_sub(n)).cloned().collect()
    }

    /// Entries per segment so far, by segment index.
    pub fn entered(&self) -> Vec<(u16, u64)> {
        self.shared.fold().entered.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

impl Folded {
    fn note(&mut self, published: Vec<PublishedRecord>) {
        // Only the last RECENT transitions are kept: the others only count.
        let transitions = published.iter().filter(|p| p.transition().is_some()).count();
        let mut skip = transitions.saturating_sub(RECENT);
        for p in published {
            match p.transition() {
                Some((segment, direction)) => {
                    if direction == Direction::Entered {
                        *self.entered.entry(segment).or_default() += 1;
                    }
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    if self.transitions.len() == RECENT {
                        self.transitions.pop_front();
                    }
                    self.transitions.push_back(p);
                }
                None => self.changes.note(p),
            }
        }
    }
}

impl RecentChanges {
    fn note(&mut self, change: PublishedRecord) {
        let kept = match self.by_lead.get_mut(&change.lead) {
            Some(kept) => kept,
            None => {
                if self.order.len() == CHANGED_LEADS {
                    if let Some(old) = self.order.pop_front() {
                        self.by_lead.remove(&old);
                    }
                }
                self.order.push_back(change.lead.clone());
                self.by_lead.entry(change.lead.clone()).or_default()
            }
        };
        if kept.len() == CHANGES_PER_LEAD {
            kept.pop_front();
        }
        kept.push_back(change);
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    pub(crate) fn change(lead: &str, version: u64) -> PublishedRecord {
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

    #[test]
    fn a_note_does_not_wait_for_the_folding() {
        let h = Arc::new(History::default());
        h.note(vec![change("L-0", 1)]);
        // With the history busy (its lock held here), a note still returns.
        let busy = lock(&h.shared.folded);
        let (done, noted) = std::sync::mpsc::channel();
        let h2 = Arc::clone(&h);
        std::thread::spawn(move || {
            h2.note(vec![change("L-1", 1)]);
            let _ = done.send(());
        });
        let returned = noted.recv_timeout(std::time::Duration::from_secs(10));
        drop(busy);
        assert!(returned.is_ok(), "a note waited for the history's lock");
        assert_eq!(h.score_changes_of("L-1").len(), 1);
    }

    #[test]
    fn the_thread_folds_what_nobody_reads() {
        let h = History::default();
        h.note(vec![change("L-1", 1), transition("L-1", 2, 0, Direction::Entered)]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !lock(&h.shared.queue).batches.is_empty() {
            assert!(std::time::Instant::now() < deadline, "nothing folded the queue");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let folded = lock(&h.shared.folded);
        assert_eq!(folded.entered.get(&0), Some(&1));
        assert!(folded.changes.by_lead.contains_key("L-1"));
    }

    #[test]
    fn every_read_sees_every_note_before_it_in_order() {
        let h = History::default();
        for v in 1..=500u64 {
            h.note(vec![change("L-1", v)]);
            if v % 7 == 0 {
                let versions: Vec<u64> = h.score_changes_of("L-1").iter().map(|p| p.record.version()).collect();
                let want: Vec<u64> = (v.saturating_sub(4).max(1)..=v).collect();
                assert_eq!(versions, want);
            }
        }
    }

    #[test]
    fn many_steps_noted_at_once_keep_their_order() {
        let h = History::default();
        h.note_all(vec![vec![change("L-1", 1), change("L-1", 2)], vec![], vec![change("L-1", 3)]]);
        let versions: Vec<u64> = h.score_changes_of("L-1").iter().map(|p| p.record.version()).collect();
        assert_eq!(versions, [1, 2, 3]);
    }
}
