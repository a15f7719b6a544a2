//! Hints that bring a lead's state into the cache before its event is applied.
//!
//! With more leads than the cache holds, every event waits on memory for the
//! lead it touches (its state, then the counters its state points to, then
//! its memberships), and one event's waits do not overlap the next one's. A
//! caller that knows the events to come (a step, a benchmark's batch) hints
//! in two stages while it applies the current event: the slot of the event
//! `2 × d` ahead ([`crate::state::prefetch_slot`], with the event's property
//! list), then the state of the event `d` ahead, whose pointers the first
//! hint brought in ([`crate::LeadState::prefetch`], with the event's texts).
//! A single stage would have to read those pointers while they are still in
//! memory, and wait for them.
//!
//! A hint never faults and changes nothing a program can observe but time;
//! on targets without one it does nothing.

/// `d` above: far enough ahead that a hint lands before its event (an
/// event takes about half a microsecond), near enough that the hinted lines
/// are not evicted first. 4, 8 and 16 measured alike at 100k leads; 2 less.
pub const DISTANCE: usize = 4;

/// The cache line size of the targets leadscore runs on.
const LINE: usize = 64;

/// Hints the `bytes` bytes from `start` (at most `max_lines` cache lines).
#[inline]
pub(crate) fn bytes<T>(start: *const T, bytes: usize, max_lines: usize) {
    let start = start.cast::<u8>();
    let lines = bytes.div_ceil(LINE).min(max_lines);
    for i in 0..lines {
        line(start.wrapping_add(i * LINE));
    }
}

/// Hints the whole of `value` itself (at most 8 cache lines), not what it
/// points to: for a caller about to revisit, in a known order, records it
/// touched long enough ago to have left the cache.
#[inline]
pub fn value<T>(value: &T) {
    bytes(value as *const T, std::mem::size_of::<T>(), 8);
}

#[inline(always)]
fn line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is not an access as far as the program is
    // concerned: it never faults, whatever the address, and SSE is part of
    // the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
