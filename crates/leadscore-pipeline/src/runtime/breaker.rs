//! The circuit breaker against floods of bad input (an input topic mapped to
//! the wrong kind or format), and the rate-limited log line about dead letters.

use leadscore_telemetry::Counts;
use std::collections::BTreeMap;
use std::time::Duration;

/// Counts committed messages and dead letters in windows of `window`
/// messages; a window with more than `max_share` dead letters trips.
#[derive(Debug)]
pub(crate) struct Breaker {
    window: u64,
    max_share: f64,
    messages: u64,
    dead: u64,
}

impl Breaker {
    pub(crate) fn new(window: u64, max_share: f64) -> Breaker {
        Breaker { window: window.max(1), max_share, messages: 0, dead: 0 }
    }

    /// Adds committed counts; the verdict on a full window, which then resets.
    pub(crate) fn add(&mut self, messages: u64, dead: u64) -> Option<String> {
        self.messages += messages;
        self.dead += dead;
        if self.messages < self.window {
            return None;
        }
        let (messages, dead) = (self.messages, self.dead);
        (self.messages, self.dead) = (0, 0);
        let share = dead as f64 / messages as f64;
        (share > self.max_share).then(|| {
            format!(
                "{dead} of the last {messages} messages ({:.0}%) were bad input, more than \
                 processing.dead_letter_max_share = {}: is an input topic mapped to the wrong kind or format? \
                 They are in the dead-letter topic with their error classes.",
                share * 100.0,
                self.max_share
            )
        })
    }
}

/// Dead letters are reported in one line at most every ten seconds: the first
/// after a quiet spell at once, a burst as a summary by error class.
#[derive(Debug, Default)]
pub(crate) struct DeadLetterLog {
    pending: BTreeMap<&'static str, u64>,
    last_line: Option<Duration>,
}

impl DeadLetterLog {
    pub(crate) fn add(&mut self, classes: &Counts<&'static str>, now: Duration) {
        for (class, n) in classes {
            *self.pending.entry(class).or_default() += n;
        }
        self.report(now);
    }

    pub(crate) fn report(&mut self, now: Duration) {
        if self.pending.is_empty() || self.last_line.is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(10)) {
            return;
        }
        let total: u64 = self.pending.values().sum();
        // Info, not warn: some bad input is normal (the breaker handles floods),
        // and the demo's live view shows warnings.
        tracing::info!(
            dead_letters = total, by_class = ?self.pending,
            "bad input sent to the dead-letter topic (see its leadscore.error.* headers)"
        );
        self.pending.clear();
        self.last_line = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_on_a_window_with_too_many_dead_letters_only() {
        let mut b = Breaker::new(100, 0.5);
        assert_eq!(b.add(60, 50), None, "window not full");
        assert_eq!(b.add(40, 0), None, "50 of 100 is not more than half");
        assert_eq!(b.add(99, 99), None);
        let why = b.add(1, 1).expect("trips");
        assert!(why.contains("100 of the last 100"), "{why}");
        assert_eq!(b.add(100, 0), None, "a new window");
    }
}
