//! `leadscore replay` and `leadscore review`: the model's life cycle from the
//! command line (docs/model-review.md). The work is in `leadscore-review`;
//! this is their arguments and their output: a table on the terminal, JSON
//! with `--json`, and for the review an HTML report with `--html`.

use crate::cli_helpers::parse_time;
use anyhow::Context;
use leadscore_core::time::Millis;
use leadscore_review::{replay, review, Input};
use std::io::Write;
use std::path::PathBuf;

/// Where the history comes from: a file, or Kafka topics.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The history: JSON events, one per line (a file, or `-` for standard
    /// input), e.g. exported from the input topics.
    #[arg(long, value_name = "FILE|-", required_unless_present = "bootstrap_servers")]
    input: Option<String>,
    /// Read the history from Kafka instead: every message the brokers hold of
    /// --topics, up to the end as it is when the read starts (JSON only; no
    /// consumer group joined, nothing committed).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "input", requires = "topics")]
    bootstrap_servers: Option<String>,
    /// The topics to read with --bootstrap-servers, comma-separated (e.g. the
    /// service's input topics).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    topics: Vec<String>,
}

impl HistoryArgs {
    fn open(&self) -> anyhow::Result<Input> {
        match (&self.input, &self.bootstrap_servers) {
            (Some(arg), _) => Input::from_arg(arg).with_context(|| format!("cannot read --input {arg}")),
            (None, Some(bootstrap)) => {
                let (bytes, _) = crate::history_export::read(bootstrap, &self.topics, &mut std::io::stderr().lock())?;
                Ok(Input::Bytes(bytes))
            }
            (None, None) => anyhow::bail!("give the history with --input FILE or --bootstrap-servers and --topics"),
        }
    }
}

/// Arguments of `leadscore replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    history: HistoryArgs,
    /// The candidate model file (TOML).
    #[arg(long, value_name = "FILE")]
    candidate: PathBuf,
    /// The current model file (TOML). Defaults to the built-in seed model.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Compare the leads as of this instant (RFC 3339 or epoch milliseconds):
    /// the events up to it, every timer due by then fired. Default: the last
    /// event of the history.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Millis>,
    /// The segment listed first.
    #[arg(long, default_value = "sales-ready")]
    ready_segment: String,
    /// Lead ids listed per segment and direction.
    #[arg(long, default_value_t = 10)]
    examples: usize,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Arguments of `leadscore review`.
#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// The history, with its opportunity_update events (closed_won,
    /// closed_lost, amount).
    #[command(flatten)]
    history: HistoryArgs,
    /// The model file (TOML). Defaults to the built-in seed model.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Review only the opportunities opened at or after this instant (RFC
    /// 3339 or epoch milliseconds), e.g. the last 15 days; the whole history
    /// is still scored.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Millis>,
    /// Also look at each lead's score this many days before its opportunity
    /// opened.
    #[arg(long, default_value_t = 30)]
    days_before: i64,
    /// The segment sales acts on.
    #[arg(long, default_value = "sales-ready")]
    ready_segment: String,
    /// The share of won deals a suggested sales-ready threshold must reach
    /// among the deals at or above it.
    #[arg(long, default_value_t = 0.5)]
    target_precision: f64,
    /// The fewest deals at or above a suggested threshold.
    #[arg(long, default_value_t = 10)]
    min_deals: usize,
    /// Write the HTML report (charts included, self-contained) here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print the report as JSON (every deal included) instead of tables.
    #[arg(long)]
    json: bool,
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<leadscore_core::Model> {
    Ok(match path {
        Some(p) => leadscore_config::load_model(p)?,
        None => leadscore_config::seed_model(),
    })
}

pub fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let current = load(a.model.as_ref())?;
    let candidate = leadscore_config::load_model(&a.candidate)?;
    let options = replay::Options { until: a.until, ready_segment: a.ready_segment, examples: a.examples };
    let input = a.history.open()?;
    let report = replay::replay(&current, &candidate, &input, &options, &mut std::io::stderr().lock())?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(replay::render_text(&report).as_bytes())?;
    }
    Ok(())
}

pub fn review(a: ReviewArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&a.target_precision) {
        anyhow::bail!("--target-precision must be between 0 and 1, got {}", a.target_precision);
    }
    if a.days_before < 0 {
        anyhow::bail!("--days-before must be 0 or more, got {}", a.days_before);
    }
    let model = load(a.model.as_ref())?;
    let options = review::Options {
        until: None,
        since: a.since,
        days_before: a.days_before,
        ready_segment: a.ready_segment,
        target_precision: a.target_precision,
        min_deals: a.min_deals,
    };
    let input = a.history.open()?;
    let mut err = std::io::stderr().lock();
    let report = review::review(&model, &input, &options, &mut err)?;
    if report.deals == 0 {
        writeln!(err, "leadscore: the history has no opportunity_update events in the period: nothing to review")?;
    }
    if let Some(path) = &a.html {
        let page = leadscore_review::charts::html(&report).map_err(|e| anyhow::anyhow!("drawing the charts: {e}"))?;
        std::fs::write(path, page).with_context(|| format!("cannot write --html {}", path.display()))?;
        writeln!(err, "leadscore: wrote the report to {}", path.display())?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(review::render_text(&report).as_bytes())?;
    }
    Ok(())
}
