//! The faults a seed injects at each scheduler step: crashes at the next
//! port call, stalls, changelog compaction (never of what an owner's outage
//! left unsuperseded for longer than the active segment), and syncs of the
//! instances' stores (what a machine crash keeps).

use super::{Plan, Report, SESSION_TIMEOUT};
use crate::ports::crash_kind;
use crate::scenario::SCALE;
use crate::world::World;
use leadscore_pipeline::{Guarantee, Topics};

/// Tombstones older than this (event-time ms) may be compacted away.
const TOMBSTONE_RETENTION: i64 = 30 * 86_400_000;
/// Records younger than this (simulated ms) are in the active segment, which
/// the cleaner never touches: meant to be longer than any outage of a
/// partition's owner (its replay supersedes what its unfinished step wrote
/// before compaction can see it; Kafka's segment.ms is 7 days by default).
/// A seed whose failures make an outage longer is not compacted meanwhile
/// (`outage_beyond_active_segment`).
const ACTIVE_SEGMENT: i64 = 8 * SESSION_TIMEOUT;

/// Whether records of an unfinished commit (after the partition's last
/// checkpoint marker) are already older than the active segment: no owner
/// restored the partition and superseded them for that long. The runtime
/// claims to survive shorter outages only (docs/runtime.md, "What at least
/// once does not claim"); repeated failures can make a seed's outage longer
/// than the cleaner's horizon, and then the cleaner waits, as the active
/// segment of a real broker (7 days) would.
fn outage_beyond_active_segment(log: &crate::broker::Log, closed_before: i64) -> bool {
    let last_marker = (0..log.end()).rev().find(|&o| log.visible(o, true) && log.records[o as usize].key.is_empty());
    (last_marker.map_or(0, |m| m + 1)..log.end())
        .any(|o| log.visible(o, true) && log.records[o as usize].timestamp < closed_before)
}

/// The faults of one scheduler step.
pub(super) fn faults(w: &mut World, plan: &Plan, crashes_left: &mut u32, report: &mut Report) {
    let stalls_left = plan.stalls.saturating_sub(report.stalls);
    let alive: Vec<usize> = (0..w.slots.len()).filter(|s| w.slots[*s].alive && w.slots[*s].crash.is_none()).collect();
    if *crashes_left > 0 && !alive.is_empty() && w.rng.chance(plan.crash_chance) {
        let s = *w.rng.pick(&alive);
        let kind = crash_kind(w);
        w.slots[s].crash = Some(kind);
        *crashes_left -= 1;
        report.crashes += 1;
        w.note(format!("slot {s} will crash ({kind:?}) at its next call"));
    }
    if stalls_left > 0 && !alive.is_empty() && w.rng.chance(plan.stall_chance) {
        let s = *w.rng.pick(&alive);
        // Exactly once fences an instance stalled past its session (a zombie);
        // at least once does not claim to (docs/runtime.md), so its stalls
        // stay within the session.
        let longest = match plan.guarantee {
            Guarantee::ExactlyOnce => SESSION_TIMEOUT * 2,
            Guarantee::AtLeastOnce => SESSION_TIMEOUT / 2,
        };
        let until = w.now + 100 + w.rng.below(longest as u64) as i64;
        w.slots[s].stalled_until = until;
        report.stalls += 1;
        w.note(format!("slot {s} stalls until {until}"));
    }
    if plan.compaction && w.rng.chance(0.002) {
        let p = w.rng.below(u64::from(plan.partitions)) as u32;
        let (wall, closed_before) = (w.wall(), w.wall() - ACTIVE_SEGMENT * SCALE);
        let changelog = Topics::default().changelog;
        if w.broker.log(&changelog, p).is_some_and(|log| outage_beyond_active_segment(log, closed_before)) {
            w.note(format!("changelog partition {p} not compacted: no owner superseded its last commit in time"));
        } else {
            w.broker.compact(&changelog, p, wall, closed_before, TOMBSTONE_RETENTION);
            w.note(format!("changelog partition {p} compacted"));
        }
    }
    if w.rng.chance(0.01) {
        let s = w.rng.below(w.slots.len() as u64) as usize;
        w.slots[s].store.sync();
    }
}
