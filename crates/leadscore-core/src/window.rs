//! Rolling windows of `(instant, value)` entries, for rule caps and tallies.
//!
//! "In the last N" at `t` means instants in `(t - N, t]`: an entry leaves exactly
//! N after its instant. Entries falling in the same bucket (one hour by default,
//! aligned to the epoch) are merged into one stamped with the latest instant, so a
//! window holds at most N / bucket entries; a merged event may leave up to one
//! bucket late, as domain.md allows. Time only moves forward per lead, so entries
//! are appended at the back and expire from the front.

use crate::time::Millis;
use std::collections::VecDeque;

/// One bucket of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub at: Millis,
    pub value: f64,
}

/// A rolling window; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub entries: VecDeque<Entry>,
}

fn same_bucket(a: Millis, b: Millis, bucket: Millis) -> bool {
    a.div_euclid(bucket) == b.div_euclid(bucket)
}

impl Window {
    /// Drops the entries that have left a window of `width` at `now`.
    pub fn expire(&mut self, now: Millis, width: Millis) {
        while self.entries.front().is_some_and(|e| e.at + width <= now) {
            self.entries.pop_front();
        }
    }

    /// Adds `value` at `at` to a summing window.
    pub fn add(&mut self, at: Millis, value: f64, bucket: Millis) {
        match self.entries.back_mut() {
            Some(last) if same_bucket(last.at, at, bucket) => {
                last.at = at;
                last.value += value;
            }
            _ => self.entries.push_back(Entry { at, value }),
        }
    }

    /// Records `value` at `at` in a window that keeps the maximum. Entries that
    /// can never be the maximum again (lower and leaving earlier) are dropped, so
    /// the values decrease from front to back and the front is the maximum.
    pub fn add_max(&mut self, at: Millis, value: f64, bucket: Millis) {
        let mut value = value;
        if let Some(last) = self.entries.back() {
            if same_bucket(last.at, at, bucket) {
                value = value.max(last.value);
                self.entries.pop_back();
            }
        }
        while self.entries.back().is_some_and(|e| e.value <= value) {
            self.entries.pop_back();
        }
        self.entries.push_back(Entry { at, value });
    }

    /// The sum, added from the back so that [`Window::sum_flip`] reproduces it
    /// exactly for every suffix.
    pub fn sum(&self) -> f64 {
        self.entries.iter().rev().fold(0.0, |acc, e| acc + e.value)
    }

    pub fn max(&self) -> Option<f64> {
        self.entries.front().map(|e| e.value)
    }

    /// When the front entry leaves a window of `width`.
    pub fn next_expiry(&self, width: Millis) -> Option<Millis> {
        self.entries.front().map(|e| e.at + width)
    }

    /// The first instant at which `test(value)` changes as entries leave a summing
    /// window of `width`, with no entries added.
    pub fn sum_flip(&self, width: Millis, test: impl Fn(f64) -> bool) -> Option<Millis> {
        // suffix[k] is the sum once the first k entries have left, computed in the
        // same order as `sum()` so that no rounding difference can fake a flip.
        let n = self.entries.len();
        let mut suffix = vec![0.0; n + 1];
        for i in (0..n).rev() {
            suffix[i] = suffix[i + 1] + self.entries[i].value;
        }
        let now = test(suffix[0]);
        (0..n).find(|&k| test(suffix[k + 1]) != now).map(|k| self.entries[k].at + width)
    }

    /// The same for a maximum window; an empty window has no value (`None`).
    pub fn max_flip(&self, width: Millis, test: impl Fn(Option<f64>) -> bool) -> Option<Millis> {
        let now = test(self.max());
        for (i, e) in self.entries.iter().enumerate() {
            let next = self.entries.get(i + 1).map(|n| n.value);
            if test(next) != now {
                return Some(e.at + width);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;

    #[test]
    fn entries_leave_exactly_width_after() {
        let mut w = Window::default();
        w.add(0, 1.0, 1);
        w.add(10, 2.0, 1);
        w.expire(99, 100);
        assert_eq!(w.sum(), 3.0);
        w.expire(100, 100);
        assert_eq!(w.sum(), 2.0);
        assert_eq!(w.next_expiry(100), Some(110));
    }

    #[test]
    fn one_bucket_merges() {
        let mut w = Window::default();
        w.add(HOUR + 5, 1.0, HOUR);
        w.add(HOUR + 50, 1.0, HOUR);
        w.add(2 * HOUR, 1.0, HOUR);
        assert_eq!(w.entries.len(), 2);
        assert_eq!(w.entries[0].at, HOUR + 50);
    }

    #[test]
    fn max_keeps_only_candidates() {
        let mut w = Window::default();
        w.add_max(0, 5.0, 1);
        w.add_max(1, 9.0, 1);
        w.add_max(2, 3.0, 1);
        assert_eq!(w.max(), Some(9.0));
        assert_eq!(w.entries.len(), 2);
        w.expire(101, 100);
        assert_eq!(w.max(), Some(3.0));
    }

    #[test]
    fn flips() {
        let mut w = Window::default();
        for t in 0..10 {
            w.add(t * 10, 1.0, 1);
        }
        // count >= 10 stops holding when the first entry leaves
        assert_eq!(w.sum_flip(1000, |v| v >= 10.0), Some(1000));
        // count >= 3 stops holding when the 8th entry leaves (2 remain)
        assert_eq!(w.sum_flip(1000, |v| v >= 3.0), Some(1070));
        let mut m = Window::default();
        m.add_max(0, 50.0, 1);
        m.add_max(5, 40.0, 1);
        assert_eq!(m.max_flip(100, |p| p.is_some_and(|p| p >= 45.0)), Some(100));
        assert_eq!(m.max_flip(100, |p| p.is_some()), Some(105));
    }
}
