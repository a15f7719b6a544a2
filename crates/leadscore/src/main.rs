//! The `leadscore` command: sets up logging and carries out the subcommand
//! parsed by [`cli`].

use anyhow::Context;
use clap::Parser;
use leadscore_core::Model;
use leadscore_pipeline::offline;
use std::io::{self, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;
mod cli_helpers;
mod history_export;
mod model_cmds;
use cli::{Cli, Command, TopicsAction};
use cli_helpers::{check_share, generate, produce_to_kafka, wire_format};

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
            // Not locked: the scorer writes from a thread of its own.
            let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout());
            let mut err = io::stderr().lock();
            let options = offline::Options { until, progress: io::stderr().is_terminal(), ..Default::default() };
            let summary = if input == "-" {
                // Not `stdin().lock()`: the scorer reads on a thread of its
                // own, and a lock cannot move to another thread.
                offline::score(&model, BufReader::with_capacity(1 << 16, io::stdin()), &options, &mut out, &mut err)?
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
            step_threads,
            time,
            no_restore,
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
                step_threads,
                wall_clock: time == "wall_clock",
                restore: !no_restore,
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
