//! Which decoded events the processor admits, beyond what the codec checks:
//! a plausible time range, and what becomes of event kinds the model does not
//! know.
//!
//! A well-formed timestamp can still be wrong: epoch seconds sent as
//! milliseconds (January 1970), a device clock in 2099. Applied, such an event
//! moves its lead's clock (freezing its decay) or, in event time, the whole
//! partition's watermark (firing every timer in it at once). So events before
//! `min_timestamp`, or more than `max_future` ahead of the step's reference,
//! are dead letters of class `out_of_range_timestamp`.
//!
//! The reference is, in wall-clock mode, the time the message was written to
//! Kafka (its broker timestamp; the step's tick for a message without one),
//! and in event-time mode the partition's watermark. Both are fixed by the
//! input, so a replay of a step decides exactly as the step did, however long
//! after (a replay ticks at the original step's instant, which would reject
//! messages produced during an outage). The first event of a partition in
//! event time has no reference yet and is only held to the floor.

use crate::processor::TimeMode;
use leadscore_codec::{DecodeError, ErrorClass};
use leadscore_core::time::{format_rfc3339, parse_rfc3339, DAY, HOUR, MINUTE, SECOND};
use leadscore_core::Millis;

/// What becomes of an event whose `type` is not a kind the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKinds {
    /// Dead-lettered as `unknown_kind` (the input contract's default: a typo
    /// or a new event type upstream is seen, not lost).
    DeadLetter,
    /// Counted in `leadscore_events_skipped_total{reason="unknown_kind"}` and
    /// committed, never toward the circuit breaker: for topics shared with
    /// events that are not about scoring (sessions, carts, scrolls).
    Skip,
}

impl UnknownKinds {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownKinds::DeadLetter => "dead_letter",
            UnknownKinds::Skip => "skip",
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Events before this instant are out of range.
    pub min_timestamp: Millis,
    /// How far ahead of the reference (see the module documentation) an
    /// event may be; `None`: the time mode's default
    /// ([`Admission::default_max_future`]).
    pub max_future: Option<Millis>,
    pub unknown_kinds: UnknownKinds,
}

/// The default floor: 2000-01-01T00:00:00Z. Lead-scoring events older than
/// that are almost always a unit mistake (seconds read as milliseconds).
pub const DEFAULT_MIN_TIMESTAMP: Millis = 946_684_800_000;

impl Default for Admission {
    fn default() -> Admission {
        Admission { min_timestamp: DEFAULT_MIN_TIMESTAMP, max_future: None, unknown_kinds: UnknownKinds::DeadLetter }
    }
}

impl Admission {
    /// The default horizon of a time mode: a day of clock skew ahead of the
    /// time a message was written; a year ahead of a partition's event time
    /// (a replay's partition may be quiet for months, but not for years).
    pub fn default_max_future(mode: TimeMode) -> Millis {
        match mode {
            TimeMode::WallClock => DAY,
            TimeMode::EventTime => 365 * DAY,
        }
    }

    /// Parses the floor as configured (RFC 3339).
    pub fn parse_min_timestamp(s: &str) -> Result<Millis, String> {
        parse_rfc3339(s).map_err(|e| e.to_string())
    }

    /// Whether an event at `t` is in range, given the step's `reference`
    /// (see the module documentation) and the time `mode`.
    pub fn check_time(&self, t: Millis, reference: Option<Millis>, mode: TimeMode) -> Result<(), DecodeError> {
        if t < self.min_timestamp {
            return Err(DecodeError::new(
                ErrorClass::OutOfRangeTimestamp,
                format!(
                    "timestamp {} is before processing.min_timestamp ({}); epoch seconds sent as milliseconds?",
                    format_rfc3339(t),
                    format_rfc3339(self.min_timestamp)
                ),
            ));
        }
        let Some(reference) = reference else { return Ok(()) };
        let max_future = self.max_future.unwrap_or_else(|| Admission::default_max_future(mode));
        // Instants are within years 0000..9999 and max_future is bounded by
        // the configuration: no overflow, but saturate all the same.
        if t > reference.saturating_add(max_future) {
            let what = match mode {
                TimeMode::WallClock => "the time it was written to Kafka",
                TimeMode::EventTime => "the partition's event time",
            };
            return Err(DecodeError::new(
                ErrorClass::OutOfRangeTimestamp,
                format!(
                    "timestamp {} is {} ahead of {what} ({}); processing.max_future_ms allows {}",
                    format_rfc3339(t),
                    span(t.saturating_sub(reference)),
                    format_rfc3339(reference),
                    span(max_future)
                ),
            ));
        }
        Ok(())
    }
}

/// A duration for people: in its largest unit, whole or to a tenth.
fn span(ms: Millis) -> String {
    for (unit, name) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")] {
        if ms >= unit {
            return if ms % unit == 0 {
                format!("{}{name}", ms / unit)
            } else {
                format!("{:.1}{name}", ms as f64 / unit as f64)
            };
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_core::time::parse_rfc3339;

    fn at(s: &str) -> Millis {
        parse_rfc3339(s).expect("valid")
    }

    #[test]
    fn the_floor_catches_seconds_sent_as_milliseconds() {
        let a = Admission::default();
        let seconds = 1_795_622_400; // 2026-11-25T16:00:00Z in seconds
        let e = a.check_time(seconds, None, TimeMode::EventTime).expect_err("1970");
        assert_eq!(e.class, ErrorClass::OutOfRangeTimestamp);
        assert!(e.message.contains("1970-01-21") && e.message.contains("min_timestamp"), "{}", e.message);
        assert!(a.check_time(at("2000-01-01T00:00:00Z"), None, TimeMode::EventTime).is_ok());
    }

    #[test]
    fn event_time_allows_a_year_ahead_of_the_watermark() {
        let a = Admission::default();
        let w = at("2026-11-25T16:00:00Z");
        assert!(a.check_time(at("2027-11-25T16:00:00Z"), Some(w), TimeMode::EventTime).is_ok());
        let e = a.check_time(at("2099-01-01T00:00:00Z"), Some(w), TimeMode::EventTime).expect_err("2099");
        assert!(e.message.contains("partition's event time") && e.message.contains("365d"), "{}", e.message);
        assert!(e.message.contains("26334.3d ahead"), "{}", e.message);
        assert!(a.check_time(at("2099-01-01T00:00:00Z"), None, TimeMode::EventTime).is_ok(), "no reference yet");
    }

    #[test]
    fn wall_clock_allows_a_day_of_skew() {
        let a = Admission::default();
        let now = at("2026-11-25T16:00:00Z");
        assert!(a.check_time(now + DAY, Some(now), TimeMode::WallClock).is_ok());
        let e = a.check_time(now + DAY + 1, Some(now), TimeMode::WallClock).expect_err("too far");
        assert!(e.message.contains("written to Kafka"), "{}", e.message);
        assert!(a.check_time(at("9999-12-31T23:59:59.999Z"), Some(now), TimeMode::WallClock).is_err());
    }
}
