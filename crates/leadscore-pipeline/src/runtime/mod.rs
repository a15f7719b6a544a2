//! The runtime: the consume, process, publish, commit loop, written against
//! the [`crate::ports`] so that it runs the same on Kafka and RocksDB, in
//! tests and in the deterministic simulation. docs/runtime.md describes the
//! commit protocol of each guarantee, step by step, and what every crash point
//! leaves behind.
//!
//! One [`Runtime::iteration`]:
//!
//! 1. polls the source: messages, assignments and revocations, in the order
//!    they happened (messages of a partition reported before its revocation
//!    are dropped with it);
//! 2. restores newly owned partitions from the changelog, a bounded amount of
//!    work per iteration (the group keeps being polled meanwhile), then
//!    resumes them;
//! 3. releases each partition group's messages in event-time order across
//!    its input topics ([`crate::aligner`]) and processes them, one step per
//!    partition, with the wall-clock timers due (the steps of a large batch
//!    on up to `step_threads` threads, their results in partition order);
//! 4. publishes the steps (`commit`): sends the outputs (exactly once, in the
//!    commit's open transaction) and stages the states, timers and
//!    checkpoints in memory, where the next steps read them;
//! 5. once per commit interval (and before a revocation, a restore or a
//!    stop), commits: waits until every output sent is acknowledged (exactly
//!    once: commits the transaction), then
//!    writes everything staged to the store in one batch, on the store
//!    writer's thread while the loop goes on. At least once in event time
//!    the wait for acknowledgements is pipelined too: the commit is sealed,
//!    the loop goes on, and a later iteration hands it to the writer once it
//!    is acknowledged.
//!
//! - [`settings`]: what the runtime is told.
//! - `membership`: assignments, revocations, restores, activation.
//! - `restore`: one partition's changelog restore.
//! - `commit`: the commit protocol of each guarantee.
//! - `parallel`: a batch's partition steps on a few threads.
//! - `poll`: how long each poll may wait.
//! - `breaker`: the circuit breaker against floods of bad input.
//! - `error`: why it stopped.

mod breaker;
mod commit;
mod commit_state;
mod error;
mod membership;
mod parallel;
mod poll;
mod restore;
pub mod settings;

pub use error::RunError;
pub use settings::{Guarantee, RuntimeSettings};

use crate::aligner::{Aligner, Arrival, Position};
use crate::messages::OutputRecord;
use crate::ports::{Changelog, Clock, Sink, Source, SourceEvent};
use crate::processor::{Processor, StateCache, Step, StepContext, TimeMode};
use breaker::{Breaker, DeadLetterLog};
use commit_state::{ChangelogLeft, Sealed, Staged};
use leadscore_core::{Millis, Model};
use leadscore_store::overlay::Overlay;
use leadscore_store::{Counts, Partition, Replay, StateStore};
use leadscore_telemetry::{Tally, Telemetry};
use restore::RestoreTask;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a decoded state is assumed to take until the cache has measured
/// its states.
const ASSUMED_STATE_BYTES: usize = 1024;

/// The ports one runtime works with.
pub struct Ports<'p> {
    pub source: &'p mut dyn Source,
    pub sink: &'p mut dyn Sink,
    pub changelog: &'p mut dyn Changelog,
    pub clock: &'p dyn Clock,
    /// Writes commits to the store, off the loop's thread.
    pub writer: &'p mut dyn leadscore_store::writer::StoreWriter,
}

/// An owned partition group.
#[derive(Debug, Default)]
struct Owned {
    /// Restored and consuming.
    active: bool,
    counts: Counts,
    /// The input offsets of the last commit.
    next_offsets: BTreeMap<String, i64>,
    /// This owner's epoch of the partition (see `Checkpoint::epoch`).
    epoch: Option<i64>,
    /// At least once, wall clock: a step was in flight when the previous
    /// owner (or incarnation) stopped. Until its inputs are applied again, no
    /// timer fires except at its recorded tick, so that it publishes the same
    /// records.
    replay: Option<Replay>,
    /// The replayed step's tick, to fire before anything else.
    replay_tick: Option<Millis>,
    /// The changelog reader was told it is about to be restored.
    prepared: bool,
}

/// A step of one partition, and the tick it was computed with.
struct Planned {
    partition: Partition,
    step: Step,
    tick: Option<Millis>,
}

/// Where the loop's time went, logged at shutdown for capacity planning.
#[derive(Debug, Default)]
struct LoopTime {
    poll: Duration,
    /// Messages decoded and merged, and assignment changes (with their commits).
    decode: Duration,
    restore: Duration,
    process: Duration,
    timers: Duration,
    publish: Duration,
    commit: Duration,
    batches: u64,
    messages: u64,
}

/// See the module documentation.
pub struct Runtime<'a> {
    settings: &'a RuntimeSettings,
    store: &'a dyn StateStore,
    telemetry: &'a Telemetry,
    processor: Processor<'a>,
    /// Store writes of published steps, until the next commit.
    pending: Overlay<'a>,
    /// Decoded states between steps (see [`crate::processor::StateCache`]):
    /// with a changelog per commit, their changes are staged at each commit;
    /// with one per step, each step staged them, and the cache saves reads.
    cache: StateCache,
    /// How many states the cache may hold before a commit comes early (its
    /// byte budget over the states' mean size at the last commit).
    cache_limit: usize,
    staged: Option<Staged>,
    /// A commit sealed and not yet written (its writes are the overlay's
    /// sealed layer).
    sealed: Option<Sealed>,
    /// Changelog partition -> offset of the last checkpoint marker delivered
    /// since the last commit.
    acked: BTreeMap<Partition, i64>,
    /// At least once in wall clock: the checkpoint markers of the steps
    /// published since the last batch, held until their outputs are
    /// acknowledged (see [`Runtime::publish`]).
    held_markers: Vec<OutputRecord>,
    /// Partitions being revoked: the commit before the revocation writes
    /// their store and changelog but records no offsets of theirs in the
    /// group. The group may already have given them to a new owner, which
    /// restored from an earlier changelog marker; should that owner fail
    /// before its first commit, the next one would start from these offsets,
    /// past its restored checkpoint, and skip what lies between (found by
    /// the simulation once records landed out of order).
    revoking: BTreeSet<Partition>,
    aligner: Aligner,
    owned: BTreeMap<Partition, Owned>,
    /// Revoked partitions whose local state is kept until the next assignment
    /// says whether they come back.
    revoked: BTreeSet<Partition>,
    /// The first assignment of this run was seen (local leftovers dropped).
    joined: bool,
    restoring: Option<RestoreTask>,
    /// Some partition group is holding messages back.
    merging: bool,
    /// When the first of those waits ends by itself (a settle or `max_idle`
    /// runs out), on the loop's monotonic clock in milliseconds: the poll
    /// returns then, rather than up to `SHORT_POLL` later.
    merge_wakes_at: Option<Millis>,
    /// Partition groups paused because their next message waits for its
    /// writer schema.
    schema_paused: BTreeSet<Partition>,
    breaker: Breaker,
    dead_letters: DeadLetterLog,
    last_tick: Duration,
    last_report: Duration,
    time: LoopTime,
    events: Vec<SourceEvent>,
    /// The messages a batch releases, every partition's one after the other:
    /// one buffer used again by every batch, rather than one per partition
    /// and batch in memory the kernel zeroes first.
    ready: Vec<Arrival>,
}

impl<'a> Runtime<'a> {
    /// `settle`: the source's [`crate::ports::Source::settle`].
    pub fn new(
        settings: &'a RuntimeSettings,
        model: &'a Model,
        store: &'a dyn StateStore,
        telemetry: &'a Telemetry,
        settle: Duration,
    ) -> Runtime<'a> {
        let processor = Processor {
            formats: settings.formats.clone(),
            admission: settings.admission,
            changelog_per_step: !settings.changelog_per_commit(),
            limits: settings.limits,
            ..Processor::new(model, store, &settings.topics, settings.time_mode)
        };
        telemetry.metrics.describe_model(model);
        telemetry.metrics.describe_inputs(settings.topics.inputs.keys().map(String::as_str));
        Runtime {
            settings,
            store,
            telemetry,
            processor,
            pending: Overlay::new(store),
            // Bounded in bytes at each commit (`commit::flush_cache`), not
            // by the offline scorer's count of states.
            cache: StateCache::new(usize::MAX),
            cache_limit: settings.staged_max_bytes / ASSUMED_STATE_BYTES,
            staged: None,
            sealed: None,
            acked: BTreeMap::new(),
            held_markers: Vec::new(),
            revoking: BTreeSet::new(),
            aligner: Aligner::new(
                settings.topics.inputs.keys().cloned(),
                settings.max_idle.as_millis() as Millis,
                settle.as_millis() as Millis,
            ),
            owned: BTreeMap::new(),
            revoked: BTreeSet::new(),
            joined: false,
            restoring: None,
            merging: false,
            merge_wakes_at: None,
            schema_paused: BTreeSet::new(),
            breaker: Breaker::new(settings.dead_letter_window, settings.dead_letter_max_share),
            dead_letters: DeadLetterLog::default(),
            last_tick: Duration::ZERO,
            last_report: Duration::ZERO,
            time: LoopTime::default(),
            events: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Runs iterations until `shutdown` is set, then returns (every batch
    /// taken is committed by then).
    pub fn run(&mut self, ports: &mut Ports<'_>, shutdown: &AtomicBool) -> Result<(), RunError> {
        tracing::info!(
            guarantee = self.settings.guarantee.as_str(), topics = ?self.settings.topics.inputs.keys().collect::<Vec<_>>(),
            "consuming"
        );
        while !shutdown.load(Ordering::Relaxed) {
            self.iteration(ports)?;
        }
        self.commit_staged(ports)?;
        let t = &self.time;
        tracing::info!(
            poll_seconds = t.poll.as_secs_f64(),
            decode_seconds = t.decode.as_secs_f64(),
            restore_seconds = t.restore.as_secs_f64(),
            process_seconds = t.process.as_secs_f64(),
            wall_clock_timer_seconds = t.timers.as_secs_f64(),
            publish_seconds = t.publish.as_secs_f64(),
            commit_seconds = t.commit.as_secs_f64(),
            batches = t.batches,
            messages = t.messages,
            "where the time went since the start"
        );
        tracing::info!("shutting down: the last batch is committed");
        Ok(())
    }

    /// One pass of the loop; see the module documentation.
    pub fn iteration(&mut self, ports: &mut Ports<'_>) -> Result<(), RunError> {
        let started = ports.clock.elapsed();
        let timeout = self.poll_timeout(started);
        let mut events = std::mem::take(&mut self.events);
        ports.source.poll(timeout, self.settings.max_batch, &mut events).map_err(RunError::Source)?;
        let polled = ports.clock.elapsed();
        self.time.poll += polled.saturating_sub(started);
        for event in events.drain(..) {
            match event {
                SourceEvent::Message(m) => {
                    if self.owned.contains_key(&m.partition) {
                        self.time.messages += 1;
                        let arrival = Arrival { fetched_at: polled.as_millis() as Millis, ..self.processor.decode(m) };
                        self.aligner.push(arrival);
                    } else {
                        tracing::debug!(topic = %m.topic, partition = m.partition, "message of a partition not owned");
                    }
                }
                SourceEvent::Assigned(partitions) => self.assigned(partitions)?,
                SourceEvent::Revoked(partitions) => {
                    // What is staged may include the revoked partitions':
                    // committed while they are still this instance's, but
                    // not in the group (see `revoking`).
                    self.revoking.extend(partitions.iter().copied());
                    let committed = self.commit_staged(ports);
                    self.revoking.clear();
                    committed?;
                    self.revoked(ports, partitions)
                }
            }
        }
        self.events = events;
        let received = ports.clock.elapsed();
        self.time.decode += received.saturating_sub(polled);
        self.restore_some(ports)?;
        let restored = ports.clock.elapsed();
        self.time.restore += restored.saturating_sub(received);

        let steps = self.process(ports)?;
        let processed = ports.clock.elapsed();
        self.time.process += processed.saturating_sub(restored);
        let mut steps = steps;
        if self.settings.time_mode == TimeMode::WallClock
            && processed.saturating_sub(self.last_tick) >= self.settings.tick_interval
        {
            self.last_tick = processed;
            self.tick(ports, &mut steps)?;
            self.time.timers += ports.clock.elapsed().saturating_sub(processed);
        }
        if !steps.is_empty() {
            self.time.batches += 1;
            let publishing = ports.clock.elapsed();
            self.publish(ports, steps)?;
            self.time.publish += ports.clock.elapsed().saturating_sub(publishing);
        }
        self.commit_when_due(ports)?;
        if processed.saturating_sub(self.last_report) >= self.settings.tick_interval {
            self.last_report = processed;
            self.report(ports);
        }
        Ok(())
    }

    /// Releases each active partition group's messages, then processes them,
    /// one step per partition, the steps of a large batch side by side
    /// ([`parallel`]); the steps come back in partition order either way.
    fn process(&mut self, ports: &mut Ports<'_>) -> Result<Vec<Planned>, RunError> {
        let now = ports.clock.now();
        let monotonic = ports.clock.elapsed().as_millis() as Millis;
        let mut jobs = Vec::new();
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let mut merging = false;
        let mut wakes_at: Option<Millis> = None;
        let pending: BTreeSet<Partition> = self.aligner.pending().into_iter().collect();
        let candidates: Vec<Partition> = self
            .owned
            .iter()
            .filter(|(p, o)| o.active && (o.replay_tick.is_some() || pending.contains(p)))
            .map(|(p, _)| *p)
            .collect();
        for partition in candidates {
            let processor = &self.processor;
            self.aligner.retry_waiting(partition, &mut |m| processor.decode(m));
            let start = ready.len();
            let source = &mut *ports.source;
            let release = self.aligner.release(
                partition,
                monotonic,
                &mut |topic, next| source.position(topic, partition, next),
                &mut ready,
            );
            if release.idle_expired {
                self.telemetry.metrics.merge_idle_expired.inc();
            }
            self.schema_wait(ports.source, partition, release.schema_wait.clone())?;
            if let Some(until) = release.until {
                wakes_at = Some(wakes_at.map_or(until, |w| w.min(until)));
            }
            if let Some((topic, position)) = release.waiting {
                merging = true;
                if position != Position::CaughtUp {
                    tracing::trace!(partition, topic = %self.aligner.topics()[topic], ?position, "waiting for a topic");
                }
            }
            let owned = self.owned.get_mut(&partition).expect("a candidate is owned");
            let replay_tick = owned.replay_tick.take();
            if ready.len() == start && replay_tick.is_none() {
                continue;
            }
            let tick = match (self.settings.time_mode, replay_tick) {
                (TimeMode::EventTime, _) => None,
                (TimeMode::WallClock, Some(t)) => Some(t),
                (TimeMode::WallClock, None) if owned.replay.is_some() => None,
                (TimeMode::WallClock, None) => Some(now),
            };
            jobs.push((partition, start..ready.len(), tick));
        }
        self.merging = merging;
        self.merge_wakes_at = wakes_at;
        self.telemetry.metrics.merge_held.set(self.aligner.buffered() as i64);

        let messages = ready.len();
        let threads = if messages >= self.settings.parallel_min_messages { self.settings.step_threads } else { 1 };
        // Steps read through what earlier batches staged.
        let processor = Processor { store: &self.pending, cache: Some(&self.cache), ..self.processor.clone() };
        let owned = &self.owned;
        let results = parallel::map_ordered(jobs, threads, |(partition, range, tick)| {
            let o = &owned[&partition];
            let ctx = StepContext { tick, epoch: o.epoch, replay_until: o.replay.as_ref().map(|r| &r.until) };
            (partition, tick, processor.process_arrivals(partition, &ready[range], ctx))
        });
        ready.clear();
        self.ready = ready;
        let mut steps = Vec::with_capacity(results.len());
        for (partition, tick, step) in results {
            let step = step?;
            if step.messages == 0 && step.stats.timers_fired == 0 && !step.swept {
                continue;
            }
            steps.push(Planned { partition, step, tick });
        }
        Ok(steps)
    }

    /// Pauses a partition group whose next message waits for its writer
    /// schema (so that fetched messages do not pile up while the registry is
    /// down), and resumes it once that message is decoded.
    fn schema_wait(
        &mut self,
        source: &mut dyn crate::ports::Source,
        partition: Partition,
        wait: Option<crate::aligner::SchemaWait>,
    ) -> Result<(), RunError> {
        match (wait, self.schema_paused.contains(&partition)) {
            (Some(w), false) => {
                tracing::warn!(
                    partition, schema_id = w.schema_id, reason = %w.why,
                    "pausing the partition until the writer schema of its next message is known"
                );
                source.pause(partition).map_err(RunError::Source)?;
                self.schema_paused.insert(partition);
            }
            (None, true) => {
                tracing::info!(partition, "writer schema known: resuming the partition");
                source.resume(partition).map_err(RunError::Source)?;
                self.schema_paused.remove(&partition);
            }
            _ => {}
        }
        self.telemetry.metrics.schema_waiting.set(self.schema_paused.len() as i64);
        Ok(())
    }

    /// Wall clock: fires the timers due by now in every active partition that
    /// has no step in this batch (and is not replaying a step).
    fn tick(&mut self, ports: &mut Ports<'_>, steps: &mut Vec<Planned>) -> Result<(), RunError> {
        let now = ports.clock.now();
        let stepped: BTreeSet<Partition> = steps.iter().map(|s| s.partition).collect();
        for (&partition, owned) in &self.owned {
            if !owned.active || owned.replay.is_some() || stepped.contains(&partition) {
                continue;
            }
            let ctx = StepContext { tick: Some(now), epoch: owned.epoch, replay_until: None };
            let processor = Processor { store: &self.pending, cache: Some(&self.cache), ..self.processor.clone() };
            let step = processor.tick_with(partition, ctx)?;
            if step.stats.timers_fired > 0 || step.swept {
                steps.push(Planned { partition, step, tick: Some(now) });
            }
        }
        Ok(())
    }

    /// Every tick interval: the client's view of the brokers, consumer lag,
    /// and the dead-letter summary.
    fn report(&mut self, ports: &mut Ports<'_>) {
        let health = ports.source.health();
        self.telemetry.status.brokers_down.store(health.brokers_down, Ordering::Relaxed);
        for (topic, partition, behind) in health.lag {
            if self.settings.topics.inputs.contains_key(&topic) && self.owned.contains_key(&partition) {
                self.telemetry
                    .metrics
                    .consumer_lag
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set(behind);
            }
        }
        self.dead_letters.report(ports.clock.elapsed());
    }

    /// The gauges kept from the owned partitions' counts, and who is active.
    fn export_counts(&self) {
        let mut total = Counts::default();
        for o in self.owned.values().filter(|o| o.active) {
            total.add(&o.counts);
        }
        self.telemetry.metrics.set_counts(&total);
        let active: BTreeSet<Partition> = self.owned.iter().filter(|(_, o)| o.active).map(|(p, _)| *p).collect();
        self.telemetry.metrics.assigned_partitions.set(active.len() as i64);
        let restoring = self.owned.len() - active.len();
        self.telemetry.status.restoring.store(restoring as i64, Ordering::Relaxed);
        self.telemetry.status.set_owned(active);
    }

    fn has_restores_queued(&self) -> bool {
        self.owned.values().any(|o| !o.active)
    }
}
