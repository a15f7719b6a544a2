//! Deterministic simulation of leadscore's runtime, in the spirit of
//! FoundationDB's simulator and TigerBeetle's VOPR: the real runtime (the
//! loop of `leadscore-pipeline`, unchanged) of several instances runs against
//! a simulated broker and simulated disks, one port call at a time, in an
//! order chosen by a seed, while the seed also crashes processes and machines
//! at any call (inside a commit too), stalls instances past their session,
//! fails deliveries and commits, compacts the changelog and loses unsynced
//! writes. After each run the published records and the stored states are
//! checked against the offline scorer ([`check`]). A failure prints its seed;
//! `LEADSCORE_SIM_SEED=<n>` replays it exactly.
//!
//! # Layout
//!
//! - [`broker`]: logs, transactions, read_committed, fencing, compaction.
//! - [`group`]: the consumer group (eager rebalances, generations, offsets).
//! - [`store`]: a disk that a machine crash rolls back to its last sync.
//! - [`sched`]: one thread per instance, one turn at a time.
//! - [`world`]: the state every port acts on.
//! - [`ports`]: the runtime's ports on that world.
//! - [`scenario`]: a seed's stream and its reference.
//! - [`harness`]: a run: the plan, the scheduler loop, the faults.
//! - [`check`]: the invariants.

pub mod broker;
pub mod check;
pub mod group;
pub mod harness;
pub mod ports;
pub mod scenario;
pub mod sched;
pub mod store;
pub mod world;

pub use harness::{run, Failure, Plan, Report};

/// Runs `seeds` seeds from `first`, stopping at the first failure.
pub fn run_seeds(first: u64, seeds: u64, mut progress: impl FnMut(u64, &Report)) -> Result<Vec<Report>, Box<Failure>> {
    let mut reports = Vec::new();
    for seed in first..first.saturating_add(seeds) {
        let report = run(&Plan::from_seed(seed)).map_err(Box::new)?;
        progress(seed, &report);
        reports.push(report);
    }
    Ok(reports)
}
