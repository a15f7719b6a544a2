//! The bounded batch of the deterministic simulation that CI runs: a few
//! thousand seeds, each a whole run of one to three instances with crashes,
//! stalls, rebalances and failed deliveries, checked against the offline
//! scorer. `LEADSCORE_SIM_SEED=<n>` runs that one seed; `LEADSCORE_SIM_SEEDS`
//! sets the batch size; the long soak is `cargo run --release -p leadscore-sim`.
//! Also one fixed plan that counts exactly once's transactions.

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_seed_keeps_every_guarantee() {
    if let Some(seed) = env("LEADSCORE_SIM_SEED") {
        if let Err(f) = leadscore_sim::run(&leadscore_sim::Plan::from_seed(seed)) {
            panic!("{f}");
        }
        return;
    }
    let seeds = env("LEADSCORE_SIM_SEEDS").unwrap_or(2000);
    let first = env("LEADSCORE_SIM_FROM").unwrap_or(1);
    match leadscore_sim::run_seeds(first, seeds, |_, _| {}) {
        Ok(reports) => {
            let crashes: u32 = reports.iter().map(|r| r.crashes).sum();
            let restarts: u32 = reports.iter().map(|r| r.restarts).sum();
            let stalls: u32 = reports.iter().map(|r| r.stalls).sum();
            eprintln!("{} seeds: {crashes} crashes, {restarts} restarts, {stalls} stalls", reports.len());
            assert!(crashes as u64 > seeds, "the batch crashes instances ({crashes} crashes)");
        }
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn exactly_once_commits_one_transaction_per_commit_interval_not_per_batch() {
    // One instance, no faults, a poll batch per message: a transaction per
    // batch would commit about as many transactions as there are events.
    let plan = leadscore_sim::Plan {
        guarantee: leadscore_pipeline::Guarantee::ExactlyOnce,
        time_mode: leadscore_pipeline::TimeMode::EventTime,
        instances: 1,
        events: 80,
        max_batch: 1,
        commit_interval_ms: 200,
        staged_max_bytes: 64 << 20,
        crash_chance: 0.0,
        crashes: 0,
        stall_chance: 0.0,
        stalls: 0,
        faults: leadscore_sim::world::Faults {
            delivery_failure: 0.0,
            commit_failure: 0.0,
            ..leadscore_sim::Plan::from_seed(1).faults
        },
        ..leadscore_sim::Plan::from_seed(1)
    };
    let report = leadscore_sim::run(&plan).unwrap_or_else(|f| panic!("{f}"));
    assert!(report.transactions > 0, "it committed");
    assert!(
        report.transactions * 4 < plan.events as u64,
        "{} transactions for {} events in batches of one",
        report.transactions,
        plan.events
    );
}
