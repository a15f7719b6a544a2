//! The counters of one lead in one allocation: stateful rules' match counts,
//! tallies, rolling windows (their headers and entries) and the ring of
//! recent event ids.
//!
//! An event reads most of these, so with a buffer each the scoring core
//! waited on one cache miss per buffer, per event; in one buffer the
//! hardware prefetcher streams them in together. Every part is a run of
//! 16-byte [`Entry`] cells, in the order an event reads them (the ids first:
//! every event looks its id up):
//!
//! ```text
//! [recent ids][rules][tallies][window headers][window entries]
//! ```
//!
//! A window entry is an [`Entry`] as is; the other cells keep their values'
//! bit patterns in the cell's two 8-byte fields (a rule: `at` = matches; a
//! tally: `at` = last match, `value` = total; a window header: `at` = length
//! and flags, `value` = total; two ids per cell). Moving an `f64` never
//! changes its bits (only arithmetic may), so any `u64` survives a round
//! trip through `value`; equality compares bits for the same reason.
//!
//! The window algorithms on this buffer are in [`crate::window`].

use crate::time::Millis;
use crate::window::{Entry, WindowMeta};

/// A tally's total before anything was counted (a quiet NaN with a payload
/// that no arithmetic produces: totals are always finite).
const NO_TOTAL: u64 = 0x7ff8_0000_dead_0001;
/// A tally that never matched.
const NO_LAST: Millis = Millis::MIN;
const KEEPS_MAX: i64 = 1 << 32;
const HAS_NEGATIVE: i64 = 1 << 33;

/// Per-tally state (a windowed tally's entries are in its window).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TallyState {
    /// For tallies without a window: the running sum (or the peak).
    pub total: Option<f64>,
    /// When the tally last matched an event.
    pub last: Option<Millis>,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Cells {
    cells: Vec<Entry>,
    rules: u32,
    tallies: u32,
    windows: u32,
    entries: u32,
    ids: u32,
    /// Where the next id goes once the ring is full.
    next: u32,
    /// Bit `w` (63: any window from 63 on): window `w` changed since the
    /// last [`Cells::take_changed`]. Derived, not stored, not compared: it
    /// tells the engine which cached deadlines to solve again.
    changed: u64,
}

impl PartialEq for Cells {
    fn eq(&self, other: &Cells) -> bool {
        let bits = |e: &Entry| (e.at, e.value.to_bits());
        (self.rules, self.tallies, self.windows, self.entries, self.ids, self.next)
            == (other.rules, other.tallies, other.windows, other.entries, other.ids, other.next)
            && self.cells.iter().map(bits).eq(other.cells.iter().map(bits))
    }
}

fn tally_cell(t: TallyState) -> Entry {
    Entry { at: t.last.unwrap_or(NO_LAST), value: f64::from_bits(t.total.map_or(NO_TOTAL, f64::to_bits)) }
}

fn meta_cell(m: WindowMeta) -> Entry {
    let flags = if m.keeps_max { KEEPS_MAX } else { 0 } | if m.has_negative { HAS_NEGATIVE } else { 0 };
    Entry { at: i64::from(m.len) | flags, value: m.total }
}

/// The bit that stands for window `w` in [`Cells::take_changed`]'s answer.
#[inline]
pub(crate) fn window_bit(w: usize) -> u64 {
    1 << w.min(63)
}

impl Cells {
    /// The bytes its buffer holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Entry>()
    }

    /// Hints the cache to fetch what an event reads of the buffer: the ids,
    /// rules, tallies and window headers, and the last entries (where an
    /// event adds to a window), not the middle of long windows.
    #[inline]
    pub fn prefetch(&self) {
        let cell = std::mem::size_of::<Entry>();
        let head = self.entries_at().min(self.cells.len());
        crate::prefetch::bytes(self.cells.as_ptr(), head * cell, 12);
        let tail = &self.cells[self.cells.len().saturating_sub(4).max(head)..];
        crate::prefetch::bytes(tail.as_ptr(), std::mem::size_of_val(tail), 2);
    }

    /// Zeroed counters: `rules` stateful rules, `tallies`, `windows` empty windows.
    ///
    /// With room for what a lead's first event adds (its id, and an entry
    /// per window at most): a buffer of the exact size grew on that event,
    /// a reallocation of every new lead, to twice its size.
    pub fn new(rules: usize, tallies: usize, windows: usize) -> Cells {
        let mut c = Cells::with_capacity(rules + tallies + 2 * windows + 1);
        (0..rules).for_each(|_| c.push_rule(0));
        (0..tallies).for_each(|_| c.push_tally(TallyState::default()));
        (0..windows).for_each(|_| c.push_window(WindowMeta::default()));
        c
    }

    /// An empty buffer to be filled with the `push_*` methods, in layout order.
    pub fn with_capacity(cells: usize) -> Cells {
        Cells { cells: Vec::with_capacity(cells), ..Cells::default() }
    }

    pub fn push_rule(&mut self, matches: u32) {
        assert!(self.tallies + self.windows + self.entries == 0, "rules come first");
        self.cells.push(Entry { at: i64::from(matches), value: 0.0 });
        self.rules += 1;
    }

    pub fn push_tally(&mut self, t: TallyState) {
        assert!(self.windows + self.entries == 0, "tallies come before windows");
        self.cells.push(tally_cell(t));
        self.tallies += 1;
    }

    /// A window header; its entries follow with [`Cells::push_entry`].
    pub fn push_window(&mut self, m: WindowMeta) {
        assert!(self.entries == 0, "window headers come before their entries");
        self.cells.push(meta_cell(m));
        self.windows += 1;
    }

    pub fn push_entry(&mut self, e: Entry) {
        self.cells.push(e);
        self.entries += 1;
    }

    /// Appends an id to the ring (which must not be full).
    pub fn push_id(&mut self, id: u64) {
        let at = self.ids as usize / 2;
        if self.ids.is_multiple_of(2) {
            self.cells.insert(at, Entry { at: id as i64, value: 0.0 });
        } else {
            self.cells[at].value = f64::from_bits(id);
        }
        self.ids += 1;
    }

    /// Replaces the ring of ids with `ids` (in ring order) and where the next
    /// goes once it is full.
    pub fn set_ids(&mut self, ids: &[u64], next: u32) {
        let cells = ids.chunks(2).map(|p| Entry { at: p[0] as i64, value: f64::from_bits(p.get(1).map_or(0, |&b| b)) });
        self.cells.splice(..self.id_cells(), cells);
        self.ids = ids.len() as u32;
        self.next = next;
    }

    /// Whether the window headers' lengths add up to the entries (a decoded
    /// buffer is checked before use).
    pub fn consistent(&self) -> bool {
        self.window_metas().map(|m| u64::from(m.len)).sum::<u64>() == u64::from(self.entries)
    }

    pub fn rule_count(&self) -> usize {
        self.rules as usize
    }

    pub fn tally_count(&self) -> usize {
        self.tallies as usize
    }

    pub fn window_count(&self) -> usize {
        self.windows as usize
    }

    #[inline]
    fn id_cells(&self) -> usize {
        self.ids.div_ceil(2) as usize
    }

    #[inline]
    fn rules_at(&self) -> usize {
        self.id_cells()
    }

    #[inline]
    fn tallies_at(&self) -> usize {
        self.id_cells() + self.rules as usize
    }

    #[inline]
    pub(crate) fn metas_at(&self) -> usize {
        self.id_cells() + (self.rules + self.tallies) as usize
    }

    #[inline]
    pub(crate) fn entries_at(&self) -> usize {
        self.id_cells() + (self.rules + self.tallies + self.windows) as usize
    }

    /// How often stateful rule `slot` matched.
    #[inline]
    pub fn rule_matches(&self, slot: usize) -> u32 {
        debug_assert!(slot < self.rules as usize);
        self.cells[self.rules_at() + slot].at as u32
    }

    #[inline]
    pub fn set_rule_matches(&mut self, slot: usize, matches: u32) {
        debug_assert!(slot < self.rules as usize);
        let at = self.rules_at() + slot;
        self.cells[at].at = i64::from(matches);
    }

    pub fn rules(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.cells[self.rules_at()..self.tallies_at()].iter().map(|c| c.at as u32)
    }

    #[inline]
    pub fn tally(&self, i: usize) -> TallyState {
        debug_assert!(i < self.tallies as usize);
        let c = self.cells[self.tallies_at() + i];
        let total = c.value.to_bits();
        TallyState { total: (total != NO_TOTAL).then_some(c.value), last: (c.at != NO_LAST).then_some(c.at) }
    }

    #[inline]
    pub fn set_tally(&mut self, i: usize, t: TallyState) {
        debug_assert!(i < self.tallies as usize);
        let at = self.tallies_at() + i;
        self.cells[at] = tally_cell(t);
    }

    pub fn tallies(&self) -> impl ExactSizeIterator<Item = TallyState> + '_ {
        (0..self.tallies as usize).map(|i| self.tally(i))
    }

    /// The header of window `w`.
    #[inline]
    pub fn meta(&self, w: usize) -> WindowMeta {
        debug_assert!(w < self.windows as usize);
        let c = self.cells[self.metas_at() + w];
        WindowMeta {
            total: c.value,
            len: c.at as u32,
            keeps_max: c.at & KEEPS_MAX != 0,
            has_negative: c.at & HAS_NEGATIVE != 0,
        }
    }

    /// Every change to a window goes through here (its header changes with
    /// any entry), so this is where a window is noted as changed.
    #[inline]
    pub(crate) fn set_meta(&mut self, w: usize, m: WindowMeta) {
        let at = self.metas_at() + w;
        self.cells[at] = meta_cell(m);
        self.changed |= window_bit(w);
    }

    /// The windows changed since the last call (bit [`window_bit`]), and
    /// forgets them.
    #[inline]
    pub(crate) fn take_changed(&mut self) -> u64 {
        std::mem::take(&mut self.changed)
    }

    pub fn window_metas(&self) -> impl ExactSizeIterator<Item = WindowMeta> + '_ {
        (0..self.windows as usize).map(|w| self.meta(w))
    }

    /// Every window's entries, window 0's first, each run oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.cells[self.entries_at()..]
    }

    /// Where window `w`'s entries start in the buffer.
    #[inline]
    pub(crate) fn start(&self, w: usize) -> usize {
        let metas = self.metas_at();
        self.entries_at() + self.cells[metas..metas + w].iter().map(|c| c.at as u32 as usize).sum::<usize>()
    }

    /// The window entries `range` of the buffer (from [`Cells::start`]).
    #[inline]
    pub(crate) fn cells(&self, range: std::ops::Range<usize>) -> &[Entry] {
        &self.cells[range]
    }

    #[inline]
    pub(crate) fn cells_mut(&mut self, range: std::ops::Range<usize>) -> &mut [Entry] {
        &mut self.cells[range]
    }

    /// Inserts a window entry at buffer position `at`.
    pub(crate) fn insert_entry(&mut self, at: usize, e: Entry) {
        self.cells.insert(at, e);
        self.entries += 1;
    }

    /// Replaces the window entries `range` with `with`.
    pub(crate) fn splice_entries(&mut self, range: std::ops::Range<usize>, with: Option<Entry>) {
        let removed = range.len() as u32;
        self.cells.splice(range, with);
        self.entries = self.entries - removed + u32::from(with.is_some());
    }

    /// The recent event-id hashes, in ring order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        let cells = &self.cells[..self.id_cells()];
        (0..self.ids as usize).map(move |i| {
            let c = &cells[i / 2];
            if i.is_multiple_of(2) {
                c.at as u64
            } else {
                c.value.to_bits()
            }
        })
    }

    /// Where the next id goes once the ring is full.
    pub fn ids_next(&self) -> u32 {
        self.next
    }

    /// Whether `hash` is among the recent event ids.
    #[inline]
    pub fn has_id(&self, hash: u64) -> bool {
        let cells = &self.cells[..self.id_cells()];
        let full = self.ids as usize / 2;
        cells[..full].iter().any(|c| c.at as u64 == hash || c.value.to_bits() == hash)
            || (self.ids % 2 == 1 && cells[full].at as u64 == hash)
    }

    /// Remembers `hash`, forgetting the oldest beyond `capacity` ids.
    pub fn note_id(&mut self, hash: u64, capacity: usize) {
        let capacity = capacity.max(1);
        if (self.ids as usize) < capacity {
            self.push_id(hash);
            return;
        }
        if self.ids as usize > capacity {
            // The model now remembers fewer: keep the first `capacity`.
            let kept: Vec<u64> = self.ids().take(capacity).collect();
            self.set_ids(&kept, self.next);
        }
        let i = self.next as usize % capacity;
        let at = i / 2;
        if i.is_multiple_of(2) {
            self.cells[at].at = hash as i64;
        } else {
            self.cells[at].value = f64::from_bits(hash);
        }
        self.next = ((i + 1) % capacity) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::id_hash;
    use proptest::prelude::*;

    #[test]
    fn forgets_the_oldest_id_beyond_capacity() {
        let mut c = Cells::new(1, 1, 1);
        for i in 0..5 {
            c.note_id(id_hash(&format!("e-{i}")), 3);
        }
        assert!(!c.has_id(id_hash("e-0")));
        assert!(!c.has_id(id_hash("e-1")));
        assert!(c.has_id(id_hash("e-2")) && c.has_id(id_hash("e-3")) && c.has_id(id_hash("e-4")));
        assert_eq!(c.ids().count(), 3);
        assert_eq!(c.rule_matches(0), 0, "the other parts are untouched");
        assert_eq!(c.tally(0), TallyState::default());
    }

    #[test]
    fn a_smaller_capacity_keeps_the_first_ids() {
        let mut c = Cells::new(0, 0, 0);
        for id in 1..=5 {
            c.note_id(id, 5);
        }
        c.note_id(6, 2);
        assert_eq!(c.ids().collect::<Vec<_>>(), vec![6, 2]);
        c.note_id(7, 2);
        assert_eq!(c.ids().collect::<Vec<_>>(), vec![6, 7]);
    }

    proptest! {
        /// A hint reads only the buffer's shape: on any shape (empty, ids
        /// only, windows without entries, long windows) it neither panics
        /// nor changes a cell.
        #[test]
        fn a_hint_fits_any_shape(
            rules in 0usize..4, tallies in 0usize..4, windows in 0usize..4,
            entries in 0usize..40, ids in 0u64..40,
        ) {
            let mut c = Cells::new(rules, tallies, windows);
            (0..entries).for_each(|i| c.push_entry(Entry { at: i as i64, value: 1.0 }));
            (0..ids).for_each(|i| c.note_id(i, 32));
            let before = c.clone();
            c.prefetch();
            Cells::default().prefetch();
            prop_assert_eq!(c, before);
        }

        #[test]
        fn every_part_reads_back_what_was_written(
            rules in proptest::collection::vec(any::<u32>(), 0..4),
            tallies in proptest::collection::vec((proptest::option::of(-1e9f64..1e9), proptest::option::of(any::<i64>())), 0..4),
            ids in proptest::collection::vec(any::<u64>(), 0..9),
            capacity in 1usize..6,
        ) {
            let mut c = Cells::new(rules.len(), tallies.len(), 2);
            for (i, m) in rules.iter().enumerate() {
                c.set_rule_matches(i, *m);
            }
            let tallies: Vec<TallyState> = tallies
                .into_iter()
                .map(|(total, last)| TallyState { total, last: last.filter(|&l| l != NO_LAST) })
                .collect();
            for (i, t) in tallies.iter().enumerate() {
                c.set_tally(i, *t);
            }
            // The reference ring: a plain list.
            let mut ring: Vec<u64> = Vec::new();
            let mut next = 0;
            for id in &ids {
                c.note_id(*id, capacity);
                if ring.len() < capacity {
                    ring.push(*id);
                } else {
                    ring[next] = *id;
                    next = (next + 1) % capacity;
                }
            }
            prop_assert_eq!(c.rules().collect::<Vec<_>>(), rules);
            prop_assert_eq!(c.tallies().collect::<Vec<_>>(), tallies);
            prop_assert_eq!(c.ids().collect::<Vec<_>>(), ring.clone());
            for id in &ids {
                prop_assert_eq!(c.has_id(*id), ring.contains(id));
            }
            prop_assert!(!c.has_id(u64::MAX - 7) || ring.contains(&(u64::MAX - 7)));
            prop_assert!(c.consistent());
        }
    }
}
