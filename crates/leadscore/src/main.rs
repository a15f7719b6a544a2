//! The `leadscore` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadscore_core::time::{check_range, parse_rfc3339, Millis};
use leadscore_core::Model;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
    },
    /// Check a model file and print a readable summary of it.
    CheckModel {
        /// The model file (TOML).
        file: PathBuf,
    },
}

fn parse_time(s: &str) -> Result<Millis, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return check_range(ms).map_err(|e| e.to_string());
    }
    parse_rfc3339(s).map_err(|e| e.to_string())
}

fn load_model(path: Option<&PathBuf>) -> anyhow::Result<Model> {
    Ok(match path {
        Some(p) => leadscore_config::load_model(p)?,
        None => leadscore_config::seed_model(),
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Score { model, input, until } => {
            let model = load_model(model.as_ref())?;
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut err = io::stderr().lock();
            if input == "-" {
                leadscore::offline::run(&model, io::stdin().lock(), until, &mut out, &mut err)?;
            } else {
                let file = std::fs::File::open(&input).with_context(|| format!("cannot open --input {input}"))?;
                leadscore::offline::run(&model, BufReader::with_capacity(1 << 16, file), until, &mut out, &mut err)?;
            }
            out.flush()?;
        }
        Command::CheckModel { file } => {
            let model = leadscore_config::load_model(&file)?;
            print!("{}", leadscore::describe::describe(&model));
            println!("\n{}: ok", file.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
