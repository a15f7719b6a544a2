//! `leadscore run`: the streaming service, wired from its configuration: the
//! pipeline on its own thread, the admin HTTP server (metrics, health, lookups)
//! on another. Logs a progress line every ten seconds and stops cleanly (the
//! batch in hand is published and committed) on ctrl-c or SIGTERM.

use anyhow::Context;
use leadscore_config::service::{Guarantee, ServiceConfig, TimeSource};
use leadscore_kafka::{run as run_loop, Counters, RunSettings};
use leadscore_pipeline::{TimeMode, Topics};
use leadscore_rocks::{RocksSettings, RocksStore};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn wall_clock() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs until a signal; see the module documentation.
pub fn run(config: &ServiceConfig) -> anyhow::Result<()> {
    let model = match config.model.file.trim() {
        "" => leadscore_config::seed_model(),
        f => leadscore_config::load_model(std::path::Path::new(f))?,
    };
    std::fs::create_dir_all(&config.state.dir)
        .with_context(|| format!("cannot create state.dir {}", config.state.dir.display()))?;
    let store = Arc::new(RocksStore::open(
        &config.state.dir,
        &RocksSettings {
            block_cache_bytes: config.state.block_cache_mb << 20,
            write_buffer_bytes: config.state.write_buffer_mb << 20,
            sync_writes: config.state.sync_writes,
        },
    )?);
    let t = &config.topics;
    let settings = RunSettings {
        bootstrap_servers: config.kafka.bootstrap_servers.clone(),
        group_id: config.kafka.group_id.clone(),
        topics: Topics {
            inputs: config.input_kinds()?,
            score_changes: t.score_changes.clone(),
            transitions: t.transitions.clone(),
            dead_letters: t.dead_letters.clone(),
            changelog: t.changelog.clone(),
        },
        time_mode: match config.processing.time {
            TimeSource::WallClock => TimeMode::WallClock,
            TimeSource::EventTime => TimeMode::EventTime,
        },
        librdkafka: {
            let mut options = config.kafka.librdkafka.clone();
            if !config.kafka.group_instance_id.trim().is_empty() {
                options.insert("group.instance.id".into(), config.kafka.group_instance_id.trim().into());
            }
            options
        },
        max_batch: config.processing.max_batch,
        poll_timeout: Duration::from_millis(config.processing.poll_timeout_ms),
        tick_interval: Duration::from_millis(config.processing.tick_interval_ms),
        max_idle: Duration::from_millis(config.processing.max_idle_ms),
        delivery_timeout: Duration::from_millis(config.processing.delivery_timeout_ms),
        restore_stall_timeout: Duration::from_millis(config.processing.restore_stall_timeout_ms),
        formats: formats(config)?,
        guarantee: match config.processing.guarantee {
            Guarantee::AtLeastOnce => leadscore_kafka::Guarantee::AtLeastOnce,
            Guarantee::ExactlyOnce => leadscore_kafka::Guarantee::ExactlyOnce,
        },
        transactional_id: transactional_id(config),
        dead_letter_max_share: config.processing.dead_letter_max_share,
        dead_letter_window: config.processing.dead_letter_window,
    };
    tracing::info!(
        bootstrap = %settings.bootstrap_servers,
        group = %settings.group_id,
        state = %config.state.dir.display(),
        model = %model.version,
        "leadscore starting"
    );
    let stop = Arc::new(AtomicBool::new(false));
    crate::demo::on_signal(stop.clone());
    let counters = Arc::new(Counters::default());
    let model = Arc::new(model);
    let admin = match config.admin.listen.trim() {
        "" => None,
        listen => {
            Some(start_admin(listen, &settings.group_id, &model, &store, &counters, &stop, Arc::new(wall_clock))?)
        }
    };
    let result = std::thread::scope(|s| {
        let pipeline = s.spawn(|| run_loop(&settings, &model, &*store, &wall_clock, &stop, &counters));
        let mut next = Instant::now() + Duration::from_secs(10);
        while !pipeline.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next += Duration::from_secs(10);
                tracing::info!(
                    messages = Counters::get(&counters.messages),
                    applied = Counters::get(&counters.applied),
                    dead_lettered = Counters::get(&counters.dead_lettered),
                    transitions = Counters::get(&counters.transitions),
                    "progress"
                );
            }
        }
        pipeline.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(admin) = admin {
        let _ = admin.join();
    }
    result?;
    eprintln!(
        "leadscore: stopped cleanly after {} messages ({} applied, {} duplicates, {} dead letters); {} score changes, {} segment transitions",
        Counters::get(&counters.messages),
        Counters::get(&counters.applied),
        Counters::get(&counters.duplicates),
        Counters::get(&counters.dead_lettered),
        Counters::get(&counters.score_changes),
        Counters::get(&counters.transitions)
    );
    Ok(())
}

/// Binds the admin server now (so that a taken port is a startup error naming
/// the key) and serves it on its own thread until `stop`.
pub(crate) fn start_admin(
    listen: &str,
    group: &str,
    model: &Arc<leadscore_core::Model>,
    store: &Arc<RocksStore>,
    counters: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("admin.listen = {listen:?}: cannot listen on this address"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let probe = store.clone();
    let state = leadscore_admin::AdminState {
        counters: counters.clone(),
        store: store.clone(),
        model: model.clone(),
        clock,
        memory: Some(Arc::new(move || (probe.block_cache_usage() as u64, probe.memtable_bytes()))),
        group: group.to_string(),
    };
    let stop = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tracing::info!(%address, "admin server listening: /metrics /healthz /readyz /segments /leads/{{lead_id}}");
    Ok(std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "admin server cannot start"),
            };
            let shutdown = async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            if let Err(e) = leadscore_admin::serve(listener, leadscore_admin::router(state), shutdown).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        })
    }))
}

/// The Avro codec, when inputs or outputs are Avro.
fn formats(config: &ServiceConfig) -> anyhow::Result<leadscore_pipeline::Formats> {
    use leadscore_config::service::Encoding;
    let f = &config.formats;
    if f.input == Encoding::Json && f.output == Encoding::Json {
        return Ok(leadscore_pipeline::Formats::default());
    }
    let url = f.schema_registry_url.trim();
    let codec = Arc::new(
        leadscore_codec::AvroCodec::new(leadscore_codec::AvroSettings {
            schema_files: config.avro_schema_ids()?,
            registry_url: (!url.is_empty()).then(|| url.to_string()),
            score_change_id: f.score_change_schema_id,
            transition_id: f.transition_schema_id,
        })
        .map_err(|e| anyhow::anyhow!("formats.avro_schema_files: {e}"))?,
    );
    Ok(leadscore_pipeline::Formats {
        avro_input: (f.input == Encoding::Avro).then(|| codec.clone()),
        avro_output: (f.output == Encoding::Avro).then_some(codec),
    })
}

/// `kafka.transactional_id`, or one derived from the group and the instance.
fn transactional_id(config: &ServiceConfig) -> String {
    let k = &config.kafka;
    if !k.transactional_id.trim().is_empty() {
        return k.transactional_id.trim().to_string();
    }
    let instance = if k.group_instance_id.trim().is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "leadscore".into())
    } else {
        k.group_instance_id.trim().to_string()
    };
    format!("{}-{instance}", k.group_id)
}
