//! One simulated run: a seed chooses the configuration (guarantee, time mode,
//! instances, partitions, topics, batch size), the stream, and every fault
//! (crashes of processes and machines at any port call, stalls long enough to
//! lose the group, delivery and commit failures, compaction, lost unsynced
//! writes); the scheduler runs the real runtime of each instance on its own
//! thread, one port call at a time, until the stream is consumed and the
//! group is settled; then [`crate::check`] compares what was published and
//! stored with the reference. `faults` injects each scheduler step's faults.

use crate::broker::{Broker, Record};
use crate::check::{check, Outcome};
use crate::group::Group;
use crate::ports::{SimChangelog, SimClock, SimSink, SimSource, SimStoreHandle, SimWriter};
use crate::scenario::{Scenario, BASE, SCALE};
use crate::sched::{Baton, ThreadId};
use crate::world::{Caller, Faults, Sim, Slot, World};
use faults::faults;
use leadscore_core::Model;
use leadscore_pipeline::{Guarantee, Ports, RunError, Runtime, RuntimeSettings, TimeMode, Topics};
use leadscore_store::StateStore;
use leadscore_synth::Rng;
use leadscore_telemetry::Telemetry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

mod faults;

/// A member that does not poll for this long (simulated ms) leaves the group.
const SESSION_TIMEOUT: i64 = 2_000;
/// A transaction open this long (simulated ms) is aborted by the coordinator.
const TRANSACTION_TIMEOUT: i64 = 3 * SESSION_TIMEOUT;

/// Scheduler steps before a run counts as stuck.
const MAX_STEPS: u64 = 400_000;

/// Everything a seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub guarantee: Guarantee,
    pub time_mode: TimeMode,
    pub instances: usize,
    pub partitions: u32,
    pub topics: usize,
    pub leads: u64,
    pub events: usize,
    pub max_batch: usize,
    /// How often the store is committed (zero: every poll batch), and the
    /// staged bytes that force an early commit.
    pub commit_interval_ms: u64,
    pub staged_max_bytes: usize,
    /// Chance per scheduler step of a crash, and how many at most.
    pub crash_chance: f64,
    pub crashes: u32,
    /// Chance per step that an instance stalls (possibly past the session),
    /// and how many times at most.
    pub stall_chance: f64,
    pub stalls: u32,
    pub compaction: bool,
    pub faults: Faults,
    /// Threads a batch's partition steps run on (every batch is spread,
    /// however small, so that the simulation checks steps run side by side).
    pub step_threads: usize,
    /// The fewest changelog records a commit sends per iteration (small, so
    /// that commits send their changelogs over several iterations).
    pub changelog_slice_min: usize,
    /// Leads a restore holds before writing them early (the service's
    /// 20,000 is never reached by a simulated changelog).
    pub restore_chunk: usize,
}

impl Plan {
    /// The plan of a seed.
    pub fn from_seed(seed: u64) -> Plan {
        let mut r = Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
        let guarantee = if r.chance(0.5) { Guarantee::AtLeastOnce } else { Guarantee::ExactlyOnce };
        let time_mode = if r.chance(0.75) { TimeMode::EventTime } else { TimeMode::WallClock };
        Plan {
            seed,
            guarantee,
            time_mode,
            instances: 1 + r.below(3) as usize,
            partitions: 1 + r.below(4) as u32,
            topics: 1 + r.below(3) as usize,
            leads: 3 + r.below(6),
            events: 15 + r.below(66) as usize,
            max_batch: *r.pick(&[1, 2, 3, 5, 10, 50]),
            commit_interval_ms: *r.pick(&[0, 0, 10, 50, 200]),
            staged_max_bytes: *r.pick(&[1, 4096, 64 << 20]),
            crash_chance: *r.pick(&[0.0, 0.002, 0.005, 0.01, 0.02]),
            crashes: r.below(8) as u32,
            stall_chance: *r.pick(&[0.0, 0.0, 0.001, 0.003]),
            stalls: r.below(4) as u32,
            compaction: r.chance(0.5),
            faults: Faults {
                delivery_failure: *r.pick(&[0.0, 0.0, 0.005, 0.02]),
                commit_failure: *r.pick(&[0.0, 0.0, 0.01, 0.03]),
                os_sync: *r.pick(&[0.05, 0.3, 0.9]),
                sync_writes: r.chance(0.2),
            },
            // Drawn last, so that older seeds keep the rest of their plans.
            step_threads: *r.pick(&[1, 2, 3]),
            changelog_slice_min: *r.pick(&[1, 2, 256]),
            restore_chunk: *r.pick(&[1, 4, 20_000]),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: u64,
    pub crashes: u32,
    pub stalls: u32,
    pub restarts: u32,
    pub records: usize,
    pub generations: i64,
    /// Transactions committed (exactly once).
    pub transactions: u64,
}

/// A failed run: what broke, and the end of the trace.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub plan: String,
    pub message: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.message)?;
        writeln!(f, "plan: {}", self.plan)?;
        writeln!(f, "last events of the run:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay it with: LEADSCORE_SIM_SEED={} cargo test -p leadscore-sim --test simulation", self.seed)
    }
}

fn settings(plan: &Plan, topics: Topics) -> RuntimeSettings {
    RuntimeSettings {
        topics,
        time_mode: plan.time_mode,
        guarantee: plan.guarantee,
        max_batch: plan.max_batch,
        step_threads: plan.step_threads,
        parallel_min_messages: 0,
        changelog_slice_min: plan.changelog_slice_min,
        restore_chunk: plan.restore_chunk,
        commit_interval: Duration::from_millis(plan.commit_interval_ms),
        staged_max_bytes: plan.staged_max_bytes,
        poll_timeout: Duration::from_millis(100),
        tick_interval: Duration::from_millis(20),
        max_idle: Duration::ZERO,
        delivery_timeout: Duration::from_secs(30),
        restore_stall_timeout: Duration::from_secs(3600),
        local_state_max_age: Duration::from_millis(10 * 86_400_000),
        dead_letter_max_share: 1.0,
        admission: crate::scenario::ADMISSION,
        ..RuntimeSettings::default()
    }
}

/// Runs one instance incarnation's runtime until it dies or stops.
fn instance(caller: Caller<'_>, settings: &RuntimeSettings, model: &Model) {
    let telemetry = Telemetry::default();
    let store = SimStoreHandle { caller };
    let transactional = (settings.guarantee == Guarantee::ExactlyOnce).then(|| format!("instance-{}", caller.slot));
    let run = || -> Result<(), RunError> {
        let mut sink = SimSink::new(caller, settings.topics.clone(), transactional).map_err(RunError::Sink)?;
        let mut source = SimSource { caller, inputs: settings.topics.inputs.keys().cloned().collect() };
        let mut changelog = SimChangelog { caller, topic: settings.topics.changelog.clone() };
        let clock = SimClock { sim: caller.sim, base: BASE, scale: SCALE };
        let mut writer = SimWriter { store, pending: None };
        let mut ports = Ports {
            source: &mut source,
            sink: &mut sink,
            changelog: &mut changelog,
            clock: &clock,
            writer: &mut writer,
        };
        let mut runtime = Runtime::new(settings, model, &store, &telemetry, Duration::ZERO);
        loop {
            runtime.iteration(&mut ports)?;
        }
    };
    // A panic is a bug whatever the instance's state; caught, so that the
    // thread still leaves the scheduler (which would otherwise wait for its
    // turn request forever) and the seed fails with the panic's message.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    let mut w = caller.sim.lock();
    let result = result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        w.violations.push(format!("slot {} panicked: {what}", caller.slot));
        Err(RunError::Source(leadscore_pipeline::ports::PortError::Fatal(format!("panicked: {what}"))))
    });
    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
    if w.live(caller.slot, caller.incarnation) {
        let stopping = w.slots[caller.slot].stop;
        // A restartable failure (a delivery, a refused transaction): the
        // service restarts the loop; anything else is a bug.
        let expected = stopping
            || error.contains("could not be committed")
            || error.contains("were not delivered")
            || error.contains("refused the offsets")
            || error.contains("newer producer");
        if !expected {
            w.violations.push(format!("slot {} stopped with an unexpected error: {error}", caller.slot));
        }
        w.land_some(caller.slot);
        w.slots[caller.slot].alive = false;
        if let Some(m) = w.slots[caller.slot].member.take() {
            w.group.leave(m);
        }
        w.note(format!("slot {} stops: {error}", caller.slot));
    } else if !error.contains("simulated process is dead") && !error.is_empty() {
        w.note(format!("slot {} (dead) ended with: {error}", caller.slot));
    }
    drop(w);
    caller.sim.baton.exit(caller.thread);
}

/// Runs a plan; the failure, if any invariant broke.
pub fn run(plan: &Plan) -> Result<Report, Failure> {
    let model = leadscore_config::seed_model();
    let mut rng = Rng::new(plan.seed);
    let scenario = Scenario::generate(&mut rng, plan.leads, plan.events, plan.topics, plan.partitions);
    let topics = Topics { inputs: scenario.inputs.clone(), ..Topics::default() };
    let reference = scenario.reference(&model, &topics.score_changes, &topics.transitions);
    let settings = settings(plan, topics.clone());
    let mut broker = Broker::default();
    for t in topics.inputs.keys().chain([&topics.score_changes, &topics.transitions, &topics.dead_letters]) {
        broker.create_topic(t, plan.partitions);
    }
    broker.create_topic(&topics.changelog, plan.partitions);
    let world = World {
        now: 0,
        rng: Rng::new(rng.next_u64()),
        broker,
        group: Group::new(plan.partitions),
        slots: (0..plan.instances).map(|_| Slot::default()).collect(),
        faults: plan.faults.clone(),
        violations: Vec::new(),
        trace: Vec::new(),
        partitions: plan.partitions,
        final_owners: BTreeMap::new(),
    };
    let sim = Sim { world: Mutex::new(world), baton: Baton::default() };
    let mut report = Report::default();
    let converged = std::thread::scope(|scope| {
        let mut next_thread: ThreadId = 0;
        let mut restart_at: BTreeMap<usize, i64> = (0..plan.instances).map(|s| (s, 0)).collect();
        let mut next_input = 0;
        let mut crashes_left = plan.crashes;
        let mut stopping = false;
        let mut quiet_since: Option<i64> = None;
        for step in 0..MAX_STEPS {
            report.steps = step;
            let waiting = sim.baton.quiesce();
            let mut w = sim.lock();
            // Instances whose threads ended: restart them in a while.
            for s in 0..plan.instances {
                if !w.slots[s].alive && !restart_at.contains_key(&s) && !stopping {
                    let after = w.rng.below(SESSION_TIMEOUT as u64 * 3 / 2) as i64;
                    restart_at.insert(s, w.now + after);
                }
            }
            if stopping {
                if (0..plan.instances).all(|s| !w.slots[s].alive) && waiting.is_empty() {
                    return true;
                }
            } else {
                // Input due by now, stamped as produced.
                while next_input < scenario.messages.len() && scenario.messages[next_input].at <= w.now {
                    let m = &scenario.messages[next_input];
                    let record = Record {
                        key: m.key.clone(),
                        value: Some(m.payload.clone()),
                        headers: Vec::new(),
                        timestamp: w.wall(),
                        txn: None,
                        control: None,
                        compacted: false,
                    };
                    w.broker.append(&m.topic, m.partition, record, None);
                    next_input += 1;
                }
                let now = w.now;
                for m in w.group.expire(now, SESSION_TIMEOUT) {
                    w.note(format!("member {m} removed from the group (no poll for {SESSION_TIMEOUT} ms)"));
                }
                let wall = w.wall();
                for id in w.broker.expire_transactions(wall - TRANSACTION_TIMEOUT * SCALE, wall) {
                    w.note(format!("the transaction of {id} timed out and was aborted"));
                }
                faults(&mut w, plan, &mut crashes_left, &mut report);
                for s in restart_at.keys().copied().collect::<Vec<_>>() {
                    if restart_at[&s] > w.now || w.slots[s].alive {
                        continue;
                    }
                    restart_at.remove(&s);
                    next_thread += 1;
                    let slot = &mut w.slots[s];
                    slot.incarnation += 1;
                    slot.alive = true;
                    slot.member = None;
                    slot.owned.clear();
                    slot.paused.clear();
                    slot.positions.clear();
                    slot.unacked = 0;
                    slot.failed = false;
                    slot.markers.clear();
                    slot.in_flight.clear();
                    slot.reader = None;
                    slot.stalled_until = 0;
                    slot.thread = Some(next_thread);
                    let caller = Caller { sim: &sim, slot: s, incarnation: slot.incarnation, thread: next_thread };
                    if slot.incarnation > 1 {
                        report.restarts += 1;
                    }
                    w.note(format!("slot {s} starts (incarnation {})", caller.incarnation));
                    sim.baton.enter(next_thread);
                    let (settings, model) = (&settings, &model);
                    scope.spawn(move || instance(caller, settings, model));
                }
                if next_input == scenario.messages.len() && settled(&w, plan, &topics, &restart_at) {
                    let since = *quiet_since.get_or_insert(w.now);
                    // Wall clock: let timers run a while longer.
                    let linger = if plan.time_mode == TimeMode::WallClock { 300 } else { 0 };
                    if w.now - since >= linger {
                        stopping = true;
                        let owners = w.group.owners();
                        for (p, member) in owners {
                            if let Some(s) = w.slots.iter().position(|s| s.member == Some(member)) {
                                w.final_owners.insert(p, s);
                            }
                        }
                        for s in 0..plan.instances {
                            w.slots[s].stop = true;
                        }
                        w.note("settled: stopping every instance".to_string());
                    }
                } else {
                    quiet_since = None;
                }
            }
            // Grant a turn to a thread that is not stalled.
            let now = w.now;
            let runnable: Vec<ThreadId> = waiting
                .iter()
                .copied()
                .filter(|t| !w.slots.iter().any(|s| s.thread == Some(*t) && s.stalled_until > now))
                .collect();
            if runnable.is_empty() {
                w.now += 5;
                continue;
            }
            let chosen = *w.rng.pick(&runnable);
            w.now += w.rng.below(3) as i64;
            drop(w);
            sim.baton.grant(chosen);
        }
        // Stuck: stop everything so the threads end.
        let mut w = sim.lock();
        let why = unsettled(&w, plan, &topics, &restart_at).unwrap_or_default();
        w.note(format!("not settled: {why}"));
        for s in 0..plan.instances {
            w.slots[s].stop = true;
            w.slots[s].crash = Some(crate::world::Crash::Process);
        }
        drop(w);
        loop {
            let waiting = sim.baton.quiesce();
            let Some(t) = waiting.first().copied() else { break };
            sim.baton.grant(t);
        }
        false
    });
    let w = sim.lock();
    report.generations = w.group.generation;
    report.transactions = w.broker.committed;
    let plan_text = format!("{plan:?}");
    let fail = |message: String, w: &World| Failure {
        seed: plan.seed,
        plan: plan_text.clone(),
        message,
        trace: w.trace.iter().rev().take(60).rev().cloned().collect(),
    };
    if !converged {
        return Err(fail(format!("did not settle within {MAX_STEPS} scheduler steps"), &w));
    }
    match check(&w, plan, &scenario, &reference, &topics) {
        Outcome { violations, records } if violations.is_empty() => {
            report.records = records;
            Ok(report)
        }
        Outcome { violations, .. } => Err(fail(violations.join("\n"), &w)),
    }
}

/// Everything consumed and committed, the group settled, nobody stalled.
fn settled(w: &World, plan: &Plan, topics: &Topics, restart_at: &BTreeMap<usize, i64>) -> bool {
    unsettled(w, plan, topics, restart_at).is_none()
}

/// Why the run is not settled yet.
fn unsettled(w: &World, plan: &Plan, topics: &Topics, restart_at: &BTreeMap<usize, i64>) -> Option<String> {
    if !restart_at.is_empty() {
        return Some(format!("instances waiting to restart: {restart_at:?}"));
    }
    if !w.group.stable() {
        return Some("the group is rebalancing".into());
    }
    let members = w.group.members();
    for (i, s) in w.slots.iter().enumerate() {
        if !s.alive || s.crash.is_some() || s.stalled_until > w.now || s.in_transaction {
            return Some(format!("slot {i}: alive {}, in a transaction {}", s.alive, s.in_transaction));
        }
        if !s.member.is_some_and(|m| members.contains(&m)) {
            return Some(format!("slot {i} has not learnt it left the group"));
        }
        // A partition is paused while it restores: its local checkpoint may
        // already cover the inputs while its states are still being read.
        if !s.paused.is_empty() {
            return Some(format!("slot {i}: partitions {:?} paused (restoring)", s.paused));
        }
    }
    let owners = w.group.owners();
    if owners.len() != plan.partitions as usize {
        return Some(format!("partitions owned: {owners:?}"));
    }
    for (p, member) in owners {
        let Some(slot) = w.slots.iter().find(|s| s.member == Some(member)) else {
            return Some(format!("partition {p}: its owner {member} is no slot's member"));
        };
        let checkpoint = slot.store.current.checkpoint(p).ok().flatten().unwrap_or_default();
        for topic in topics.inputs.keys() {
            let end = w.broker.log(topic, p).map_or(0, |l| l.end());
            let at = checkpoint.next_offsets.get(topic).copied().unwrap_or(0);
            if at < end {
                return Some(format!("partition {p}: {topic} consumed to {at} of {end}"));
            }
        }
    }
    None
}
