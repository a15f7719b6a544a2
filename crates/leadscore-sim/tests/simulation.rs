//! The bounded batch of the deterministic simulation that CI runs: a few
//! thousand seeds, each a whole run of one to three instances with crashes,
//! stalls, rebalances and failed deliveries, checked against the offline
//! scorer. `LEADSCORE_SIM_SEED=<n>` runs that one seed; `LEADSCORE_SIM_SEEDS`
//! sets the batch size; the long soak is `cargo run --release -p leadscore-sim`.

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
