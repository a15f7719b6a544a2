//! The command line: every subcommand of `leadscore` and its options, as
//! clap parses them (`main.rs` carries them out).

use crate::cli_helpers::{parse_step, parse_time};
use crate::model_cmds;
use clap::{Parser, Subcommand};
use leadscore_core::time::Millis;
use leadscore_pipeline::Guarantee;
use std::path::PathBuf;
use std::str::FromStr;

/// Real-time lead scoring: behavioural scores that decay, demographic grades,
/// and segments, from streams of marketing events.
#[derive(Parser, Debug)]
#[command(name = "leadscore", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
        /// The service's processing.step_threads (threads a poll batch's
        /// partition steps run on). Default: the service's (one per core, at
        /// most 8).
        #[arg(long)]
        step_threads: Option<usize>,
        /// The service's processing.time: event_time (deterministic timers,
        /// as for a replay) or wall_clock (the service's default: each poll
        /// batch first publishes and awaits its replay marker, and timers
        /// fire on the wall clock: the synthetic events are months old, so
        /// their leads' decay and inactivity timers fire as they are read).
        #[arg(long, default_value = "event_time", value_parser = ["event_time", "wall_clock"])]
        time: String,
        /// Skip the restore measurement (after each guarantee's run, a new
        /// instance with empty state joins the group and restores every
        /// partition from the changelog).
        #[arg(long)]
        no_restore: bool,
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
pub(crate) enum TopicsAction {
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
