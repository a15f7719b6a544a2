//! The restore measurement: after a guarantee's drain, a new instance with an
//! empty state directory joins the same group, as a replacement machine
//! would, and rebuilds every partition's state from the changelog before it
//! consumes. Its rate is changelog records over the service's own restore
//! time (`leadscore_restore_duration_seconds`: partitions are restored one
//! after another), read from its `/metrics` once every partition is restored;
//! the group join before it is not counted. (On librdkafka's mock broker that
//! join waits the session timeout less a second: the mock holds a group whose
//! last member left in a rebalance for that long, so the bench gives its
//! services a 6 s session timeout there. A Kafka broker does not wait.)
//!
//! `/metrics` is sampled slowly on purpose: a scrape every few milliseconds
//! showed as half the service's CPU in a profile of the restore.

use super::report::Restore;
use super::subject::{parse_histogram, scrape, Subject, SubjectSettings};
use crate::progress::Progress;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// How often `/metrics` is sampled for completion (not for timing).
const SAMPLE: Duration = Duration::from_millis(50);

/// What one `/metrics` sample says of the restore.
struct Sample {
    records: u64,
    restoring: u64,
    assigned: u64,
    seconds: f64,
}

fn sample(admin: &str) -> Sample {
    let text = scrape(admin);
    let seconds = parse_histogram(&text, "leadscore_restore_duration_seconds").sum;
    let get = |prefix: &str| {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Sample {
        records: get("leadscore_restore_records_total"),
        restoring: get("leadscore_restoring_partitions"),
        assigned: get("leadscore_assigned_partitions"),
        seconds,
    }
}

/// Starts a new instance in `dir` (empty) with `settings` (the group of the
/// drain that wrote the changelog, now stopped) and measures its restore of
/// `partitions` partition groups.
pub fn measure(
    name: &str,
    dir: &std::path::Path,
    settings: &SubjectSettings,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<Restore> {
    let mut subject = Subject::start(dir, settings).context("starting the restoring instance")?;
    let mut bar = Progress::new("restore ", partitions as u64);
    let started = Instant::now();
    // The service's CPU time before it read its first record (sampled while
    // it had read none), so that its start-up is not counted.
    let mut cpu_before = subject.cpu_seconds();
    loop {
        subject.consumed()?; // fails if the service exited
        let s = sample(&subject.admin);
        if s.records == 0 {
            cpu_before = subject.cpu_seconds();
        }
        bar.update(s.assigned);
        if s.assigned >= partitions as u64 && s.restoring == 0 {
            bar.finish(s.assigned);
            if s.records == 0 || s.seconds <= 0.0 {
                bail!("the new instance owns every partition but read no changelog record: nothing was restored");
            }
            let cpu_per_record = subject
                .cpu_seconds()
                .zip(cpu_before)
                .map(|(after, before)| Duration::from_secs_f64((after - before) / s.records as f64));
            let restore = Restore {
                name: name.to_string(),
                partitions,
                records: s.records,
                elapsed: Duration::from_secs_f64(s.seconds),
                cpu_per_record,
                peak_rss_bytes: subject.peak_rss(),
            };
            subject.stop()?;
            return Ok(restore);
        }
        if started.elapsed() > timeout {
            bail!(
                "the new instance restored {} changelog records and owns {} of {partitions} partitions \
                 ({} restoring) after {timeout:?}",
                s.records,
                s.assigned,
                s.restoring
            );
        }
        std::thread::sleep(SAMPLE);
    }
}
