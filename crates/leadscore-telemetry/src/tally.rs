//! A commit's steps, summed as they are published and reported once the
//! commit is done.
//!
//! What a step reports (counters, metrics, published records) may only be
//! reported once its commit is written, yet keeping every step until then
//! and summing them at the commit stalled the runtime's loop: at 30k events/s
//! a one-second commit had about two thousand steps, and counting and
//! dropping them took 10-17 ms of the loop at once, a delay for every event
//! that arrived meanwhile. A [`Tally`] takes each step as it is published,
//! while its data is still in the cache, keeps only the sums (and the
//! records for the history), and [`Telemetry::report`] reports them at once.

use crate::history::PublishedRecord;
use crate::metrics::Metrics;
use crate::observations::{Observations, StepStats};
use crate::Telemetry;
use prometheus::local::LocalHistogram;

/// See the module documentation.
#[derive(Debug)]
pub struct Tally {
    steps: u64,
    messages: u64,
    pub(crate) stats: StepStats,
    /// Counts only: the instants went into the histograms, the records
    /// into `published`.
    pub(crate) counts: Observations,
    pub(crate) latency: LocalHistogram,
    pub(crate) lag: LocalHistogram,
    pub(crate) delay: LocalHistogram,
    published: Vec<Vec<PublishedRecord>>,
}

impl Tally {
    /// An empty tally of `metrics`' histograms.
    pub fn new(metrics: &Metrics) -> Tally {
        Tally {
            steps: 0,
            messages: 0,
            stats: StepStats::default(),
            counts: Observations::default(),
            latency: metrics.event_to_output.local(),
            lag: metrics.event_time_lag.local(),
            delay: metrics.timer_delay.local(),
            published: Vec::new(),
        }
    }

    /// Adds a published step: `messages` consumed, its `stats`, and its
    /// observations, sent at `clock` (the timers' clock) and `wall` (the
    /// wall clock), in milliseconds.
    pub fn add(&mut self, messages: u64, stats: &StepStats, mut o: Observations, clock: i64, wall: i64) {
        self.steps += 1;
        self.messages += messages;
        self.stats.add(stats);
        self.observe(&o, clock, wall);
        self.published.push(std::mem::take(&mut o.published));
    }

    /// Adds `o`'s counts and instants, not its records.
    pub(crate) fn observe(&mut self, o: &Observations, clock: i64, wall: i64) {
        let seconds = |ms: i64| ms.max(0) as f64 / 1000.0;
        self.counts.add_counts(o);
        for &t in &o.broker_times {
            self.latency.observe(seconds(wall - t));
        }
        for &t in &o.event_times {
            self.lag.observe(seconds(clock - t));
        }
        for &d in &o.timer_delays {
            self.delay.observe(seconds(d));
        }
    }

    /// Steps added.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Messages of the steps added.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Dead letters by error class, summed.
    pub fn dead_letters(&self) -> &crate::observations::Counts<&'static str> {
        &self.counts.dead_letters
    }
}

impl Telemetry {
    /// Reports a committed tally: counters, metrics, and the records for the
    /// history, as each of its steps would have one by one.
    pub fn report(&self, tally: Tally) {
        self.counters.add_steps(tally.steps, tally.messages, &tally.stats);
        self.metrics.record(&tally);
        self.history.note_all(tally.published);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observations::EventOutcome;
    use crate::Counters;
    use leadscore_core::Kind;

    fn step(topic: u16, broker: i64, lead: &str) -> (StepStats, Observations) {
        let o = Observations {
            events: [((topic, Some(Kind::PageView), EventOutcome::Applied), 2)].into_iter().collect(),
            dead_letters: [("bad_json", 1)].into_iter().collect(),
            broker_times: vec![broker],
            event_times: vec![0],
            timer_delays: vec![5],
            published: vec![crate::history::tests::change(lead, 1)],
            ..Observations::default()
        };
        (StepStats { applied: 2, dead_lettered: 1, score_changes: 1, ..StepStats::default() }, o)
    }

    fn counters(c: &Counters) -> [u64; 5] {
        [&c.messages, &c.applied, &c.dead_lettered, &c.score_changes, &c.batches].map(Counters::get)
    }

    #[test]
    fn a_tally_reports_as_its_steps_would_one_by_one() {
        let steps = [(3, step(0, 1_000, "a"), 10, 3_000), (4, step(1, 2_000, "b"), 20, 4_000)];
        let one_by_one = Telemetry::default();
        let together = Telemetry::default();
        for t in [&one_by_one, &together] {
            t.metrics.describe_inputs(["clicks", "crm"]);
        }
        for (messages, (stats, o), clock, wall) in steps.clone() {
            one_by_one.counters.add(messages, &stats);
            one_by_one.metrics.observe(&o, stats.score_changes, clock, wall);
            one_by_one.history.note(o.published);
        }
        let mut tally = Tally::new(&together.metrics);
        for (messages, (stats, o), clock, wall) in steps {
            tally.add(messages, &stats, o, clock, wall);
        }
        assert_eq!((tally.steps(), tally.messages(), tally.dead_letters()["bad_json"]), (2, 7, 2));
        assert_eq!(together.metrics.event_to_output.get_sample_count(), 0, "nothing reported before the commit");
        together.report(tally);
        // The process collector's lines (memory, threads) differ between any two renders.
        let ours = |t: &Telemetry| {
            t.metrics.render().lines().filter(|l| l.starts_with("leadscore_")).collect::<Vec<_>>().join("\n")
        };
        assert_eq!(ours(&together), ours(&one_by_one));
        assert_eq!(together.metrics.event_to_output.get_sample_sum(), 4.0, "each step against its own wall clock");
        assert_eq!(counters(&together.counters), counters(&one_by_one.counters));
        assert_eq!(counters(&together.counters), [7, 4, 2, 2, 2]);
        let recent = |t: &Telemetry| t.history.score_changes_of("b").len();
        assert_eq!((recent(&together), recent(&one_by_one)), (1, 1));
    }
}
