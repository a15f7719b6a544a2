//! The simulated world every instance's ports act on: the broker, the
//! consumer group, each instance's disk and client state, the clock, and the
//! faults the scheduler has decided. One lock, taken only by the thread that
//! holds the turn (see [`crate::sched`]).

use crate::broker::{Broker, Record};
use crate::group::{Group, MemberId};
use crate::sched::{Baton, ThreadId};
use crate::store::SimStore;
use leadscore_pipeline::ports::PortError;
use leadscore_synth::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

/// Whether every step is traced to standard error (`LEADSCORE_SIM_TRACE`).
pub fn tracing() -> bool {
    std::env::var_os("LEADSCORE_SIM_TRACE").is_some()
}

/// How an instance dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process is killed: its disk keeps every write.
    Process,
    /// The machine goes down: writes not yet synced may be lost.
    Machine,
}

/// The client and disk state of one instance (all its incarnations).
#[derive(Debug, Default)]
pub struct Slot {
    /// The incarnation running now.
    pub incarnation: u64,
    pub alive: bool,
    pub store: SimStore,
    pub member: Option<MemberId>,
    /// The group generation of its last assignment.
    pub generation: i64,
    /// Partitions it was told it owns.
    pub owned: BTreeSet<u32>,
    pub paused: BTreeSet<u32>,
    /// Next offset to fetch per input topic-partition.
    pub positions: BTreeMap<(String, u32), i64>,
    /// Records sent since the last successful flush or commit.
    pub unacked: u64,
    /// Records sent without a transaction and not yet on the broker (an
    /// idempotent producer's queue): they land by partition, in order, at a
    /// flush, at an await of a later record of their partition, or, when the
    /// instance dies, each partition's first few of them.
    pub in_flight: Vec<InFlight>,
    /// A record failed to be delivered since the last flush.
    pub failed: bool,
    /// Marker offsets delivered since the last flush or commit.
    pub markers: BTreeMap<u32, i64>,
    /// The producer epoch of its transactional id (exactly once).
    pub epoch: Option<u32>,
    pub in_transaction: bool,
    /// The changelog reader: partition and next offset.
    pub reader: Option<(u32, i64)>,
    /// Dies at its next port call.
    pub crash: Option<Crash>,
    /// Stops cleanly at its next poll.
    pub stop: bool,
    /// Not granted turns until then (a stalled process: GC, swap, SIGSTOP).
    pub stalled_until: i64,
    /// The thread of the running incarnation.
    pub thread: Option<ThreadId>,
}

/// A record sent and not yet acknowledged.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub topic: String,
    pub partition: u32,
    pub record: Record,
    /// A changelog checkpoint marker (its offset is reported once it lands).
    pub marker: bool,
}

/// Knobs that vary per seed.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A record fails to be delivered.
    pub delivery_failure: f64,
    /// A transaction commit fails (and must be aborted).
    pub commit_failure: f64,
    /// The operating system writes the disk back, per store write.
    pub os_sync: f64,
    /// The store fsyncs every write.
    pub sync_writes: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct World {
    /// Simulated milliseconds since the start.
    pub now: i64,
    pub rng: Rng,
    pub broker: Broker,
    pub group: Group,
    pub slots: Vec<Slot>,
    pub faults: Faults,
    /// Online invariant violations (checked as they happen).
    pub violations: Vec<String>,
    /// What happened, for a failure's report.
    pub trace: Vec<String>,
    pub partitions: u32,
    /// Which slot owned each partition when the run settled.
    pub final_owners: BTreeMap<u32, usize>,
}

impl World {
    /// The wall clock (event-time milliseconds) at the simulated now.
    pub fn wall(&self) -> i64 {
        crate::scenario::BASE + self.now * crate::scenario::SCALE
    }

    pub fn note(&mut self, what: impl Into<String>) {
        let line = format!("{:>7} {}", self.now, what.into());
        if tracing() {
            eprintln!("{line}");
        }
        self.trace.push(line);
    }

    /// Whether the thread of `slot`'s `incarnation` may act.
    pub fn live(&self, slot: usize, incarnation: u64) -> bool {
        let s = &self.slots[slot];
        s.alive && s.incarnation == incarnation
    }

    /// Puts on the broker, in the order sent, the records of `slot` in
    /// flight that `lands` picks; the others stay in flight. `lands` sees a
    /// record's index among those in flight and must pick, per partition, a
    /// prefix (a producer keeps each partition in order).
    pub fn land(&mut self, slot: usize, mut lands: impl FnMut(usize, &InFlight) -> bool) {
        let in_flight = std::mem::take(&mut self.slots[slot].in_flight);
        let mut kept = Vec::new();
        for (i, f) in in_flight.into_iter().enumerate() {
            if !lands(i, &f) {
                kept.push(f);
                continue;
            }
            let key = tracing().then(|| String::from_utf8_lossy(&f.record.key).into_owned());
            let value = tracing().then(|| f.record.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()));
            let offset = self.broker.append(&f.topic, f.partition, f.record, None);
            if let (Some(key), Some(value)) = (key, value) {
                let what = if f.marker { format!("marker {value:?}") } else { format!("{key:?}") };
                self.note(format!("slot {slot} lands {}/{} @{offset}: {what}", f.topic, f.partition));
            }
            if f.marker {
                self.slots[slot].markers.insert(f.partition, offset);
            }
        }
        self.slots[slot].in_flight = kept;
    }

    /// An instance that ends (killed, or its loop stopped) leaves on the
    /// broker, per partition, a random number of the first records it had in
    /// flight; the rest are lost.
    pub fn land_some(&mut self, slot: usize) {
        let mut prefix: BTreeMap<(String, u32), usize> = BTreeMap::new();
        for f in &self.slots[slot].in_flight {
            *prefix.entry((f.topic.clone(), f.partition)).or_default() += 1;
        }
        for n in prefix.values_mut() {
            *n = self.rng.below(*n as u64 + 1) as usize;
        }
        self.land(slot, |_, f| {
            let n = prefix.get_mut(&(f.topic.clone(), f.partition)).expect("counted");
            let lands = *n > 0;
            *n = n.saturating_sub(1);
            lands
        });
        self.slots[slot].in_flight.clear();
    }

    /// Kills `slot` now.
    pub fn kill(&mut self, slot: usize, crash: Crash) {
        self.land_some(slot);
        self.slots[slot].alive = false;
        self.slots[slot].in_transaction = false;
        if crash == Crash::Machine {
            let mut rng = Rng::new(self.rng.next_u64());
            self.slots[slot].store.machine_crash(&mut rng);
        }
        self.note(format!("slot {slot} crashes ({crash:?})"));
    }
}

/// The world and the baton that orders access to it.
#[derive(Debug)]
pub struct Sim {
    pub world: Mutex<World>,
    pub baton: Baton,
}

/// The error a dead incarnation's port calls return.
pub fn dead() -> PortError {
    PortError::Fatal("the simulated process is dead".into())
}

impl Sim {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who is calling: an incarnation of an instance, on its thread.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'s> {
    pub sim: &'s Sim,
    pub slot: usize,
    pub incarnation: u64,
    pub thread: ThreadId,
}

impl Caller<'_> {
    /// Runs `f` on the world during one granted turn. A dead incarnation gets
    /// an error without a turn; one the scheduler marked to crash dies now,
    /// after `f` decided what of the call's effects happen (`f` sees the
    /// pending crash through [`World::slots`]).
    pub fn call<R>(&self, f: impl FnOnce(&mut World) -> Result<R, PortError>) -> Result<R, PortError> {
        if !self.sim.lock().live(self.slot, self.incarnation) {
            return Err(dead());
        }
        self.sim.baton.acquire(self.thread);
        let result = {
            let mut w = self.sim.lock();
            if !w.live(self.slot, self.incarnation) {
                Err(dead())
            } else {
                let r = f(&mut w);
                if let Some(crash) = w.slots[self.slot].crash.take() {
                    w.kill(self.slot, crash);
                    Err(dead())
                } else {
                    r
                }
            }
        };
        self.sim.baton.release(self.thread);
        result
    }
}
