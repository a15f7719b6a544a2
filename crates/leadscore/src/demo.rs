//! `leadscore demo`: the whole pipeline on one machine with nothing to install.
//! An embedded Kafka-protocol broker, a synthetic event stream, the pipeline on
//! RocksDB, and a live console view.
//!
//! Time is compressed (two simulated days per real second by default) and the
//! lead population drifts (new leads arrive, old ones fall silent), so that within
//! a minute or so leads climb tiers, decay, and go inactive.

use anyhow::Context;
use leadscore_codec::encode_event_json;
use leadscore_core::time::{format_rfc3339, Millis, DAY, MAX_DURATION};
use leadscore_core::Model;
use leadscore_kafka::embedded::EmbeddedBroker;
use leadscore_kafka::events::EventProducer;
use leadscore_kafka::KafkaSettings;
use leadscore_pipeline::ports::Clock as _;
use leadscore_pipeline::{Admission, RuntimeSettings, TimeMode, Topics};
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_synth::{Generator, Settings};
use leadscore_telemetry::{Counters, Telemetry};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Demo settings, from the command line.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this long (default: run until ctrl-c).
    pub duration: Option<Duration>,
    /// Input events per real second.
    pub rate: u64,
    /// Leads active at any one time.
    pub leads: u64,
    /// Simulated time per real second.
    pub time_scale: Millis,
    /// Where RocksDB lives (default: a temporary directory, removed at the end).
    pub data_dir: Option<PathBuf>,
    pub partitions: i32,
    /// The admin server's address (metrics, lookups), if any.
    pub admin: Option<String>,
}

/// A clock that runs `scale` simulated milliseconds per real second, from
/// 2026-01-01.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    sim_start: Millis,
    scale: Millis,
}

impl leadscore_pipeline::ports::Clock for Clock {
    fn now(&self) -> Millis {
        self.sim_start + (self.start.elapsed().as_secs_f64() * self.scale as f64) as Millis
    }

    fn wall(&self) -> Millis {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Sets `stop` on ctrl-c or SIGTERM.
pub fn on_signal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        stop.store(true, Ordering::Relaxed);
    });
}

/// Produces the synthetic stream at `rate` events per second, stamped with the
/// compressed clock; one message in a thousand is broken, to show dead letters.
fn generate(
    bootstrap: &str,
    opts: &DemoOptions,
    clock: Clock,
    stop: &AtomicBool,
    produced: &AtomicU64,
) -> anyhow::Result<()> {
    let producer = EventProducer::new(bootstrap).context("creating the event producer")?;
    let mut generator = Generator::new(Settings { leads: opts.leads, seed: 7, ..Settings::default() });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut line = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * opts.rate as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let now = clock.now();
        // The population drifts by a fiftieth a simulated day: a lead is cold for
        // about 40 days, hot (the generator favours the first fifth) for about 10,
        // then silent, so it climbs tiers, decays and goes inactive.
        generator.set_lead_offset(((now - clock.sim_start) as f64 / DAY as f64 * opts.leads as f64 / 50.0) as u64);
        generator.set_now(now);
        while sent < due {
            let event = generator.next_event();
            line.clear();
            if (sent + 1).is_multiple_of(1000) {
                line.extend_from_slice(br#"{"event_id":"broken","lead_id":"#);
            } else {
                encode_event_json(&mut line, &event);
            }
            producer.send("lead-events", event.lead_id.as_str().as_bytes(), &line)?;
            sent += 1;
        }
        produced.store(sent, Ordering::Relaxed);
    }
    producer.flush(Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    Ok(())
}

fn short(json: &str) -> String {
    let field = |name: &str| -> String {
        let key = format!("\"{name}\":");
        json.split(&key)
            .nth(1)
            .map(|rest| rest.trim_start_matches('"').split(['"', ',', '}']).next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    format!(
        "{}  {}  {:<7} {:<28} ({}; score {}, grade {})",
        field("timestamp").get(..16).unwrap_or(""),
        field("lead_id"),
        field("transition"),
        field("segment"),
        field("cause"),
        field("score"),
        field("grade")
    )
}

/// Prints one view; rates are over the `interval` seconds since the last one.
fn frame(
    out: &mut impl Write,
    clock: &Clock,
    model: &Model,
    t: &Telemetry,
    last: &mut [u64; 4],
    interval: u64,
    tty: bool,
) -> std::io::Result<()> {
    let secs = clock.start.elapsed().as_secs();
    let get = Counters::get;
    let c = &t.counters;
    let now = [get(&c.messages), get(&c.score_changes), get(&c.transitions), get(&c.timer_transitions)];
    let rate: Vec<u64> = now.iter().zip(last.iter()).map(|(n, l)| (n - l) / interval.max(1)).collect();
    *last = now;
    if tty {
        write!(out, "\x1b[H\x1b[2J")?;
    }
    writeln!(
        out,
        "leadscore demo: {:02}:{:02} elapsed, simulated {} (ctrl-c to stop)",
        secs / 60,
        secs % 60,
        &format_rfc3339(clock.now())[..10]
    )?;
    writeln!(
        out,
        "  events {:>7}/s  (total {}, dead letters {})   score changes {:>7}/s   transitions {:>6}/s ({} by timer)",
        rate[0],
        now[0],
        get(&c.dead_lettered),
        rate[1],
        rate[2],
        rate[3]
    )?;
    let entered = t.history.entered();
    let name = |i: u16| model.segments.get(i as usize).map_or("?", |s| s.name.as_str());
    let list: Vec<String> = entered.iter().map(|(s, n)| format!("{} {n}", name(*s))).collect();
    writeln!(out, "  entered so far: {}", list.join(" · "))?;
    writeln!(out, "  latest transitions:")?;
    for r in t.history.recent_transitions(8) {
        writeln!(out, "    {}", short(&r.to_json(model)))?;
    }
    out.flush()
}

/// Runs the demo; see the module documentation.
pub fn demo(model: &Model, opts: &DemoOptions) -> anyhow::Result<()> {
    let topics = Topics { inputs: [("lead-events".to_string(), None)].into_iter().collect(), ..Topics::default() };
    let broker = EmbeddedBroker::start(&topics, opts.partitions).map_err(anyhow::Error::msg)?;
    let bootstrap = broker.bootstrap_servers();
    let temp;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory for RocksDB")?;
            temp.path().to_path_buf()
        }
    };
    let store = Arc::new(RocksStore::open(&dir, &RocksSettings::default())?);
    let clock = Clock { start: Instant::now(), sim_start: 1_767_225_600_000, scale: opts.time_scale };
    let stop = Arc::new(AtomicBool::new(false));
    on_signal(stop.clone());
    let telemetry = Arc::new(Telemetry::default());
    let admin = match opts.admin.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(listen) => {
            let shared = Arc::new(model.clone());
            let clock: Arc<dyn Fn() -> Millis + Send + Sync> = Arc::new(move || clock.now());
            // The demo's leads are generated: their profiles are no one's.
            let access = leadscore_admin::Access { bearer_token: None, expose_profile: true };
            let parts = crate::service::AdminParts {
                group: "leadscore-demo",
                model: &shared,
                store: &store,
                telemetry: &telemetry,
                clock,
                access,
            };
            match crate::service::start_admin(listen, parts, &stop) {
                Ok(handle) => {
                    eprintln!("leadscore demo: admin server on http://{listen} (/metrics /segments /leads/{{id}})");
                    Some(handle)
                }
                Err(e) => {
                    eprintln!("leadscore demo: no admin server ({e:#}); the demo runs without it");
                    None
                }
            }
        }
    };
    let produced = AtomicU64::new(0);
    // Events are stamped on the compressed clock, which soon runs ahead of
    // the broker's timestamps: no event is too far in the future here.
    let admission = Admission { max_future: Some(MAX_DURATION), ..Admission::default() };
    let settings = RuntimeSettings { topics, time_mode: TimeMode::WallClock, admission, ..RuntimeSettings::default() };
    let mut kafka =
        KafkaSettings { bootstrap_servers: bootstrap.clone(), group_id: "leadscore-demo".into(), ..Default::default() };
    // The mock broker answers a fetch that found nothing only after the full
    // fetch.wait.max.ms (500 ms by default), even when data arrives meanwhile:
    // outputs would trail their events by up to half a second.
    kafka.librdkafka.insert("fetch.wait.max.ms".into(), "10".into());
    eprintln!("leadscore demo: broker {bootstrap}, state in {}", dir.display());

    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let generator = s.spawn(|| generate(&bootstrap, opts, clock, &stop, &produced));
        let pipeline = s.spawn(|| leadscore_kafka::run(&kafka, &settings, model, &*store, &clock, &stop, &telemetry));
        let tty = std::io::stdout().is_terminal();
        let mut last = [0u64; 4];
        let mut out = std::io::stdout().lock();
        let mut next_frame = Instant::now() + Duration::from_secs(if tty { 1 } else { 5 });
        while !stop.load(Ordering::Relaxed) {
            if opts.duration.is_some_and(|d| started.elapsed() >= d)
                || pipeline.is_finished()
                || generator.is_finished()
            {
                stop.store(true, Ordering::Relaxed);
                break;
            }
            if Instant::now() >= next_frame {
                // A terminal gets a live view; a log gets a frame every 5 s.
                let interval = if tty { 1 } else { 5 };
                next_frame += Duration::from_secs(interval);
                frame(&mut out, &clock, model, &telemetry, &mut last, interval, tty)?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let g = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))?;
        let p = pipeline.join().map_err(|_| anyhow::anyhow!("the pipeline panicked"))?;
        g.context("generator")?;
        p.context("pipeline")?;
        anyhow::Ok(())
    });
    let get = Counters::get;
    let counters = &telemetry.counters;
    eprintln!(
        "leadscore demo: {} events produced, {} consumed ({} applied, {} dead letters); {} score changes, {} segment transitions ({} by timer)",
        produced.load(Ordering::Relaxed),
        get(&counters.messages),
        get(&counters.applied),
        get(&counters.dead_lettered),
        get(&counters.score_changes),
        get(&counters.transitions),
        get(&counters.timer_transitions)
    );
    stop.store(true, Ordering::Relaxed);
    if let Some(admin) = admin {
        let _ = admin.join();
    }
    drop(broker);
    result
}
