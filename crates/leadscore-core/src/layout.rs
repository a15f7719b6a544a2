//! What the slots of a lead's state mean under one model, by name, so that a
//! state written under one model can be read under another.
//!
//! A lead's state keeps per-rule, per-tally, per-window and per-segment data
//! indexed by the model's order. A [`StateLayout`] names each slot.
//! Every encoded state carries the [`Model::fingerprint`] of the model that
//! wrote it, a checkpoint remembers the layouts of the fingerprints its
//! partition's states may have, and [`migrate`] moves a state from the layout
//! it was written under to the current model's: a slot whose name survives keeps its data, a slot that is
//! gone is dropped, a new slot starts empty. Reordering changes nothing;
//! renaming is a removal and an addition.
//!
//! A slot's name says what its data means, not only what the model calls it:
//! a tally that changes what it measures, or gains or loses a window, keeps
//! numbers that no longer mean the same thing, so its slot name changes and
//! its state starts afresh. A change of a window's width, a rule's points or
//! escalation, or a segment's condition keeps the data (the kept history is
//! still true) and is re-evaluated by [`crate::engine::remodel`].

use crate::cells::Cells;
use crate::model::Model;
use crate::state::{LeadState, Membership};
use crate::window::WindowMeta;

/// The names of a model's state slots, in the model's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateLayout {
    /// Rules that keep a match count (escalating or capped), by rule name.
    pub rules: Vec<String>,
    /// Every tally: `name:measure:window` or `name:measure:ever`.
    pub tallies: Vec<String>,
    /// Every window: `tally:<tally slot>` for tallies, then `cap:<rule>`.
    pub windows: Vec<String>,
    /// Every segment, by name (its index is its membership bit).
    pub segments: Vec<String>,
}

impl StateLayout {
    /// The layout of `model`'s states.
    pub fn of(model: &Model) -> StateLayout {
        let tally = |t: &crate::model::Tally| {
            format!("{}:{}:{}", t.name, t.measure.as_str(), if t.window.is_some() { "window" } else { "ever" })
        };
        let rules = model
            .rules
            .iter()
            .zip(&model.rule_slots)
            .filter(|(_, s)| s.is_some())
            .map(|(r, _)| r.name.clone())
            .collect();
        // The window order of `Model::new`: tallies' windows, then caps'.
        let windows = model
            .tallies
            .iter()
            .filter(|t| t.window.is_some())
            .map(|t| format!("tally:{}", tally(t)))
            .chain(model.rules.iter().filter(|r| r.cap.is_some()).map(|r| format!("cap:{}", r.name)))
            .collect();
        StateLayout {
            rules,
            tallies: model.tallies.iter().map(tally).collect(),
            windows,
            segments: model.segments.iter().map(|s| s.name.clone()).collect(),
        }
    }
}

/// FNV-1a over `bytes`: a hash that does not change between builds or
/// platforms, for fingerprints that are stored.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn position(names: &[String], name: &str) -> Option<usize> {
    names.iter().position(|n| n == name)
}

/// Slots laid out by the names `from`, in the order of the names `to`: each
/// kept by name, new ones empty, removed ones dropped.
fn remap<T: Default>(old: Vec<T>, from: &[String], to: &[String]) -> Vec<T> {
    let mut old: Vec<Option<T>> = old.into_iter().map(Some).collect();
    to.iter().map(|n| position(from, n).and_then(|i| old.get_mut(i)?.take()).unwrap_or_default()).collect()
}

/// A membership of a segment the current model no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub segment: String,
    pub since: crate::Millis,
}

/// Moves `state`, decoded under `from`, to `model`'s layout (see the module
/// docs). Returns the memberships of segments `model` no longer has: the
/// caller publishes their exits. Derived data (grade criteria, profile tests,
/// the threshold cache) is left for [`crate::engine::remodel`] to recompute.
pub fn migrate(state: &mut LeadState, from: &StateLayout, model: &Model) -> Vec<Retired> {
    let to = &model.layout;
    let old = std::mem::take(&mut state.cells);
    let rules = remap(old.rules().collect(), &from.rules, &to.rules);
    let tallies = remap(old.tallies().collect(), &from.tallies, &to.tallies);
    let kept: Vec<Option<usize>> =
        to.windows.iter().map(|name| position(&from.windows, name).filter(|&i| i < old.window_count())).collect();
    let runs: Vec<_> = kept.iter().map(|k| k.map(|i| old.window(i))).collect();
    let entries: usize = runs.iter().flatten().map(|w| w.entries.len()).sum();
    let mut cells = Cells::with_capacity(rules.len() + tallies.len() + to.windows.len() + entries + old.ids().len());
    rules.into_iter().for_each(|m| cells.push_rule(m));
    tallies.into_iter().for_each(|t| cells.push_tally(t));
    // A window whose tally became a peak (or stopped being one) has a new
    // slot name, so a kept window always keeps its kind.
    for run in &runs {
        cells.push_window(run.map_or(WindowMeta::default(), |w| WindowMeta { len: w.entries.len() as u32, ..w.meta }));
    }
    runs.iter().flatten().flat_map(|w| w.entries).for_each(|e| cells.push_entry(*e));
    cells.set_ids(&old.ids().collect::<Vec<_>>(), old.ids_next());
    debug_assert!(cells.consistent());
    state.cells = cells;

    let mut retired = Vec::new();
    let mut segments = Vec::with_capacity(state.segments.len());
    let mut member = 0u128;
    for m in std::mem::take(&mut state.segments) {
        let Some(name) = from.segments.get(usize::from(m.segment)) else { continue };
        match position(&to.segments, name) {
            Some(i) => {
                segments.push(Membership { segment: i as u16, since: m.since });
                member |= 1 << i;
            }
            None => retired.push(Retired { segment: name.clone(), since: m.since }),
        }
    }
    segments.sort_unstable_by_key(|m| m.segment);
    state.segments = segments;
    state.member = member;
    state.deadlines = Default::default();
    state.expiry_floor = crate::Millis::MIN;
    retired
}

/// Where each segment of `from` is under `to` (by name), for remapping
/// per-segment counts.
pub fn segment_moves(from: &StateLayout, to: &StateLayout) -> Vec<Option<usize>> {
    from.segments.iter().map(|n| position(&to.segments, n)).collect()
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
