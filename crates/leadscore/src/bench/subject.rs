//! The service under test: `leadscore run` in its own process, exactly as a
//! user runs it, so that its RSS is its own (not the broker's or the load
//! generator's). Progress is read from its `/metrics`.

use crate::loadgen::WireFormat;
use anyhow::{bail, Context};
use leadscore_config::service::{Encoding, Guarantee, ServiceConfig, TimeMode};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Names of one run's topics and group.
#[derive(Debug, Clone)]
pub struct SubjectTopics {
    /// The preloaded events, shared by all runs.
    pub input: String,
    /// This run's latency measurement: a second input topic, so that the
    /// shared one stays as preloaded (the mock broker keeps only 5 MB per
    /// partition) and later runs do not drain earlier runs' latency events.
    pub latency_input: String,
    pub score_changes: String,
    pub transitions: String,
    pub dead_letters: String,
    pub changelog: String,
}

impl SubjectTopics {
    pub fn with_prefix(input: &str, prefix: &str) -> SubjectTopics {
        SubjectTopics {
            input: input.to_string(),
            latency_input: format!("{prefix}latency-events"),
            score_changes: format!("{prefix}lead-score-changes"),
            transitions: format!("{prefix}lead-segment-transitions"),
            dead_letters: format!("{prefix}lead-events-dlq"),
            changelog: format!("{prefix}leadscore-state-changelog"),
        }
    }

    /// The topics of this run (created per run).
    pub fn outputs(&self) -> Vec<String> {
        vec![
            self.latency_input.clone(),
            self.score_changes.clone(),
            self.transitions.clone(),
            self.dead_letters.clone(),
            self.changelog.clone(),
        ]
    }
}

/// A running `leadscore run`.
pub struct Subject {
    child: Child,
    pub admin: String,
    pub state_dir: PathBuf,
    /// The file the service logs to; `None`: the bench's own stderr
    /// (LEADSCORE_BENCH_LOGS).
    log: Option<PathBuf>,
}

/// What the subject's config sets; the rest are leadscore's defaults.
pub struct SubjectSettings<'a> {
    pub bootstrap: &'a str,
    pub group: &'a str,
    pub guarantee: Guarantee,
    pub topics: &'a SubjectTopics,
    pub format: WireFormat,
    pub block_cache_mb: u64,
    pub write_buffer_mb: u64,
    /// librdkafka's fetch.wait.max.ms, when set.
    pub fetch_wait_ms: Option<u32>,
    /// processing.commit_interval_ms, when set.
    pub commit_interval: Option<std::time::Duration>,
    /// processing.step_threads, when set.
    pub step_threads: Option<usize>,
    /// processing.time = "wall_clock" instead of "event_time".
    pub wall_clock: bool,
    /// librdkafka's session.timeout.ms, when set (the mock broker holds a
    /// group whose last member left for this long less a second).
    pub session_timeout_ms: Option<u32>,
}

impl SubjectSettings<'_> {
    /// The service config: the built-in defaults (and LEADSCORE__ variables,
    /// which the service applies anyway) with this run's topics, group,
    /// guarantee, format and budgets; timers in event time, as the preload is
    /// a replay, unless the run asks for the wall clock.
    fn config(&self, state_dir: &Path, admin: &str, schema: &Path) -> anyhow::Result<ServiceConfig> {
        let mut c = ServiceConfig::load(None)?;
        let t = self.topics;
        c.kafka.bootstrap_servers = self.bootstrap.to_string();
        c.kafka.group_id = self.group.to_string();
        c.kafka.transactional_id = Some(format!("{}-tx", self.group));
        if let Some(ms) = self.fetch_wait_ms {
            c.kafka.librdkafka.insert("fetch.wait.max.ms".into(), ms.to_string());
        }
        if let Some(ms) = self.session_timeout_ms {
            c.kafka.librdkafka.insert("session.timeout.ms".into(), ms.to_string());
            c.kafka.librdkafka.insert("heartbeat.interval.ms".into(), (ms / 10).to_string());
        }
        c.topics.score_changes = t.score_changes.clone();
        c.topics.transitions = t.transitions.clone();
        c.topics.dead_letters = t.dead_letters.clone();
        c.topics.changelog = t.changelog.clone();
        c.topics.inputs = [(t.input.clone(), "any".to_string()), (t.latency_input.clone(), "any".to_string())].into();
        c.processing.guarantee = self.guarantee;
        c.processing.time = if self.wall_clock { TimeMode::WallClock } else { TimeMode::EventTime };
        if self.commit_interval.is_some() {
            c.processing.commit_interval = self.commit_interval;
        }
        if let Some(n) = self.step_threads {
            c.processing.step_threads = n;
        }
        c.state.dir = state_dir.to_path_buf();
        c.state.block_cache_mb = self.block_cache_mb as usize;
        c.state.write_buffer_mb = self.write_buffer_mb as usize;
        c.admin.listen = admin.parse().context("the admin address")?;
        c.formats.input = match self.format {
            WireFormat::Json => Encoding::Json,
            WireFormat::Avro { .. } => Encoding::Avro,
        };
        if let WireFormat::Avro { schema_id } = self.format {
            c.formats.avro_schema_files.insert(schema_id.to_string(), schema.to_path_buf());
        }
        Ok(c)
    }
}

fn free_address() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// How often a drain's progress is read from the service's `/metrics`. Each
/// scrape costs the service CPU (about 2-3 ms on this 2-core machine under
/// load, most of it in the kernel's loopback TCP and timers), which the
/// drain's CPU per event counts: every 50 ms that was about 4% of the
/// service's samples (perf by thread, session 25; docs/benchmarks.md), a load no Prometheus puts on a service. The drain's time is
/// taken from its outputs, not from these samples.
const PROGRESS_SAMPLE: Duration = Duration::from_millis(250);

impl Subject {
    /// Writes the config into `dir` and starts the service.
    pub fn start(dir: &Path, s: &SubjectSettings) -> anyhow::Result<Subject> {
        let admin = free_address()?;
        let state_dir = dir.join("state");
        // The schema the load generator writes with.
        let schema = dir.join("lead-event.avsc");
        std::fs::write(&schema, leadscore_codec::avro::LEAD_EVENT_AVSC)?;
        let config = s.config(&state_dir, &admin, &schema)?;
        let path = dir.join("leadscore.toml");
        std::fs::write(&path, config.to_toml()).with_context(|| format!("writing {}", path.display()))?;
        let log = dir.join("leadscore.log");
        // LEADSCORE_BENCH_LOGS=1 shows the service's log (for profiling runs);
        // otherwise it goes to a file shown when the service fails.
        let (stderr, level, log) = if std::env::var_os("LEADSCORE_BENCH_LOGS").is_some() {
            (Stdio::inherit(), "info", None)
        } else {
            (Stdio::from(std::fs::File::create(&log)?), "warn", Some(log))
        };
        let exe = std::env::current_exe().context("finding the leadscore binary")?;
        let child = Command::new(exe)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting leadscore run")?;
        Ok(Subject { child, admin, state_dir, log })
    }

    /// Input messages the service has finished (applied, duplicates and dead
    /// letters), from its `/metrics`; 0 until the admin server answers.
    pub fn consumed(&mut self) -> anyhow::Result<u64> {
        if let Some(status) = self.child.try_wait()? {
            bail!("leadscore run exited ({status}); {}", self.log_tail());
        }
        Ok(metric_sum(&self.admin, "leadscore_events_total{"))
    }

    /// Waits until the service has consumed `events`, calling `progress` on the
    /// way. Returns the events consumed and the time from the first sample
    /// that saw any to the end: a fallback for the drain's time, which
    /// [`super::consumers::output_span`] measures from the outputs themselves.
    pub fn wait_consumed(
        &mut self,
        events: u64,
        stall: Duration,
        progress: &mut dyn FnMut(u64),
    ) -> anyhow::Result<(u64, Duration)> {
        let mut first: Option<(u64, Instant)> = None; // (events, when) of the first sample above zero
        let mut last_change = (0u64, Instant::now());
        loop {
            let n = self.consumed()?;
            let now = Instant::now();
            if n != last_change.0 {
                last_change = (n, now);
            } else if now.duration_since(last_change.1) > stall {
                bail!(
                    "leadscore consumed {n} of {events} events and made no progress for {stall:?}; {}",
                    self.log_tail()
                );
            }
            if n > 0 && first.is_none() {
                first = Some((n, now));
            }
            progress(n);
            if n >= events {
                let t0 = first.map_or(now, |(_, t)| t);
                return Ok((n, now.duration_since(t0)));
            }
            std::thread::sleep(PROGRESS_SAMPLE);
        }
    }

    /// A histogram of the service's `/metrics`.
    pub fn histogram(&self, name: &str) -> Histogram {
        parse_histogram(&scrape(&self.admin), name)
    }

    fn stat(&self) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()
    }

    /// CPU time the service has used so far (user and system), on Linux.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = self.stat()?;
        let ticks = stat_field(&stat, UTIME)? + stat_field(&stat, STIME)?;
        // SAFETY: sysconf only reads a constant of the running system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0).then(|| ticks as f64 / hz as f64)
    }

    /// Minor page faults of the service so far, on Linux: mostly pages it
    /// touches for the first time, which the kernel zeroes. A steadier measure
    /// of a change to memory use than CPU time on a shared machine.
    pub fn minor_faults(&self) -> Option<u64> {
        stat_field(&self.stat()?, MINFLT)
    }

    /// Peak resident memory so far (VmHWM), on Linux.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Stops the service with SIGTERM (a clean shutdown), then the size of its
    /// state directory.
    pub fn stop(mut self) -> anyhow::Result<u64> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("leadscore run exited with {status}; {}", self.log_tail());
                }
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("leadscore run did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dir_size(&self.state_dir))
    }

    fn log_tail(&self) -> String {
        self.log.as_deref().map_or_else(|| "its log is above (LEADSCORE_BENCH_LOGS)".to_string(), log_tail)
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fields of `/proc/<pid>/stat`, numbered from 1 as in proc(5).
const MINFLT: usize = 10;
const UTIME: usize = 14;
const STIME: usize = 15;

/// Numeric field `n` of a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so the fields after it are counted from
/// its last `)`.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The last lines of the service's log file, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "it logged no warning or error (LEADSCORE_BENCH_LOGS=1 shows its info log)".to_string();
    }
    format!("its log:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
}

/// The sum of all series of a metric whose lines start with `prefix`.
pub fn metric_sum(admin: &str, prefix: &str) -> u64 {
    scrape(admin)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A Prometheus histogram as read from `/metrics`: cumulative counts by upper
/// bound, the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// What was observed between `earlier` and `self`.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| earlier.buckets.iter().find(|(l, _)| *l == le).map_or(0, |(_, n)| *n);
        Histogram {
            buckets: self.buckets.iter().map(|(le, n)| (*le, n.saturating_sub(before(*le)))).collect(),
            sum: self.sum - earlier.sum,
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// The upper bound of the bucket holding the `q` quantile.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// Reads histogram `name` from a `/metrics` text.
pub fn parse_histogram(text: &str, name: &str) -> Histogram {
    let mut h = Histogram::default();
    let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let le = rest.split('"').next().unwrap_or("");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
            h.buckets.push((le, value(line) as u64));
        } else if line.starts_with(&format!("{name}_sum")) {
            h.sum = value(line);
        } else if line.starts_with(&format!("{name}_count")) {
            h.count = value(line) as u64;
        }
    }
    h
}

/// The `/metrics` text of a running instance ("" if unreachable).
pub fn scrape(admin: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
}

/// Bytes of all files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and parentheses, then state (field 3) on.
        let stat = "4242 (leadscore (x) y) S 1 2 3 4 5 6 1234 8 9 10 700 55 0 0 20 0 9";
        assert_eq!(stat_field(stat, MINFLT), Some(1234));
        assert_eq!(stat_field(stat, UTIME), Some(700));
        assert_eq!(stat_field(stat, STIME), Some(55));
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 3), None, "the state is a letter");
        assert_eq!(stat_field(stat, 40), None);
        assert_eq!(stat_field("no command name", MINFLT), None);
    }

    #[test]
    fn histograms_are_read_diffed_and_bounded() {
        let text = |a, b, c| {
            format!(
                "leadscore_x_seconds_bucket{{le=\"0.01\"}} {a}\nleadscore_x_seconds_bucket{{le=\"0.1\"}} {b}\n\
                 leadscore_x_seconds_bucket{{le=\"+Inf\"}} {c}\nleadscore_x_seconds_sum 1.5\nleadscore_x_seconds_count {c}\n"
            )
        };
        let before = parse_histogram(&text(10, 10, 10), "leadscore_x_seconds");
        let after = parse_histogram(&text(15, 109, 110), "leadscore_x_seconds");
        assert_eq!(after.buckets, vec![(0.01, 15), (0.1, 109), (f64::INFINITY, 110)]);
        let d = after.since(&before);
        assert_eq!(d.count, 100);
        assert_eq!(d.quantile_bound(0.05), Some(0.01));
        assert_eq!(d.quantile_bound(0.5), Some(0.1));
        assert_eq!(d.quantile_bound(0.999), Some(f64::INFINITY));
    }

    #[test]
    fn the_service_runs_in_the_time_mode_asked_for() {
        let topics = SubjectTopics::with_prefix("in", "run-");
        let mode = |wall_clock| {
            let s = SubjectSettings {
                bootstrap: "localhost:9092",
                group: "g",
                guarantee: Guarantee::AtLeastOnce,
                topics: &topics,
                format: WireFormat::Json,
                block_cache_mb: 8,
                write_buffer_mb: 8,
                fetch_wait_ms: None,
                commit_interval: None,
                step_threads: None,
                wall_clock,
                session_timeout_ms: None,
            };
            s.config(Path::new("state"), "127.0.0.1:1", Path::new("schema.avsc")).expect("config").processing.time
        };
        assert_eq!(mode(false), TimeMode::EventTime);
        assert_eq!(mode(true), TimeMode::WallClock);
    }

    #[test]
    fn an_empty_log_is_said_to_be_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("leadscore.log");
        std::fs::write(&log, "").expect("log");
        assert!(log_tail(&log).starts_with("it logged no warning or error"), "{}", log_tail(&log));
        let lines: String = (0..40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, lines).expect("log");
        let tail = log_tail(&log);
        assert!(tail.starts_with("its log:\nline 10\n") && tail.ends_with("line 39"), "{tail}");
    }

    #[test]
    fn dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("a"), [0u8; 100]).expect("a");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).expect("b");
        assert_eq!(dir_size(dir.path()), 123);
    }
}
