//! leadscore's Prometheus metrics: one registry per service, updated once per
//! commit from its steps' [`Tally`]: counters once per label set (summed),
//! latency and lag histograms once per message. Never
//! labelled by lead id (labels are topics, kinds, outcomes, error classes,
//! segments, partitions: all bounded).

use crate::observations::Observations;
use crate::tally::Tally;
use leadscore_core::Model;
use leadscore_store::Counts;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// See the module documentation.
pub struct Metrics {
    registry: Registry,
    pub events: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub skipped: IntCounterVec,
    pub score_changes: IntCounter,
    pub transitions: IntCounterVec,
    pub migrated: IntCounter,
    pub segment_members: IntGaugeVec,
    pub leads: IntGauge,
    pub timers_pending: IntGauge,
    pub timer_delay: Histogram,
    pub event_to_output: Histogram,
    pub event_time_lag: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub commit_duration: Histogram,
    pub store_write_duration: Histogram,
    pub rebalances: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub restoring_partitions: IntGauge,
    pub restore_records: IntCounter,
    pub restore_remaining: IntGauge,
    pub restore_duration: Histogram,
    pub merge_held: IntGauge,
    pub cached_states: IntGauge,
    pub cached_state_bytes: IntGauge,
    pub merge_idle_expired: IntCounter,
    pub schema_waiting: IntGauge,
    pub block_cache_bytes: IntGauge,
    pub memtable_bytes: IntGauge,
    pub build_info: IntGaugeVec,
    /// Segment names by index, once the model is known.
    segments: std::sync::RwLock<Vec<String>>,
    /// Input topic names by index (the runtime's sorted order).
    inputs: std::sync::RwLock<Vec<String>>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let r = Registry::new();
        // 1 ms .. ~16 s: publication latency and timer lateness.
        let fast = exponential_buckets(0.001, 2.0, 15).expect("buckets");
        // 10 ms .. ~1 day: how old events are when processed.
        let slow = exponential_buckets(0.01, 4.0, 14).expect("buckets");
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        Metrics {
            events: counter_vec(
                &r,
                "leadscore_events_total",
                "Input messages by topic, event kind (\"unknown\" when it could not be decoded) and outcome \
                 (applied, duplicate, erased, unknown_lead, dead_lettered, skipped).",
                &["topic", "kind", "outcome"],
            ),
            dead_letters: counter_vec(
                &r,
                "leadscore_dead_letters_total",
                "Messages sent to the dead-letter topic, by error class.",
                &["class"],
            ),
            skipped: counter_vec(
                &r,
                "leadscore_events_skipped_total",
                "Input messages committed without being applied or dead-lettered, by topic and reason \
                 (already_applied: behind the checkpoint after a restart or handover; unknown_kind: a type the \
                 model does not know, with topics.unknown_kinds = \"skip\"). Never counted by the circuit breaker.",
                &["topic", "reason"],
            ),
            score_changes: counter(&r, "leadscore_score_changes_total", "Score change records published."),
            transitions: counter_vec(
                &r,
                "leadscore_segment_transitions_total",
                "Segment transitions published, by segment, direction (entered, exited) and cause (event, timer, \
                 model_change, erase).",
                &["segment", "direction", "cause"],
            ),
            migrated: counter(
                &r,
                "leadscore_leads_migrated_total",
                "Leads moved to a new model and re-evaluated under it, once per lead and model change (their \
                 transitions have cause model_change).",
            ),
            segment_members: gauge_vec(
                &r,
                "leadscore_segment_members",
                "Leads currently in each segment, over the partitions this instance owns (kept incrementally).",
                &["segment"],
            ),
            leads: gauge(&r, "leadscore_leads", "Leads in state, over the partitions this instance owns."),
            timers_pending: gauge(
                &r,
                "leadscore_timers_pending",
                "Leads with a pending timer (a time-driven segment change ahead), over the owned partitions.",
            ),
            timer_delay: histogram(
                &r,
                "leadscore_timer_delay_seconds",
                "How late wall-clock timers fired after their due instant.",
                fast.clone(),
            ),
            event_to_output: histogram(
                &r,
                "leadscore_event_to_output_seconds",
                "From an input message's broker timestamp to its outputs being sent (at_least_once; their acknowledgement is awaited at the next commit) or committed in a transaction (exactly_once).",
                fast.clone(),
            ),
            event_time_lag: histogram(
                &r,
                "leadscore_event_time_lag_seconds",
                "Wall clock minus event time of each applied event, when processed.",
                slow.clone(),
            ),
            consumer_lag: gauge_vec(
                &r,
                "leadscore_consumer_lag_messages",
                "Messages behind the end of each assigned input partition (from librdkafka statistics).",
                &["topic", "partition"],
            ),
            commit_duration: histogram(
                &r,
                "leadscore_commit_duration_seconds",
                "A commit, from when it is sealed until its state is in RocksDB: the wait for its outputs' \
                 acknowledgement, then its store write (on the store writer thread).",
                fast.clone(),
            ),
            store_write_duration: histogram(
                &r,
                "leadscore_store_write_duration_seconds",
                "Writing one commit's states, timers and checkpoints to RocksDB (on the store writer thread).",
                fast,
            ),
            rebalances: counter_vec(
                &r,
                "leadscore_rebalances_total",
                "Partition assignments and revocations received from the consumer group.",
                &["kind"],
            ),
            assigned_partitions: gauge(
                &r,
                "leadscore_assigned_partitions",
                "Input partitions (groups) owned, restored and being consumed.",
            ),
            restoring_partitions: gauge(
                &r,
                "leadscore_restoring_partitions",
                "Partitions whose state is being restored from the changelog.",
            ),
            restore_records: counter(
                &r,
                "leadscore_restore_records_total",
                "Changelog records read while restoring partitions.",
            ),
            restore_remaining: gauge(
                &r,
                "leadscore_restore_remaining_records",
                "Changelog records left to read by the restore under way.",
            ),
            restore_duration: histogram(
                &r,
                "leadscore_restore_duration_seconds",
                "Restoring one partition from the changelog, from its first read to the last record applied \
                 (partitions are restored one after another; the loop keeps polling its group in between).",
                slow,
            ),
            merge_held: gauge(
                &r,
                "leadscore_merge_held_messages",
                "Fetched messages held back to keep event-time order across co-partitioned input topics \
                 (waiting for a topic that has more on the broker, or whose position is not known yet).",
            ),
            cached_states: gauge(
                &r,
                "leadscore_state_cache_leads",
                "Decoded lead states kept in memory between poll batches, as of the last commit.",
            ),
            cached_state_bytes: gauge(
                &r,
                "leadscore_state_cache_bytes",
                "What the decoded lead states kept in memory take, as of the last commit (bounded by \
                 state.cache_mb).",
            ),
            merge_idle_expired: counter(
                &r,
                "leadscore_merge_idle_expired_total",
                "Times a partition group stopped waiting for an input topic that had nothing more on the broker \
                 (processing.max_idle_ms passed) and went ahead without it.",
            ),
            schema_waiting: gauge(
                &r,
                "leadscore_partitions_waiting_for_schema",
                "Partition groups paused because their next message's writer schema is not known yet (the schema \
                 registry is being asked, or is down). Their messages are held, not dead-lettered.",
            ),
            block_cache_bytes: gauge(
                &r,
                "leadscore_rocksdb_block_cache_usage_bytes",
                "Bytes in RocksDB's shared block cache (memtables are charged to it).",
            ),
            memtable_bytes: gauge(&r, "leadscore_rocksdb_memtable_bytes", "Bytes in RocksDB memtables."),
            build_info: gauge_vec(
                &r,
                "leadscore_build_info",
                "Always 1: the running version and scoring model.",
                &["version", "model_version"],
            ),
            segments: Default::default(),
            inputs: Default::default(),
            registry: r,
        }
    }
}

impl Metrics {
    /// Labels every segment of the model (so that empty ones show as 0).
    pub fn describe_model(&self, model: &Model) {
        let names: Vec<String> = model.segments.iter().map(|s| s.name.clone()).collect();
        for n in &names {
            self.segment_members.with_label_values(&[n.as_str()]).set(0);
        }
        self.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), model.version.as_str()]).set(1);
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Names the input topics, in the order the runtime indexes them.
    pub fn describe_inputs<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        *self.inputs.write().unwrap_or_else(|p| p.into_inner()) = topics.into_iter().map(String::from).collect();
    }

    /// Counts a step's observations. `clock` is the timers' clock (event
    /// time lag is measured on it); `wall` the real time, which broker
    /// timestamps are in. They differ in the demo, whose clock is compressed.
    pub fn observe(&self, o: &Observations, score_changes: u64, clock: i64, wall: i64) {
        self.observe_all([(o, score_changes, clock, wall)]);
    }

    /// Counts the observations of many steps (a commit's) as
    /// [`Metrics::observe`] would one by one, but each labelled counter is
    /// looked up once and the histograms are updated locally and flushed
    /// once (see [`Tally`]).
    pub fn observe_all<'a>(&self, steps: impl IntoIterator<Item = (&'a Observations, u64, i64, i64)>) {
        let mut tally = Tally::new(self);
        for (o, changes, clock, wall) in steps {
            tally.stats.score_changes += changes;
            tally.observe(o, clock, wall);
        }
        self.record(&tally);
    }

    /// Records a committed tally's counts and instants.
    pub(crate) fn record(&self, tally: &Tally) {
        let sum = &tally.counts;
        let inputs = self.inputs.read().unwrap_or_else(|p| p.into_inner());
        for (&(topic, kind, outcome), &n) in &sum.events {
            let topic = inputs.get(topic as usize).map_or("unknown", String::as_str);
            let kind = kind.map_or("unknown", |k| k.as_str());
            self.events.with_label_values(&[topic, kind, outcome.as_str()]).inc_by(n);
        }
        for (class, &n) in &sum.dead_letters {
            self.dead_letters.with_label_values(&[class]).inc_by(n);
        }
        for (&(topic, reason), &n) in &sum.skipped {
            let topic = inputs.get(topic as usize).map_or("unknown", String::as_str);
            self.skipped.with_label_values(&[topic, reason.as_str()]).inc_by(n);
        }
        self.score_changes.inc_by(tally.stats.score_changes);
        self.migrated.inc_by(sum.migrated);
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        for (&(segment, direction, cause), &n) in &sum.transitions {
            let name = segments.get(segment as usize).map_or("unknown", String::as_str);
            self.transitions.with_label_values(&[name, direction.as_str(), cause.as_str()]).inc_by(n);
        }
        tally.latency.flush();
        tally.lag.flush();
        tally.delay.flush();
    }

    /// The name of the model's segment `index` ("unknown" before the model is
    /// described, or out of range).
    pub fn segment_name(&self, index: u16) -> String {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.get(index as usize).cloned().unwrap_or_else(|| "unknown".to_string())
    }

    /// Sets the gauges kept from the owned partitions' counts.
    pub fn set_counts(&self, total: &Counts) {
        self.leads.set(total.leads);
        self.timers_pending.set(total.timers);
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        for (i, name) in segments.iter().enumerate() {
            self.segment_members.with_label_values(&[name.as_str()]).set(total.members.get(i).copied().unwrap_or(0));
        }
    }

    /// The current members of each segment, by name.
    pub fn segment_members(&self) -> Vec<(String, i64)> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.iter().map(|n| (n.clone(), self.segment_members.with_label_values(&[n.as_str()]).get())).collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_latency_is_on_the_wall_clock_and_event_time_lag_on_the_timers_clock() {
        let m = Metrics::default();
        let o = Observations { broker_times: vec![1_000], event_times: vec![50], ..Observations::default() };
        // A compressed timers' clock (the demo's) far from real time.
        m.observe(&o, 0, 100, 3_000);
        assert_eq!(m.event_to_output.get_sample_sum(), 2.0);
        assert_eq!(m.event_time_lag.get_sample_sum(), 0.05);
    }

    #[test]
    fn many_steps_count_as_each_would_alone() {
        let step = |topic: u16, broker: i64| Observations {
            events: [((topic, Some(leadscore_core::Kind::PageView), crate::EventOutcome::Applied), 2)]
                .into_iter()
                .collect(),
            dead_letters: [("bad_json", 1)].into_iter().collect(),
            broker_times: vec![broker],
            event_times: vec![0],
            timer_delays: vec![5],
            ..Observations::default()
        };
        let (a, b) = (step(0, 1_000), step(1, 2_000));
        let one_by_one = Metrics::default();
        one_by_one.describe_inputs(["clicks", "crm"]);
        one_by_one.observe(&a, 1, 10, 3_000);
        one_by_one.observe(&b, 2, 20, 4_000);
        let together = Metrics::default();
        together.describe_inputs(["clicks", "crm"]);
        together.observe_all([(&a, 1, 10, 3_000), (&b, 2, 20, 4_000)]);
        // The process collector's lines (memory, threads) differ between any two renders.
        let ours =
            |m: &Metrics| m.render().lines().filter(|l| l.starts_with("leadscore_")).collect::<Vec<_>>().join("\n");
        assert_eq!(ours(&together), ours(&one_by_one));
        assert_eq!(together.event_to_output.get_sample_sum(), 4.0, "each step against its own wall clock");
        assert_eq!(together.event_to_output.get_sample_count(), 2);
        assert_eq!(together.score_changes.get(), 3);
    }
}
