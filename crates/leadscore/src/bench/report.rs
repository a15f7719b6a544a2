//! The benchmark's results and their table: each measurement side by side
//! with the ceiling, so that a number always comes with what it is bounded by.

use std::fmt::Write;
use std::time::Duration;

/// One throughput measurement.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub events: u64,
    pub elapsed: Duration,
    pub peak_rss_bytes: Option<u64>,
    pub state_bytes: Option<u64>,
    /// leadscore's store commits and their mean duration.
    pub commits: Option<(u64, Duration)>,
    /// The service's CPU time (user and system, all threads) per event.
    pub cpu_per_event: Option<Duration>,
    /// The service's minor page faults over the run.
    pub minor_faults: Option<u64>,
    /// Why there is no measurement (e.g. the broker has no transactions).
    pub skipped: Option<String>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Event-to-output latency at a fixed rate.
#[derive(Debug, Clone)]
pub struct Latency {
    pub name: String,
    pub rate: u64,
    pub seconds: u64,
    /// Outputs matched to the events that caused them.
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// leadscore's own histogram over the same time (broker timestamp to
    /// outputs acknowledged): upper bounds of the p50 and p99 buckets.
    pub own_p50: Option<f64>,
    pub own_p99: Option<f64>,
}

/// One restore of every partition by a new owner.
#[derive(Debug, Clone)]
pub struct Restore {
    pub name: String,
    pub partitions: i32,
    /// Changelog records read.
    pub records: u64,
    /// The service's own restore time, all partitions.
    pub elapsed: Duration,
    /// The service's CPU time (all threads) from before its first record to
    /// the end of the restore, per record.
    pub cpu_per_record: Option<Duration>,
    pub peak_rss_bytes: Option<u64>,
}

impl Restore {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `q` quantile (0 to 1) of sorted values, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(String::new, |b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The results as a Markdown table, the ratio taken to the row named
/// `ceiling`.
pub fn render(heading: &str, rows: &[Row], ceiling: &str, latencies: &[Latency], restores: &[Restore]) -> String {
    let base = rows.iter().find(|r| r.name == ceiling && r.skipped.is_none()).map(Row::rate);
    let mut out = String::new();
    let _ = writeln!(out, "{heading}\n");
    let _ = writeln!(
        out,
        "| measurement | events | seconds | events/s | of ceiling | CPU per event | peak RSS | state on disk | commits (mean) | \
         minor faults |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "| {} | skipped: {why} | | | | | | | | |", r.name);
            continue;
        }
        let commits = r.commits.map_or_else(String::new, |(n, mean)| format!("{n} ({})", ms(mean)));
        let ratio = base.map_or_else(String::new, |b| format!("{:.0}%", 100.0 * r.rate() / b));
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {ratio} | {} | {} | {} | {commits} | {} |",
            r.name,
            r.events,
            r.elapsed.as_secs_f64(),
            r.rate(),
            r.cpu_per_event.map_or_else(String::new, |c| format!("{:.2} µs", c.as_secs_f64() * 1e6)),
            mib(r.peak_rss_bytes),
            mib(r.state_bytes),
            r.minor_faults.map_or_else(String::new, |f| f.to_string())
        );
    }
    if !latencies.is_empty() {
        let _ = writeln!(
            out,
            "\n| event-to-output latency | rate (events/s) | seconds | outputs | p50 | p99 | p99.9 | max | \
             leadscore's own p50 / p99 |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        // Bucket upper bounds of the service's histogram.
        let bound = |b: Option<f64>| {
            b.map_or_else(|| "?".to_string(), |s| format!("≤ {}", ms(Duration::from_secs_f64(s.min(1e6)))))
        };
        for l in latencies {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                l.name,
                l.rate,
                l.seconds,
                l.samples,
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                bound(l.own_p50),
                bound(l.own_p99)
            );
        }
    }
    if !restores.is_empty() {
        let _ = writeln!(
            out,
            "\n| restore from the changelog | partitions | changelog records | seconds | records/s | CPU per record | peak RSS |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for r in restores {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} | {} | {} |",
                r.name,
                r.partitions,
                r.records,
                r.elapsed.as_secs_f64(),
                r.rate(),
                r.cpu_per_record.map_or_else(String::new, |c| format!("{:.2} µs", c.as_secs_f64() * 1e6)),
                mib(r.peak_rss_bytes)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(500));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(990));
        assert_eq!(quantile(&v, 0.999), Duration::from_millis(999));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(1000));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_table_gives_ratios_to_the_ceiling_and_says_why_a_row_is_missing() {
        let row = |name: &str, secs| Row {
            name: name.into(),
            events: 1000,
            elapsed: Duration::from_secs(secs),
            peak_rss_bytes: Some(300 << 20),
            state_bytes: None,
            commits: None,
            cpu_per_event: Some(Duration::from_nanos(2_500)),
            minor_faults: Some(4321),
            skipped: None,
        };
        let mut skipped = row("eos", 1);
        skipped.skipped = Some("no transactions".into());
        let restore = Restore {
            name: "alo: a new owner restores".into(),
            partitions: 7,
            records: 300_000,
            elapsed: Duration::from_millis(1500),
            cpu_per_record: Some(Duration::from_nanos(3_250)),
            peak_rss_bytes: Some(100 << 20),
        };
        let table = render("# t", &[row("ceiling", 1), row("alo", 2), skipped], "ceiling", &[], &[restore]);
        assert!(table.contains("| ceiling | 1000 | 1.00 | 1000 | 100% | 2.50 µs | 300 MiB |  |"), "{table}");
        assert!(table.contains("| alo | 1000 | 2.00 | 500 | 50% |"), "{table}");
        assert!(table.contains("| 4321 |\n"), "minor faults last: {table}");
        assert!(table.contains("| eos | skipped: no transactions |"), "{table}");
        assert!(
            table.contains("| alo: a new owner restores | 7 | 300000 | 1.50 | 200000 | 3.25 µs | 100 MiB |"),
            "{table}"
        );
    }
}
