//! `leadscore bench`: the end-to-end benchmark, in one run on one broker.
//!
//! 1. Preloads N synthetic events into a fresh input topic.
//! 2. The ceiling: a consumer configured as leadscore's reads them and does
//!    nothing; what the broker and client can deliver on this machine.
//! 3. For each guarantee (exactly-once only where the broker has
//!    transactions), `leadscore run` in its own process, with the seed model
//!    and a fresh RocksDB, drains the same topic in a new group; its rate runs
//!    from its first consumed batch to the last (group join and restore
//!    excluded, as for the ceiling).
//! 4. Still running, it gets events on a second input topic of its own (so the
//!    preloaded one is the same for every run) at a fixed rate of half the at-least-once
//!    maximum (or half its own, if lower; or `--latency-rate`), and a probe reading the score changes as a downstream consumer
//!    would measures event-to-output latency: from the moment an event is
//!    handed to the producer to the moment its score change is read back. The
//!    load's first event is sent and acknowledged before the rate's clock
//!    starts, and not measured: a new producer holds what it is given until it
//!    has its connection and producer id, which showed as a 0.5-1 s stall of
//!    the first events in some runs.
//! 5. Peak RSS of the service process and its state on disk.
//! 6. Unless `--no-restore`: a new instance with an empty state directory joins
//!    the same group and restores every partition from the changelog the run
//!    wrote (its module, `bench::restore`, says how it is timed).
//!
//! Then a table with the ratios to the ceiling, and the latency and restore
//! tables.

mod broker;
mod consumers;
pub mod report;
mod restore;
mod subject;

use crate::loadgen::{self, Load, WireFormat};
use crate::progress::Progress;
use anyhow::{bail, Context};
use broker::Broker;
use leadscore_config::service::Guarantee;
use leadscore_synth::Settings;
use report::{quantile, Latency, Restore, Row};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subject::{Subject, SubjectSettings, SubjectTopics};

/// The benchmark's settings, from the command line.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// An external broker; `None` runs the in-process mock broker.
    pub bootstrap: Option<String>,
    pub events: u64,
    pub leads: u64,
    /// Every lead in turn instead of the realistic mix (for memory bounds).
    pub sweep: bool,
    pub partitions: i32,
    pub format: WireFormat,
    pub bad_share: f64,
    pub guarantees: Vec<Guarantee>,
    /// Length of each latency measurement; 0 skips it.
    pub latency_seconds: u64,
    /// The latency measurement's rate; `None`: from the drains (see the
    /// module documentation).
    pub latency_rate: Option<u64>,
    pub block_cache_mb: u64,
    pub write_buffer_mb: u64,
    /// Also write the table here.
    pub report: Option<PathBuf>,
    /// librdkafka's fetch.wait.max.ms for every consumer of the run; `None`:
    /// 5 ms on the mock broker (which answers an empty fetch only after the
    /// full wait, even when data arrives meanwhile, unlike Kafka), librdkafka's
    /// default (500 ms) on an external broker.
    pub fetch_wait_ms: Option<u32>,
    /// The service's commit interval; `None`: the guarantee's default.
    pub commit_interval: Option<Duration>,
    /// The service's step threads; `None`: its default.
    pub step_threads: Option<usize>,
    /// Timers on the wall clock (the service's default) instead of event time.
    pub wall_clock: bool,
    /// After each guarantee's run, measure a new owner's restore from the
    /// changelog.
    pub restore: bool,
}

/// The synthetic stream: one event per 10 ms of event time on average.
const STEP_MS: i64 = 10;
/// Events that fit in the mock broker's 5 MB per partition, with room for
/// Avro's and bad messages' different sizes.
const MOCK_EVENTS_PER_PARTITION: u64 = 15_000;
/// The services' session timeout on the mock broker; see `session_timeout_ms`.
const MOCK_SESSION_TIMEOUT_MS: u32 = 6000;
const COMMIT_SECONDS: &str = "leadscore_commit_duration_seconds";
const EVENT_TO_OUTPUT_SECONDS: &str = "leadscore_event_to_output_seconds";
/// Seed of the latency phase's events, so the probe can tell them apart.
const LATENCY_SEED: u64 = 0x1a7;

/// Runs the benchmark; see the module documentation.
pub fn bench(opts: &BenchOptions) -> anyhow::Result<()> {
    if opts.events == 0 || opts.leads == 0 || opts.partitions < 1 {
        bail!("--events, --leads and --partitions must be at least 1");
    }
    let run = format!("bench-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut opts = opts.clone();
    if opts.bootstrap.is_none() {
        // librdkafka's mock broker keeps only the last 5 MB of each partition
        // (hard-coded), so a preload needs enough partitions to hold it.
        let needed = opts.events.div_ceil(MOCK_EVENTS_PER_PARTITION) as i32;
        if needed > opts.partitions {
            eprintln!(
                "leadscore bench: {} partitions instead of {}: the mock broker keeps only the last 5 MB \
                 (about {MOCK_EVENTS_PER_PARTITION} events) of each partition",
                needed, opts.partitions
            );
            opts.partitions = needed;
        }
    }
    if opts.bootstrap.is_none() && opts.fetch_wait_ms.is_none() {
        opts.fetch_wait_ms = Some(5);
    }
    let opts = &opts;
    let broker = Broker::new(opts.bootstrap.as_deref(), opts.partitions)?;
    let bootstrap = broker.bootstrap_servers();
    let input = format!("{run}-lead-events");
    broker.create_topics(std::slice::from_ref(&input), opts.partitions, &[])?;
    let format = opts.format.name();
    eprintln!(
        "leadscore bench: {} events ({format}, {:.1}% bad) over {} leads, {} partitions, on {}",
        opts.events,
        opts.bad_share * 100.0,
        opts.leads,
        opts.partitions,
        broker.describe()
    );
    let synth = Settings { leads: opts.leads, sweep: opts.sweep, step: STEP_MS, ..Settings::default() };
    let never = AtomicBool::new(false);
    let mut rows = Vec::new();

    let load = Load {
        bootstrap_servers: bootstrap.clone(),
        topic: input.clone(),
        by_kind: false,
        events: opts.events,
        rate: 0,
        format: opts.format,
        bad_share: opts.bad_share,
        synth: synth.clone(),
        linger_ms: 5,
        librdkafka: Vec::new(),
    };
    let mut bar = Progress::new("preload ", opts.events);
    let produced = loadgen::produce(&load, &never, &mut |_, _| {}, &mut |n| bar.update(n))?;
    bar.finish(produced.events);
    rows.push(row("load generator: produce", produced.events, produced.elapsed));

    let mut bar = Progress::new("ceiling ", opts.events);
    let (n, elapsed) =
        consumers::ceiling(&bootstrap, &format!("{run}-ceiling"), &input, opts.events, opts.fetch_wait_ms, &mut |n| {
            bar.update(n)
        })?;
    bar.finish(opts.events);
    let ceiling_name = "ceiling: consumer that does nothing";
    rows.push(row(ceiling_name, n, elapsed));

    let mut latencies = Vec::new();
    let mut restores = Vec::new();
    let mut half_rate = None;
    for (index, &guarantee) in opts.guarantees.iter().enumerate() {
        let name = format!("leadscore {}", guarantee_name(guarantee));
        if guarantee == Guarantee::ExactlyOnce {
            let probe = format!("{run}-transaction-probe");
            let result = broker.create_topics(std::slice::from_ref(&probe), 1, &[]).map_err(|e| format!("{e:#}"));
            if let Err(why) = result.and_then(|()| broker.transactions(&run, &probe)) {
                eprintln!("leadscore bench: {name} skipped: {why}");
                rows.push(Row { skipped: Some(why), ..row(&name, 0, Duration::ZERO) });
                continue;
            }
        }
        // A run that fails is a row that says why; the others still count.
        let run = Run { opts, broker: &broker, bootstrap: &bootstrap, run: &run, input: &input, synth: &synth };
        match run.measure(guarantee, index, &mut half_rate) {
            Ok(m) => {
                rows.push(m.drain);
                latencies.extend(m.latency);
                restores.extend(m.restore);
            }
            Err(e) => {
                eprintln!("leadscore bench: {name} failed: {e:#}");
                rows.push(Row { skipped: Some(format!("failed: {e:#}")), ..row(&name, 0, Duration::ZERO) });
            }
        }
    }

    let heading = format!(
        "leadscore bench: {} events ({format}, {:.1}% bad) over {} leads{}, {} partitions, on {}; \
         RocksDB block cache {} MiB, memtables {} MiB; fetch.wait.max.ms {}; timers in {}; step threads {}",
        opts.events,
        opts.bad_share * 100.0,
        opts.leads,
        if opts.sweep { " (each in turn)" } else { "" },
        opts.partitions,
        broker.describe(),
        opts.block_cache_mb,
        opts.write_buffer_mb,
        opts.fetch_wait_ms.map_or_else(|| "default".to_string(), |ms| ms.to_string()),
        if opts.wall_clock { "wall-clock time" } else { "event time" },
        opts.step_threads.map_or_else(|| "default (one per core, at most 8)".to_string(), |n| n.to_string())
    );
    let table = report::render(&heading, &rows, ceiling_name, &latencies, &restores);
    println!("{table}");
    if let Some(path) = &opts.report {
        std::fs::write(path, &table).with_context(|| format!("writing --report {}", path.display()))?;
    }
    Ok(())
}

/// What every guarantee's measurement shares.
struct Run<'a> {
    opts: &'a BenchOptions,
    broker: &'a Broker,
    bootstrap: &'a str,
    /// The run's name, the prefix of its topics and groups.
    run: &'a str,
    /// The preloaded topic.
    input: &'a str,
    /// The preload's generator settings.
    synth: &'a Settings,
}

/// What one guarantee's run measured.
struct Measured {
    drain: Row,
    latency: Option<Latency>,
    restore: Option<Restore>,
}

fn guarantee_name(g: Guarantee) -> &'static str {
    match g {
        Guarantee::AtLeastOnce => "at_least_once",
        Guarantee::ExactlyOnce => "exactly_once",
    }
}

impl Run<'_> {
    /// One guarantee's drain and latency measurement.
    fn measure(&self, guarantee: Guarantee, index: usize, half_rate: &mut Option<u64>) -> anyhow::Result<Measured> {
        let (opts, bootstrap) = (self.opts, self.bootstrap);
        let name = format!("leadscore {}", guarantee_name(guarantee));
        let short = if guarantee == Guarantee::ExactlyOnce { "eos" } else { "alo" };
        let topics = SubjectTopics::with_prefix(self.input, &format!("{}-{short}-", self.run));
        self.broker.create_topics(&topics.outputs(), opts.partitions, &[topics.changelog.as_str()])?;
        let dir = tempfile::tempdir().context("creating a temporary directory for the service")?;
        let group = format!("{}-{short}", self.run);
        let settings = SubjectSettings {
            bootstrap,
            group: &group,
            guarantee,
            topics: &topics,
            format: opts.format,
            block_cache_mb: opts.block_cache_mb,
            write_buffer_mb: opts.write_buffer_mb,
            fetch_wait_ms: opts.fetch_wait_ms,
            commit_interval: opts.commit_interval,
            step_threads: opts.step_threads,
            wall_clock: opts.wall_clock,
            // The mock broker keeps a group its last member left waiting for
            // the session timeout (45 s by default) before a new member is in.
            session_timeout_ms: opts.bootstrap.is_none().then_some(MOCK_SESSION_TIMEOUT_MS),
        };
        let mut subject = Subject::start(dir.path(), &settings)?;
        let mut bar = Progress::new(format!("{short} drain"), opts.events);
        let commits_before = subject.histogram(COMMIT_SECONDS);
        let cpu_before = subject.cpu_seconds();
        let faults_before = subject.minor_faults();
        let (n, sampled) = subject.wait_consumed(opts.events, Duration::from_secs(120), &mut |n| bar.update(n))?;
        let cpu = subject.cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
        let faults = subject.minor_faults().zip(faults_before).map(|(after, before)| after.saturating_sub(before));
        bar.finish(opts.events);
        // The drain's time from its own outputs, first to last (read before
        // the latency phase adds to the topic); the metrics' sampling only
        // when the topic has no usable timestamps.
        let span = consumers::output_span(bootstrap, &topics.score_changes, opts.fetch_wait_ms)?;
        let elapsed = match span {
            Some((first, last)) if last > first => Duration::from_millis((last - first) as u64),
            _ => sampled,
        };
        let commits = subject.histogram(COMMIT_SECONDS).since(&commits_before);
        let mut measured = row(&name, n, elapsed);
        measured.cpu_per_event = cpu.filter(|_| n > 0).map(|c| Duration::from_secs_f64(c / n as f64));
        measured.minor_faults = faults;
        measured.commits = Some((commits.count, Duration::from_secs_f64(commits.mean())));
        let rate = latency_rate(opts.latency_rate, half_rate, measured.rate());
        let mut latency = None;
        if opts.latency_seconds > 0 {
            let probe_group = format!("{group}-probe");
            let phase = LatencyPhase {
                bootstrap,
                input: &topics.latency_input,
                score_changes: &topics.score_changes,
                group: &probe_group,
                rate,
                seconds: opts.latency_seconds,
                fetch_wait_ms: opts.fetch_wait_ms,
                format: opts.format,
                synth: Settings {
                    seed: LATENCY_SEED + index as u64,
                    start: self.synth.start + 2 * STEP_MS * opts.events as i64,
                    ..self.synth.clone()
                },
            };
            latency = Some(phase.run(&name, &mut subject, opts.events)?);
        }
        measured.peak_rss_bytes = subject.peak_rss();
        measured.state_bytes = Some(subject.stop()?);
        let restored = if opts.restore {
            let dir = tempfile::tempdir().context("creating a temporary directory for the restoring instance")?;
            let restore_name = format!("{name}: a new owner restores");
            // A failed restore is a line that says why; the drain still counts.
            match restore::measure(&restore_name, dir.path(), &settings, opts.partitions, Duration::from_secs(300)) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("leadscore bench: {restore_name} failed: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Measured { drain: measured, latency, restore: restored })
    }
}

fn row(name: &str, events: u64, elapsed: Duration) -> Row {
    Row {
        name: name.to_string(),
        events,
        elapsed,
        peak_rss_bytes: None,
        state_bytes: None,
        commits: None,
        cpu_per_event: None,
        minor_faults: None,
        skipped: None,
    }
}

/// Event-to-output latency at a fixed rate; see the module documentation.
struct LatencyPhase<'a> {
    bootstrap: &'a str,
    input: &'a str,
    score_changes: &'a str,
    group: &'a str,
    rate: u64,
    seconds: u64,
    fetch_wait_ms: Option<u32>,
    format: WireFormat,
    synth: Settings,
}

impl LatencyPhase<'_> {
    /// `already` is what the subject has consumed before this phase.
    fn run(&self, name: &str, subject: &mut Subject, already: u64) -> anyhow::Result<Latency> {
        let events = self.rate * self.seconds;
        let load = Load {
            bootstrap_servers: self.bootstrap.to_string(),
            topic: self.input.to_string(),
            by_kind: false,
            events,
            rate: self.rate,
            format: self.format,
            bad_share: 0.0,
            synth: self.synth.clone(),
            // Batching in the producer is the load generator's latency, not
            // leadscore's; keep it small.
            linger_ms: 1,
            librdkafka: Vec::new(),
        };
        let (ready, stop, never) = (AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false));
        let prefix = format!("e-{:x}-", self.synth.seed);
        let own_before = subject.histogram(EVENT_TO_OUTPUT_SECONDS);
        let (sent, seen) = std::thread::scope(|s| -> anyhow::Result<_> {
            let probe = s.spawn(|| {
                consumers::probe(
                    self.bootstrap,
                    self.group,
                    self.score_changes,
                    &prefix,
                    self.fetch_wait_ms,
                    &ready,
                    &stop,
                )
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            while !ready.load(Ordering::Acquire) && !probe.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let produced = (|| {
                let mut sent = HashMap::with_capacity(events as usize);
                let mut bar = Progress::new(format!("latency at {}/s", self.rate), events);
                loadgen::produce(
                    &load,
                    &never,
                    &mut |seq, at| {
                        sent.insert(seq, at);
                    },
                    &mut |n| bar.update(n),
                )?;
                bar.finish(events);
                subject.wait_consumed(already + events, Duration::from_secs(60), &mut |_| {}).map_err(|e| {
                    e.context(format!(
                        "the latency phase at {}/s: the service fell behind the load (on the mock broker, \
                         which keeps 5 MB a partition, input it had not read yet is gone); try a lower \
                         --latency-rate",
                        self.rate
                    ))
                })?;
                // Outputs of the last batch are read back within moments.
                std::thread::sleep(Duration::from_millis(500));
                anyhow::Ok(sent)
            })();
            stop.store(true, Ordering::Release);
            let seen = probe.join().map_err(|_| anyhow::anyhow!("the latency probe panicked"))??;
            Ok((produced?, seen))
        })?;
        let mut latencies: Vec<Duration> =
            seen.iter().filter_map(|(seq, at)| sent.get(seq).map(|t| at.saturating_duration_since(*t))).collect();
        if latencies.is_empty() {
            bail!("the latency probe read no score change of the {events} events sent at {}/s", self.rate);
        }
        latencies.sort_unstable();
        let own = subject.histogram(EVENT_TO_OUTPUT_SECONDS).since(&own_before);
        Ok(Latency {
            own_p50: own.quantile_bound(0.5),
            own_p99: own.quantile_bound(0.99),
            name: name.to_string(),
            rate: self.rate,
            seconds: self.seconds,
            samples: latencies.len(),
            p50: quantile(&latencies, 0.5),
            p99: quantile(&latencies, 0.99),
            p999: quantile(&latencies, 0.999),
            max: *latencies.last().unwrap_or(&Duration::ZERO),
        })
    }
}

/// The latency phase's rate: the one asked for; else half the first
/// guarantee's drain rate (kept in `first_half`), so that the runs compare at
/// one load, unless that is more than half of this guarantee's own `drained`
/// rate: a service given more than it drains falls behind for the whole phase
/// (and on the mock broker, which keeps 5 MB a partition, loses input).
fn latency_rate(asked: Option<u64>, first_half: &mut Option<u64>, drained: f64) -> u64 {
    let own_half = (drained / 2.0).max(1.0) as u64;
    asked.unwrap_or_else(|| (*first_half.get_or_insert(own_half)).min(own_half))
}

#[cfg(test)]
mod tests {
    use super::latency_rate;

    #[test]
    fn latency_runs_at_half_the_first_drain_unless_this_one_drains_less() {
        let mut first = None;
        assert_eq!(latency_rate(None, &mut first, 200_000.0), 100_000, "half the first guarantee's");
        assert_eq!(first, Some(100_000));
        assert_eq!(latency_rate(None, &mut first, 300_000.0), 100_000, "the same load for a faster one");
        assert_eq!(latency_rate(None, &mut first, 120_000.0), 60_000, "half its own for a slower one");
        assert_eq!(latency_rate(Some(5_000), &mut first, 120_000.0), 5_000, "the rate asked for");
        assert_eq!(latency_rate(None, &mut None, 0.5), 1, "never zero");
    }
}
