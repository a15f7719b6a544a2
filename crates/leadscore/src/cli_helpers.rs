//! The `leadscore` command's helpers: argument parsers (instants, durations)
//! and what `leadscore gen` does with its output, a file or a broker.

use leadscore_core::time::{check_range, parse_rfc3339, Millis};
use std::io::{self, Write};

pub(crate) fn parse_time(s: &str) -> Result<Millis, String> {
    if s == "now" {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
        return Ok(now.as_millis() as Millis);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return check_range(ms).map_err(|e| e.to_string());
    }
    parse_rfc3339(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_step(s: &str) -> Result<Millis, String> {
    leadscore_core::time::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn generate(events: u64, settings: leadscore_synth::Settings, out: &mut impl Write) -> io::Result<()> {
    let mut generator = leadscore_synth::Generator::new(settings);
    let mut line = Vec::with_capacity(512);
    for _ in 0..events {
        line.clear();
        leadscore_codec::encode_event_json(&mut line, &generator.next_event());
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()
}

/// `leadscore gen --outcomes` to `output` (`-`: stdout).
pub(crate) fn write_outcomes(output: &str, events: u64, settings: leadscore_synth::Settings) -> anyhow::Result<()> {
    use anyhow::Context;
    let leads = settings.leads;
    let mut out: Box<dyn Write> = if output == "-" {
        Box::new(io::BufWriter::new(io::stdout().lock()))
    } else {
        let file = std::fs::File::create(output).with_context(|| format!("cannot create --output {output}"))?;
        Box::new(io::BufWriter::new(file))
    };
    let deals = generate_outcomes(events, settings, &mut out)?;
    eprintln!("leadscore: wrote {events} events and {deals} opportunities for {leads} leads to {output}");
    Ok(())
}

/// `events` generated events turned into a history with known-truth deals
/// (`leadscore_synth::outcomes`), as JSON lines; how many deals it has.
fn generate_outcomes(events: u64, settings: leadscore_synth::Settings, out: &mut impl Write) -> io::Result<usize> {
    let seed = settings.seed;
    let mut generator = leadscore_synth::Generator::new(settings);
    let all: Vec<_> = (0..events).map(|_| generator.next_event()).collect();
    let (all, truths) = leadscore_synth::outcomes::with_outcomes(all, seed);
    let mut line = Vec::with_capacity(512);
    for e in &all {
        line.clear();
        leadscore_codec::encode_event_json(&mut line, e);
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(truths.len())
}

pub(crate) fn wire_format(name: &str, schema_id: u32) -> leadscore::loadgen::WireFormat {
    match name {
        "avro" => leadscore::loadgen::WireFormat::Avro { schema_id },
        _ => leadscore::loadgen::WireFormat::Json,
    }
}

pub(crate) fn check_share(flag: &str, share: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&share) {
        anyhow::bail!("{flag} {share}: expected a share from 0 to 1");
    }
    Ok(())
}

/// `leadscore gen --bootstrap-servers`: produces with a progress bar, then a
/// summary line.
pub(crate) fn produce_to_kafka(load: &leadscore::loadgen::Load) -> anyhow::Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    leadscore::demo::on_signal(stop.clone());
    let to = if load.by_kind { "the topics of their kinds".to_string() } else { load.topic.clone() };
    let mut bar = leadscore::progress::Progress::new(format!("producing to {to}"), load.events);
    let summary = leadscore::loadgen::produce(load, &stop, &mut |_, _| {}, &mut |n| bar.update(n))?;
    bar.finish(summary.events);
    eprintln!(
        "leadscore gen: {} events ({} bad) to {} on {}: {:.1} MiB in {:.2} s, {:.0} events/s, {:.1} MiB/s",
        summary.events,
        summary.bad,
        to,
        load.bootstrap_servers,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.bytes as f64 / (1 << 20) as f64 / summary.elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}
