//! The `leadscore` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadscore_core::time::Millis;
use leadscore_core::Model;
use leadscore_pipeline::{offline, Guarantee};
use std::io::{self, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

mod cli_helpers;
mod history_export;
mod model_cmds;
use cli_helpers::{check_share, generate, parse_step, parse_time, produce_to_kafka, wire_format};

/// Real-time lead scoring: behavioural scores that decay, demographic grades,
/// and segments, from streams of marketing events.
#[derive(Parser, Debug)]
#[command(name = "leadscore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score a file of JSON events (one per line) and print every score change and
    /// segment transition, one JSON object per line. Timers run in event time.
    Score {
        /// The model file (TOML). Defaults to the built-in seed model.
        #[arg(long, value_name = "FILE")]
        model: Option<PathBuf>,
        /// The events, JSON lines; `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        input: String,
        /// At the end, fire the timers due up to this instant (RFC 3339 or epoch
        /// milliseconds), e.g. to see who went inactive by then.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<Millis>,
        /// Exit 0 even when lines were rejected (they are still reported on
        /// standard error); without it, rejected lines make the exit status 1.
        #[arg(long)]
        allow_rejected: bool,
    },
    /// Score a history under the current model and a candidate side by side and
    /// report what would differ: members of each segment, the leads that would
    /// enter or leave it (sales-ready first), the score and grade distributions,
    /// the points per rule (docs/model-review.md).
    Replay(model_cmds::ReplayArgs),
    /// The periodic review of a model against closed deals: conversion and lift
    /// by score tier and grade, ROC AUC, time to close, won value, points per
    /// rule among won and lost deals, suggested changes; tables, JSON, or an
    /// HTML report with charts (docs/model-review.md).
    Review(model_cmds::ReviewArgs),
    /// Generate a realistic synthetic event stream (page views, email
    /// engagement, downloads, bounces, profile and CRM updates): as JSON lines
    /// to a file, or with --bootstrap-servers to a Kafka topic, JSON or Avro,
    /// at a target rate or as fast as possible.
    Gen {
        /// How many events.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// How many distinct leads (a fifth of them produce most events).
        #[arg(long, default_value_t = 1_000)]
        leads: u64,
        /// Every lead in turn instead of the realistic hot/cold mix (touches
        /// all leads; for memory tests over many distinct leads).
        #[arg(long)]
        sweep: bool,
        /// Average event time between consecutive events, e.g. 15m or 500ms.
        #[arg(long, default_value = "1m", value_parser = parse_step)]
        step: Millis,
        /// Event time of the first event (RFC 3339, epoch milliseconds, or
        /// `now`).
        #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = parse_time)]
        start: Millis,
        /// Seed: the same seed gives the same stream.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write JSON lines; `-` is standard output. Not with
        /// --bootstrap-servers.
        #[arg(long, default_value = "-", value_name = "FILE|-")]
        output: String,
        /// Produce to the Kafka brokers at this address instead of a file.
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: Option<String>,
        /// The topic to produce to (with --bootstrap-servers).
        #[arg(long, default_value = "lead-events")]
        topic: String,
        /// Each event to the default topic of its kind, as the default
        /// configuration reads them: page-views, email-clicks, downloads,
        /// email-bounces, lead-profiles (profile, opportunity, erase), and
        /// --topic for the other kinds and bad messages.
        #[arg(long)]
        by_kind: bool,
        /// Events per second; 0 is as fast as possible (with --bootstrap-servers).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// json, or avro (Confluent wire format with --schema-id; with
        /// --bootstrap-servers).
        #[arg(long, default_value = "json", value_parser = ["json", "avro"])]
        format: String,
        /// The Confluent schema id of schemas/lead-event.avsc, for --format avro.
        #[arg(long, default_value_t = 1)]
        schema_id: u32,
        /// Share of bad messages (0 to 1), one of each dead-letter class in turn
        /// (with --bootstrap-servers).
        #[arg(long, default_value_t = 0.0)]
        bad_share: f64,
        /// A history for `leadscore review`: one profile per lead and one
        /// opportunity per active lead, won with a known chance that grows with
        /// buying intent and fit (docs/model-review.md). To a file or stdout.
        #[arg(long)]
        outcomes: bool,
    },
    /// Measure end-to-end throughput and latency in one run: preload events,
    /// read them with a do-nothing consumer (the ceiling), drain them with
    /// `leadscore run` in each guarantee, measure event-to-output latency at half
    /// the maximum rate, and print a table with the ratios to the ceiling.
    /// Without --bootstrap-servers, on the in-process mock broker.
    Bench {
        /// An external broker (e.g. tansu); its topics are created per run.
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: Option<String>,
        /// Events preloaded and drained by each run.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Distinct leads (a fifth of them produce most events).
        #[arg(long, default_value_t = 100_000)]
        leads: u64,
        /// Every lead in turn (for memory bounds over many distinct leads).
        #[arg(long)]
        sweep: bool,
        /// Partitions of the run's topics (raised on the mock broker to hold the
        /// preload: it keeps only 5 MB per partition).
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Input format: json, or avro (Confluent wire format, schema id 1).
        #[arg(long, default_value = "json", value_parser = ["json", "avro"])]
        format: String,
        /// Share of bad messages in the preload (0 to 1), every dead-letter class.
        #[arg(long, default_value_t = 0.001)]
        bad_share: f64,
        /// Guarantees to measure, comma-separated.
        #[arg(long, default_value = "at_least_once,exactly_once", value_delimiter = ',', value_parser = Guarantee::from_str)]
        guarantee: Vec<Guarantee>,
        /// Length of each latency measurement, in seconds; 0 skips it.
        #[arg(long, default_value_t = 10)]
        latency_seconds: u64,
        /// The rate of the latency measurement, events/s, for every guarantee.
        /// By default half the at-least-once drain rate (or half the
        /// guarantee's own, if lower); a short drain overstates what the
        /// service sustains, so set it to compare builds at one load.
        #[arg(long)]
        latency_rate: Option<u64>,
        /// The service's RocksDB block cache, MiB.
        #[arg(long, default_value_t = 256)]
        block_cache_mb: u64,
        /// The service's memtable budget, MiB.
        #[arg(long, default_value_t = 64)]
        write_buffer_mb: u64,
        /// Also write the result table (Markdown) to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// librdkafka's fetch.wait.max.ms for all consumers. Default: 5 on the
        /// mock broker (it answers an empty fetch only after the full wait, even
        /// when data arrives meanwhile), librdkafka's 500 elsewhere.
        #[arg(long)]
        fetch_wait_ms: Option<u32>,
        /// The service's processing.commit_interval_ms. Default: the
        /// guarantee's default.
        #[arg(long)]
        commit_interval_ms: Option<u64>,
    },
    /// Run the whole pipeline on this machine with nothing to install: an
    /// embedded Kafka-protocol broker, a synthetic event stream in compressed
    /// time, state in RocksDB, and a live view of what happens.
    Demo {
        /// The model file (TOML). Defaults to the built-in seed model.
        #[arg(long, value_name = "FILE")]
        model: Option<PathBuf>,
        /// Stop after this long, e.g. 60s or 5m (default: until ctrl-c).
        #[arg(long, value_parser = parse_step)]
        duration: Option<Millis>,
        /// Input events per second.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Leads active at any one time (a fiftieth are replaced each simulated day).
        #[arg(long, default_value_t = 2_000)]
        leads: u64,
        /// Simulated time per real second.
        #[arg(long, default_value = "2d", value_parser = parse_step)]
        time_scale: Millis,
        /// Keep RocksDB here (default: a temporary directory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Partitions of the input topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// The admin server (/metrics, /segments, /leads/{id}); "" for none.
        #[arg(long, default_value = "127.0.0.1:9898")]
        admin: String,
    },
    /// Keep an in-process Kafka-protocol broker (librdkafka's mock cluster) alive
    /// in this process with leadscore's topics, and print its bootstrap address,
    /// so that pipelines can be killed and restarted without losing the broker.
    /// It keeps about the last 30k messages of each partition. Runs until ctrl-c.
    DevBroker {
        /// Partitions of each topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Run the streaming service: consume the input topics, keep state in
    /// RocksDB, publish score changes and segment transitions. Stops cleanly on
    /// ctrl-c or SIGTERM.
    Run {
        /// The service configuration (TOML); every key is documented in
        /// config/leadscore.example.toml. May be given several times: later
        /// files override earlier ones (e.g. a ConfigMap, then a Secret).
        /// Without it: the built-in defaults and LEADSCORE__ environment variables.
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Log one JSON object per line (same as log.format = "json").
        #[arg(long)]
        log_json: bool,
    },
    /// Check a service configuration and print the effective settings (defaults,
    /// files and environment merged, as `run` would), secrets redacted.
    CheckConfig {
        /// The service configuration (TOML), as for `run`: may be given several
        /// times, later files override earlier ones.
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The same, without --config (kept for scripts written before it).
        #[arg(value_name = "FILE", hide = true)]
        files: Vec<PathBuf>,
    },
    /// Create or check the topics a configuration needs, through the Kafka
    /// admin API: the input topics, score changes, transitions, dead letters
    /// and the compacted changelog, all with the inputs' partition count.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Check a model file and print a readable summary of it.
    CheckModel {
        /// The model file (TOML).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TopicsAction {
    /// Print what the cluster has of each topic and what must change; exit
    /// status 1 when `run` would refuse to start.
    Check {
        /// The service configuration, as for `run` (repeatable).
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Create the missing output, dead-letter and changelog topics (the
    /// changelog compacted) with the inputs' partition count, then check.
    Create {
        /// The service configuration, as for `run` (repeatable).
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Also create missing input topics (usually the producers' to create).
        #[arg(long)]
        inputs: bool,
        /// The partition count when no input topic exists to take it from.
        #[arg(long)]
        partitions: Option<usize>,
        /// Replicas of each new topic; without it, the brokers'
        /// default.replication.factor.
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

fn load_model(path: Option<&PathBuf>) -> anyhow::Result<Model> {
    Ok(match path {
        Some(p) => leadscore_config::load_model(p)?,
        None => leadscore_config::seed_model(),
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Score { model, input, until, allow_rejected } => {
            let model = load_model(model.as_ref())?;
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut err = io::stderr().lock();
            let options = offline::Options { until, progress: io::stderr().is_terminal(), ..Default::default() };
            let summary = if input == "-" {
                offline::score(&model, io::stdin().lock(), &options, &mut out, &mut err)?
            } else {
                let file = std::fs::File::open(&input).with_context(|| format!("cannot open --input {input}"))?;
                offline::score(&model, BufReader::with_capacity(1 << 16, file), &options, &mut out, &mut err)?
            };
            out.flush()?;
            if summary.rejected > 0 && !allow_rejected {
                writeln!(
                    err,
                    "leadscore: {} of {} lines rejected (above); exit status 1 (--allow-rejected for 0)",
                    summary.rejected, summary.events_read
                )?;
                return Ok(ExitCode::from(1));
            }
        }
        Command::Gen {
            events,
            leads,
            sweep,
            step,
            start,
            seed,
            output,
            bootstrap_servers,
            topic,
            by_kind,
            rate,
            format,
            schema_id,
            bad_share,
            outcomes,
        } => {
            let settings = leadscore_synth::Settings { seed, leads, start, step, erase_share: 0.0, sweep };
            if outcomes && bootstrap_servers.is_some() {
                anyhow::bail!("--outcomes writes a history to a file or stdout, not to Kafka");
            }
            if outcomes {
                cli_helpers::write_outcomes(&output, events, settings)?;
            } else if let Some(bootstrap) = bootstrap_servers {
                if output != "-" {
                    anyhow::bail!("--output and --bootstrap-servers exclude each other: write to a file or to Kafka");
                }
                check_share("--bad-share", bad_share)?;
                let load = leadscore::loadgen::Load {
                    bootstrap_servers: bootstrap,
                    topic,
                    by_kind,
                    events,
                    rate,
                    format: wire_format(&format, schema_id),
                    bad_share,
                    synth: settings,
                    linger_ms: 5,
                    librdkafka: Vec::new(),
                };
                produce_to_kafka(&load)?;
            } else if output == "-" {
                generate(events, settings, &mut io::BufWriter::new(io::stdout().lock()))?;
            } else {
                let file =
                    std::fs::File::create(&output).with_context(|| format!("cannot create --output {output}"))?;
                generate(events, settings, &mut io::BufWriter::new(file))?;
                eprintln!("leadscore: wrote {events} events for {leads} leads to {output}");
            }
        }
        Command::Replay(args) => model_cmds::replay(args)?,
        Command::Review(args) => model_cmds::review(args)?,
        Command::Bench {
            bootstrap_servers,
            events,
            leads,
            sweep,
            partitions,
            format,
            bad_share,
            guarantee,
            latency_seconds,
            latency_rate,
            block_cache_mb,
            write_buffer_mb,
            report,
            fetch_wait_ms,
            commit_interval_ms,
        } => {
            check_share("--bad-share", bad_share)?;
            leadscore::bench::bench(&leadscore::bench::BenchOptions {
                bootstrap: bootstrap_servers,
                events,
                leads,
                sweep,
                partitions,
                format: wire_format(&format, 1),
                bad_share,
                guarantees: guarantee,
                latency_seconds,
                latency_rate: latency_rate.filter(|r| *r > 0),
                block_cache_mb,
                write_buffer_mb,
                report,
                fetch_wait_ms,
                commit_interval: commit_interval_ms.map(std::time::Duration::from_millis),
            })?;
        }
        Command::Demo { model, duration, rate, leads, time_scale, data_dir, partitions, admin } => {
            let model = load_model(model.as_ref())?;
            let opts = leadscore::demo::DemoOptions {
                admin: Some(admin),
                duration: duration.map(|d| std::time::Duration::from_millis(d.max(0) as u64)),
                rate,
                leads,
                time_scale,
                data_dir,
                partitions,
            };
            leadscore::demo::demo(&model, &opts)?;
        }
        Command::DevBroker { partitions } => {
            let broker =
                leadscore_kafka::embedded::EmbeddedBroker::start(&leadscore_pipeline::Topics::default(), partitions)
                    .map_err(anyhow::Error::msg)?;
            println!("{}", broker.bootstrap_servers());
            io::stdout().flush()?;
            eprintln!(
                "leadscore dev-broker: serving leadscore's topics on {}; ctrl-c stops\n\
                 (this broker answers a fetch that finds nothing only after the consumer's fetch.wait.max.ms, \
                 500 ms by default, even if data arrives meanwhile; for low latency against it set \
                 \"fetch.wait.max.ms\" = \"10\" in [kafka.librdkafka])",
                broker.bootstrap_servers()
            );
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            leadscore::demo::on_signal(stop.clone());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Command::Run { config, .. } => {
            let config = leadscore_config::service::ServiceConfig::load_files(&config)?;
            leadscore::service::run(&config)?;
        }
        Command::CheckConfig { config, files } => {
            let files: Vec<PathBuf> = files.into_iter().chain(config).collect();
            let config = leadscore_config::service::ServiceConfig::load_files(&files)?;
            print!("{}", config.to_toml());
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            eprintln!("{}: ok", if names.is_empty() { "defaults".into() } else { names.join(" + ") });
        }
        Command::Topics { action } => {
            let mut out = io::stdout().lock();
            let ok = match action {
                TopicsAction::Check { config } => {
                    let config = leadscore_config::service::ServiceConfig::load_files(&config)?;
                    leadscore::topics_cmd::check(&config, &mut out)?
                }
                TopicsAction::Create { config, inputs, partitions, replication_factor } => {
                    let config = leadscore_config::service::ServiceConfig::load_files(&config)?;
                    let options = leadscore_kafka::topics::CreateOptions { inputs, partitions, replication_factor };
                    leadscore::topics_cmd::create(&config, &options, &mut out)?
                }
            };
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
        Command::CheckModel { file } => {
            let model = leadscore_config::load_model(&file)?;
            print!("{}", leadscore::describe::describe(&model));
            println!("\n{}: ok", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG sets the levels. The service logs at info by
    // default; the other commands only warn, so that the demo's view and the
    // scorer's output stay readable.
    let (level, json) = match &cli.command {
        Command::Run { config, log_json } => {
            let format = leadscore_config::service::ServiceConfig::load_files(config).ok().map(|c| c.log.format);
            ("info", *log_json || format == Some(leadscore_config::service::LogFormat::Json))
        }
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let logs =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).with_ansi(io::stderr().is_terminal());
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`leadscore score ... | head`) is not an error.
            if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("leadscore: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
