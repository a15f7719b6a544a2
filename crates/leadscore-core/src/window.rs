//! Rolling windows of `(instant, value)` entries, for rule caps and tallies.
//!
//! All the windows of one lead live in its [`Cells`], one run of entries per
//! window after the windows' headers, because a lead's event touches every
//! window and separate allocations would cost a cache miss each.
//!
//! "In the last N" at `t` means instants in `(t - N, t]`: an entry leaves exactly
//! N after its instant. Entries falling in the same bucket (one hour by default,
//! aligned to the epoch) are merged into one stamped with the latest instant, so a
//! window holds at most N / bucket entries; a merged event may leave up to one
//! bucket late (the model file's `bucket`, documented there). Time only moves
//! forward per lead, so entries are appended at the back and expire from the
//! front.
//!
//! Summing windows keep their values in millionths, as whole numbers stored in
//! `f64`: sums of whole numbers are exact in any order, so the running total, the
//! total after some entries leave, and a sum recomputed from scratch always agree,
//! and a threshold test can never flip on rounding noise.

use crate::cells::Cells;
use crate::model::Range;
use crate::time::Millis;

/// Values are kept in units of one millionth.
const SCALE: f64 = 1e6;

/// One bucket of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub at: Millis,
    /// Millionths for a summing window; the plain value for a maximum window.
    pub value: f64,
}

/// The bookkeeping of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowMeta {
    /// For a summing window: the sum of the entries, in millionths.
    pub total: f64,
    pub len: u32,
    /// A maximum window (see [`Cells::add_max`]), with no total.
    pub keeps_max: bool,
    /// Some entry was negative, so the sum may rise as entries leave.
    pub has_negative: bool,
}

/// `a` and `b` fall in the same bucket (`a.div_euclid(bucket) ==
/// b.div_euclid(bucket)`) with at most one division: instants a bucket or
/// more apart never do, and otherwise `b` is in `a`'s bucket when `a`'s
/// offset into it plus the gap stays inside it. Instants are bounded (|t| <
/// 2^48), so nothing overflows.
#[inline]
fn same_bucket(a: Millis, b: Millis, bucket: Millis) -> bool {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let gap = hi - lo;
    gap < bucket && lo.rem_euclid(bucket) + gap < bucket
}

/// A value in millionths, as a whole number.
#[inline]
pub fn to_units(v: f64) -> f64 {
    (v * SCALE).round()
}

impl Cells {
    /// A read-only view of window `w`.
    #[inline]
    pub fn window(&self, w: usize) -> Window<'_> {
        let meta = self.meta(w);
        let start = self.start(w);
        Window { meta, entries: self.cells(start..start + meta.len as usize) }
    }

    /// The sum of summing window `w`: [`Window::sum`] from the header alone,
    /// without locating the window's entries (segment tests read it per event).
    #[inline]
    pub fn window_sum(&self, w: usize) -> f64 {
        self.meta(w).total / SCALE
    }

    /// When the oldest entry of any window leaves it, window `w` being
    /// `widths[w]` wide (`Millis::MAX`: every window is empty). One pass over
    /// the headers: locating each window on its own re-adds the lengths of
    /// the windows before it.
    pub fn next_expiry(&self, widths: &[Millis]) -> Millis {
        debug_assert_eq!(widths.len(), self.window_count());
        let mut start = self.entries_at();
        let mut next = Millis::MAX;
        for (w, width) in widths.iter().enumerate() {
            let len = self.meta(w).len as usize;
            if len > 0 {
                next = next.min(self.cells(start..start + 1)[0].at.saturating_add(*width));
            }
            start += len;
        }
        next
    }

    /// Drops the entries that have left window `w` (of `width`) at `now`.
    #[inline]
    pub fn expire(&mut self, w: usize, now: Millis, width: Millis) {
        if self.meta(w).len > 0 {
            let start = self.start(w);
            self.expire_from(w, start, now, width);
        }
    }

    /// [`Cells::expire`] for every window `w` whose `widths[w]` is given, in
    /// one pass over the headers (locating each window on its own re-adds
    /// the lengths of the windows before it).
    pub fn expire_all(&mut self, widths: &[Option<Millis>], now: Millis) {
        debug_assert_eq!(widths.len(), self.window_count());
        let mut start = self.entries_at();
        for (w, width) in widths.iter().enumerate() {
            let len = match width {
                Some(width) if self.meta(w).len > 0 => self.expire_from(w, start, now, *width),
                _ => self.meta(w).len as usize,
            };
            start += len;
        }
    }

    /// Expires window `w`, whose entries start at `start`; its length after.
    fn expire_from(&mut self, w: usize, start: usize, now: Millis, width: Millis) -> usize {
        let mut meta = self.meta(w);
        let run = self.cells(start..start + meta.len as usize);
        let gone = run.iter().take_while(|e| e.at.saturating_add(width) <= now).count();
        if gone == 0 {
            return meta.len as usize;
        }
        if !meta.keeps_max {
            meta.total -= run[..gone].iter().map(|e| e.value).sum::<f64>();
        }
        meta.len -= gone as u32;
        if meta.len == 0 {
            meta.total = 0.0;
            meta.has_negative = false;
        }
        self.set_meta(w, meta);
        self.splice_entries(start..start + gone, None);
        meta.len as usize
    }

    /// Empties window `w`.
    pub fn clear(&mut self, w: usize) {
        let start = self.start(w);
        let len = self.meta(w).len as usize;
        self.splice_entries(start..start + len, None);
        self.set_meta(w, WindowMeta::default());
    }

    /// Adds `value` at `at` to summing window `w`.
    pub fn add(&mut self, w: usize, at: Millis, value: f64, bucket: Millis) {
        let mut meta = self.meta(w);
        let end = self.start(w) + meta.len as usize;
        let units = to_units(value);
        debug_assert!(!meta.keeps_max, "a window either sums or keeps the maximum");
        meta.has_negative |= units < 0.0;
        meta.total += units;
        if meta.len > 0 && same_bucket(self.cells(end - 1..end)[0].at, at, bucket) {
            let last = &mut self.cells_mut(end - 1..end)[0];
            last.at = at;
            last.value += units;
        } else {
            meta.len += 1;
            self.insert_entry(end, Entry { at, value: units });
        }
        self.set_meta(w, meta);
    }

    /// Records `value` at `at` in window `w`, which keeps the maximum. Entries
    /// that can never be the maximum again (lower and leaving earlier) are
    /// dropped, so values decrease from oldest to newest and the oldest is the
    /// maximum.
    pub fn add_max(&mut self, w: usize, at: Millis, value: f64, bucket: Millis) {
        let start = self.start(w);
        let mut meta = self.meta(w);
        debug_assert!(meta.keeps_max || meta.len == 0, "a window either sums or keeps the maximum");
        meta.keeps_max = true;
        let old_end = start + meta.len as usize;
        let run = self.cells(start..old_end);
        let mut end = run.len();
        let mut value = value;
        if end > 0 && same_bucket(run[end - 1].at, at, bucket) {
            value = value.max(run[end - 1].value);
            end -= 1;
        }
        while end > 0 && run[end - 1].value <= value {
            end -= 1;
        }
        meta.len = (end + 1) as u32;
        self.set_meta(w, meta);
        self.splice_entries(start + end..old_end, Some(Entry { at, value }));
    }
}

/// A read-only view of one window.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub meta: WindowMeta,
    pub entries: &'a [Entry],
}

impl Window<'_> {
    /// The sum of a summing window.
    #[inline]
    pub fn sum(&self) -> f64 {
        self.meta.total / SCALE
    }

    /// The maximum of a maximum window.
    #[inline]
    pub fn max(&self) -> Option<f64> {
        self.entries.first().map(|e| e.value)
    }

    /// When the oldest entry leaves a window of `width`.
    pub fn next_expiry(&self, width: Millis) -> Option<Millis> {
        self.entries.first().map(|e| e.at.saturating_add(width))
    }

    /// The first instant at which the sum leaves or enters `range` as entries
    /// leave a summing window of `width`, with no entries added.
    pub fn sum_flip(&self, width: Millis, range: &Range) -> Option<Millis> {
        let entries = self.entries;
        let n = entries.len();
        let holds = range.contains(self.meta.total / SCALE);
        if self.meta.has_negative {
            // The sum may go up and down: walk the entries as they leave.
            let mut rest = self.meta.total;
            for e in entries {
                rest -= e.value;
                if range.contains(rest / SCALE) != holds {
                    return Some(e.at.saturating_add(width));
                }
            }
            return None;
        }
        // With no negative entries the sum only falls as entries leave, so the
        // test changes when it falls past the nearest bound below it. The sum
        // after the first k entries leave is the sum of the last n - k: walk from
        // the newest over the few recent entries that keep it above that bound.
        let mut first = 0; // entries[..first] have left
        let mut value = self.meta.total;
        loop {
            let bound = range.bound_below(value / SCALE)?;
            let mut suffix = 0.0;
            let mut k = n; // smallest k with the sum of entries[k..] past the bound
            while k > first {
                let next = suffix + entries[k - 1].value;
                if !bound.passed(next / SCALE) {
                    break;
                }
                suffix = next;
                k -= 1;
            }
            if k == first {
                return None;
            }
            if range.contains(suffix / SCALE) != holds {
                return Some(entries[k - 1].at.saturating_add(width));
            }
            // A redundant bound (the test did not change): carry on below it.
            first = k;
            value = suffix;
        }
    }

    /// The same for a maximum window; an empty window has no value (`None`).
    pub fn max_flip(&self, width: Millis, test: impl Fn(Option<f64>) -> bool) -> Option<Millis> {
        let now = test(self.max());
        for (i, e) in self.entries.iter().enumerate() {
            let next = self.entries.get(i + 1).map(|n| n.value);
            if test(next) != now {
                return Some(e.at.saturating_add(width));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_bucket_is_the_same_quotient(
            a in -(1i64 << 48)..(1i64 << 48),
            gap in prop_oneof![0i64..3 * HOUR, -3 * HOUR..0, any::<i32>().prop_map(i64::from)],
            bucket in prop_oneof![Just(HOUR), 1i64..5_000, Just(1)],
        ) {
            let b = a + gap;
            prop_assert_eq!(same_bucket(a, b, bucket), a.div_euclid(bucket) == b.div_euclid(bucket));
        }

        /// Expiring every window in one pass, and finding the next expiry in
        /// one, agree with doing it window by window.
        #[test]
        fn one_pass_agrees_with_window_by_window(
            adds in proptest::collection::vec((0usize..4, 0i64..1_000, -3.0f64..9.0), 0..40),
            widths in proptest::collection::vec(proptest::option::of(1i64..600), 4),
            now in 0i64..1_600,
        ) {
            let mut cells = Cells::new(0, 0, 4);
            for (w, at, value) in adds {
                // Entries only come in time order.
                let last = cells.window(w).entries.last().map_or(i64::MIN, |e| e.at);
                cells.add(w, at.max(last), value, 10);
            }
            let mut each = cells.clone();
            for (w, width) in widths.iter().enumerate() {
                if let Some(width) = width {
                    each.expire(w, now, *width);
                }
            }
            cells.expire_all(&widths, now);
            prop_assert_eq!(&cells, &each);
            prop_assert_eq!(cells.window_metas().collect::<Vec<_>>(), each.window_metas().collect::<Vec<_>>());
            let full: Vec<Millis> = widths.iter().map(|w| w.unwrap_or(50)).collect();
            let expected = (0..4).filter_map(|w| cells.window(w).next_expiry(full[w])).min().unwrap_or(Millis::MAX);
            prop_assert_eq!(cells.next_expiry(&full), expected);
        }
    }

    #[test]
    fn entries_leave_exactly_width_after() {
        let mut w = Cells::new(0, 0, 2);
        w.add(1, 0, 1.0, 1);
        w.add(1, 10, 2.0, 1);
        w.add(0, 5, 7.0, 1);
        w.expire(1, 99, 100);
        assert_eq!(w.window(1).sum(), 3.0);
        w.expire(1, 100, 100);
        assert_eq!(w.window(1).sum(), 2.0);
        assert_eq!(w.window(1).next_expiry(100), Some(110));
        assert_eq!(w.window(0).sum(), 7.0, "other windows are untouched");
        w.clear(0);
        assert_eq!(w.window(0).sum(), 0.0);
        assert_eq!(w.window(1).sum(), 2.0);
    }

    #[test]
    fn one_bucket_merges() {
        let mut w = Cells::new(0, 0, 1);
        w.add(0, HOUR + 5, 1.0, HOUR);
        w.add(0, HOUR + 50, 1.0, HOUR);
        w.add(0, 2 * HOUR, 1.0, HOUR);
        assert_eq!(w.window(0).entries.len(), 2);
        assert_eq!(w.window(0).entries[0].at, HOUR + 50);
        assert_eq!(w.window(0).sum(), 3.0);
    }

    #[test]
    fn max_keeps_only_candidates() {
        let mut w = Cells::new(0, 0, 2);
        w.add(0, 0, 1.0, 1);
        w.add_max(1, 0, 5.0, 1);
        w.add_max(1, 1, 9.0, 1);
        w.add_max(1, 2, 3.0, 1);
        w.add(0, 3, 1.0, 1);
        assert_eq!(w.window(1).max(), Some(9.0));
        assert_eq!(w.window(1).entries.len(), 2);
        w.expire(1, 101, 100);
        assert_eq!(w.window(1).max(), Some(3.0));
        assert_eq!(w.window(0).sum(), 2.0);
    }

    #[test]
    fn flips() {
        let mut w = Cells::new(0, 0, 1);
        for t in 0..10 {
            w.add(0, t * 10, 1.0, 1);
        }
        let w1 = w.window(0);
        let at_least = |v| Range { gte: Some(v), ..Range::default() };
        // count >= 10 stops holding when the first entry leaves
        assert_eq!(w1.sum_flip(1000, &at_least(10.0)), Some(1000));
        // count >= 3 stops holding when the 8th entry leaves (2 remain)
        assert_eq!(w1.sum_flip(1000, &at_least(3.0)), Some(1070));
        // count < 5 starts holding when the 6th entry leaves (4 remain)
        assert_eq!(w1.sum_flip(1000, &Range { lt: Some(5.0), ..Range::default() }), Some(1050));
        // 2 < count <= 4: first false (10), true when 6 have left
        let band = Range { gt: Some(2.0), lte: Some(4.0), ..Range::default() };
        assert_eq!(w1.sum_flip(1000, &band), Some(1050));
        let mut m = Cells::new(0, 0, 1);
        m.add_max(0, 0, 50.0, 1);
        m.add_max(0, 5, 40.0, 1);
        assert_eq!(m.window(0).max_flip(100, |p| p.is_some_and(|p| p >= 45.0)), Some(100));
        assert_eq!(m.window(0).max_flip(100, |p| p.is_some()), Some(105));
    }

    proptest! {
        #[test]
        fn the_fast_flip_agrees_with_walking_every_entry(
            values in proptest::collection::vec(0u8..6, 1..40),
            neg in proptest::bool::ANY,
            lo in proptest::option::of(0u8..30), hi in proptest::option::of(0u8..30),
            strict_lo in proptest::bool::ANY, strict_hi in proptest::bool::ANY,
        ) {
            let mut w = Cells::new(0, 0, 1);
            for (i, v) in values.iter().enumerate() {
                let v = f64::from(*v) - if neg && i.is_multiple_of(3) { 3.0 } else { 0.0 };
                w.add(0, i as i64 * 10, v, 1);
            }
            let lo = lo.map(f64::from);
            let hi = hi.map(f64::from);
            let range = Range {
                gt: lo.filter(|_| strict_lo), gte: lo.filter(|_| !strict_lo),
                lt: hi.filter(|_| !strict_hi), lte: hi.filter(|_| strict_hi),
            };
            let view = w.window(0);
            // The reference: walk every entry as it leaves.
            let mut rest = view.meta.total;
            let holds = range.contains(rest / SCALE);
            let mut expected = None;
            for e in view.entries {
                rest -= e.value;
                if range.contains(rest / SCALE) != holds {
                    expected = Some(e.at + 100);
                    break;
                }
            }
            prop_assert_eq!(view.sum_flip(100, &range), expected);
        }

        #[test]
        fn windows_stay_independent_and_totals_exact(
            ops in proptest::collection::vec((0usize..3, -50i32..50, 0i64..5), 1..80), now in 0i64..400,
        ) {
            // Three summing windows driven in one buffer agree with three separate lists.
            let mut w = Cells::new(0, 0, 3);
            let mut reference: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 3];
            let mut t = 0;
            for (win, v, gap) in ops {
                t += gap;
                let v = f64::from(v) / 4.0;
                w.add(win, t, v, 1);
                match reference[win].last_mut() {
                    Some(last) if last.0 == t => last.1 += v,
                    _ => reference[win].push((t, v)),
                }
            }
            for (win, r) in reference.iter().enumerate() {
                w.expire(win, now, 100);
                let expected: f64 = r.iter().filter(|(at, _)| at + 100 > now).map(|(_, v)| v).sum();
                prop_assert!((w.window(win).sum() - expected).abs() < 1e-9);
                prop_assert!((w.window_sum(win) - expected).abs() < 1e-9);
                let fresh: f64 = w.window(win).entries.iter().map(|e| e.value).sum();
                prop_assert_eq!(w.window(win).meta.total, fresh);
            }
        }
    }
}
