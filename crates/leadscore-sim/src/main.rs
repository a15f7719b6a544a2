//! `leadscore-sim`: the long soak. Runs many seeds of the deterministic
//! simulation and stops at the first failure, printing its seed and how to
//! replay it.
//!
//! ```sh
//! cargo run --release -p leadscore-sim -- --seeds 100000 [--from 1]
//! cargo run --release -p leadscore-sim -- --seed 4242      # one seed, verbose
//! ```

use std::process::ExitCode;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<u64> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).and_then(|v| v.parse().ok())
}

fn main() -> ExitCode {
    // The runtime's own log (RUST_LOG), beside the simulation's trace.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("leadscore-sim [--seeds N] [--from FIRST] | --seed SEED");
        return ExitCode::SUCCESS;
    }
    if let Some(seed) = arg(&args, "--seed") {
        let plan = leadscore_sim::Plan::from_seed(seed);
        println!("{plan:?}");
        if args.iter().any(|a| a == "--dump") {
            // The stream, as produced.
            let mut rng = leadscore_synth::Rng::new(seed);
            let s = leadscore_sim::scenario::Scenario::generate(
                &mut rng,
                plan.leads,
                plan.events,
                plan.topics,
                plan.partitions,
            );
            for m in &s.messages {
                println!("{:>6} {}/{} {}", m.at, m.topic, m.partition, String::from_utf8_lossy(&m.payload));
            }
        }
        return match leadscore_sim::run(&plan) {
            Ok(r) => {
                println!("seed {seed}: ok {r:?}");
                ExitCode::SUCCESS
            }
            Err(f) => {
                eprintln!("{f}");
                ExitCode::FAILURE
            }
        };
    }
    let seeds = arg(&args, "--seeds").unwrap_or(10_000);
    let first = arg(&args, "--from").unwrap_or(1);
    let started = Instant::now();
    let mut last = Instant::now();
    let (mut crashes, mut stalls) = (0u64, 0u64);
    let result = leadscore_sim::run_seeds(first, seeds, |seed, r| {
        crashes += u64::from(r.crashes);
        stalls += u64::from(r.stalls);
        if last.elapsed().as_secs() >= 5 {
            last = Instant::now();
            let done = seed - first + 1;
            eprintln!(
                "leadscore-sim: {done}/{seeds} seeds ok ({:.0}/s), {crashes} crashes, {stalls} stalls",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    });
    match result {
        Ok(reports) => {
            eprintln!(
                "leadscore-sim: {} seeds ok in {:.0} s ({crashes} crashes, {stalls} stalls, {} restarts)",
                reports.len(),
                started.elapsed().as_secs_f64(),
                reports.iter().map(|r| u64::from(r.restarts)).sum::<u64>()
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{f}");
            ExitCode::FAILURE
        }
    }
}
