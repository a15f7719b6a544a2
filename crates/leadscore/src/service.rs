//! `leadscore run`: the streaming service, wired from its configuration: the
//! pipeline on its own thread, the admin HTTP server (metrics, health, lookups)
//! on another. Logs a progress line every ten seconds and stops cleanly (the
//! batch in hand is published and committed) on ctrl-c or SIGTERM.

use anyhow::Context;
use leadscore_codec::{Limits, RegistryAuth, RegistrySettings};
use leadscore_config::service::ServiceConfig;
use leadscore_kafka::KafkaSettings;
use leadscore_pipeline::ports::SystemClock;
use leadscore_pipeline::{RunError, RuntimeSettings, Topics};
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_telemetry::{Counters, Telemetry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn wall_clock() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The runtime's settings from the service configuration.
pub fn runtime_settings(config: &ServiceConfig) -> anyhow::Result<RuntimeSettings> {
    let t = &config.topics;
    let p = &config.processing;
    Ok(RuntimeSettings {
        topics: Topics {
            inputs: config.input_kinds()?,
            score_changes: t.score_changes.clone(),
            transitions: t.transitions.clone(),
            dead_letters: t.dead_letters.clone(),
            changelog: t.changelog.clone(),
        },
        time_mode: p.time,
        guarantee: p.guarantee,
        formats: formats(config)?,
        max_batch: p.max_batch,
        step_threads: p.step_threads(),
        poll_timeout: p.poll_timeout,
        tick_interval: p.tick_interval,
        max_idle: p.max_idle,
        delivery_timeout: p.delivery_timeout,
        commit_interval: p.commit_interval(),
        staged_max_bytes: config.state.cache_mb << 20,
        restore_stall_timeout: p.restore_stall_timeout,
        dead_letter_max_share: p.dead_letter_max_share,
        dead_letter_window: p.dead_letter_window,
        admission: config.admission()?,
        limits: Limits { max_message_bytes: p.max_message_bytes, ..Limits::default() },
        ..RuntimeSettings::default()
    })
}

/// Where the brokers are, from the service configuration.
pub fn kafka_settings(config: &ServiceConfig) -> KafkaSettings {
    let k = &config.kafka;
    let mut librdkafka = k.librdkafka.clone();
    if let Some(instance) = &k.group_instance_id {
        librdkafka.insert("group.instance.id".into(), instance.clone());
    }
    KafkaSettings {
        bootstrap_servers: k.bootstrap_servers.clone(),
        group_id: k.group_id.clone(),
        librdkafka,
        transactional_id: Some(transactional_id(config)),
        check_changelog_policy: true,
    }
}

/// Runs the loop, restarting it from the last commit after errors that a
/// restart may cure (a broker unreachable, a delivery or transaction that
/// failed), with a growing pause; other errors, and too many restarts in a
/// row, stop the service.
pub fn supervise(
    run: &mut dyn FnMut() -> Result<(), RunError>,
    stop: &AtomicBool,
    pause: Duration,
) -> Result<(), RunError> {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        match run() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retriable() && !stop.load(Ordering::Relaxed) && failures < 10 => {
                // A run that lasted a while was healthy: count afresh.
                failures = if started.elapsed() > Duration::from_secs(300) { 1 } else { failures + 1 };
                let wait = pause * 2u32.saturating_pow(failures.min(5) - 1);
                tracing::warn!(
                    error = %e, attempt = failures, retry_in_seconds = wait.as_secs_f64(),
                    "the loop stopped; restarting it from the last commit"
                );
                let until = Instant::now() + wait;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs until a signal; see the module documentation.
pub fn run(config: &ServiceConfig) -> anyhow::Result<()> {
    let model = match &config.model.file {
        None => leadscore_config::seed_model(),
        Some(f) => leadscore_config::load_model(f)?,
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
    let settings = runtime_settings(config)?;
    let kafka = kafka_settings(config);
    tracing::info!(
        bootstrap = %kafka.bootstrap_servers,
        group = %kafka.group_id,
        state = %config.state.dir.display(),
        model = %model.version,
        guarantee = settings.guarantee.as_str(),
        "leadscore starting"
    );
    let stop = Arc::new(AtomicBool::new(false));
    crate::demo::on_signal(stop.clone());
    let telemetry = Arc::new(Telemetry::default());
    let model = Arc::new(model);
    let admin = match config.admin.enabled {
        false => None,
        true => Some(start_admin(
            &config.admin.listen.to_string(),
            AdminParts {
                group: &kafka.group_id,
                model: &model,
                store: &store,
                telemetry: &telemetry,
                clock: Arc::new(wall_clock),
                access: leadscore_admin::Access {
                    bearer_token: config.admin.bearer_token.as_deref().map(Arc::from),
                    expose_profile: config.admin.expose_profile,
                },
            },
            &stop,
        )?),
    };
    let clock = SystemClock::default();
    let result = std::thread::scope(|s| {
        let pipeline = s.spawn(|| {
            let mut once = || leadscore_kafka::run(&kafka, &settings, &model, &*store, &clock, &stop, &telemetry);
            supervise(&mut once, &stop, Duration::from_secs(1))
        });
        let mut next = Instant::now() + Duration::from_secs(10);
        while !pipeline.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next += Duration::from_secs(10);
                let c = &telemetry.counters;
                tracing::info!(
                    messages = Counters::get(&c.messages),
                    applied = Counters::get(&c.applied),
                    dead_lettered = Counters::get(&c.dead_lettered),
                    transitions = Counters::get(&c.transitions),
                    "progress"
                );
            }
        }
        pipeline.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))
    })?;
    stop.store(true, Ordering::Relaxed);
    if let Some(admin) = admin {
        let _ = admin.join();
    }
    result?;
    let c = &telemetry.counters;
    eprintln!(
        "leadscore: stopped cleanly after {} messages ({} applied, {} duplicates, {} dead letters); {} score changes, {} segment transitions",
        Counters::get(&c.messages),
        Counters::get(&c.applied),
        Counters::get(&c.duplicates),
        Counters::get(&c.dead_lettered),
        Counters::get(&c.score_changes),
        Counters::get(&c.transitions)
    );
    Ok(())
}

/// What the admin server reads: the service's (or the demo's) parts.
pub(crate) struct AdminParts<'a> {
    pub group: &'a str,
    pub model: &'a Arc<leadscore_core::Model>,
    pub store: &'a Arc<RocksStore>,
    pub telemetry: &'a Arc<Telemetry>,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    pub access: leadscore_admin::Access,
}

/// Binds the admin server now (so that a taken port is a startup error naming
/// the key) and serves it on its own thread until `stop`.
pub(crate) fn start_admin(
    listen: &str,
    parts: AdminParts<'_>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let AdminParts { group, model, store, telemetry, clock, access } = parts;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("admin.listen = {listen:?}: cannot listen on this address"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    if access.bearer_token.is_none() && !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "the admin server is open to the network without admin.bearer_token: anyone who reaches it can read \
             metrics and lead scores"
        );
    }
    let probe = store.clone();
    let state = leadscore_admin::AdminState {
        telemetry: telemetry.clone(),
        store: store.clone(),
        model: model.clone(),
        clock,
        memory: Some(Arc::new(move || (probe.block_cache_usage() as u64, probe.memtable_bytes()))),
        group: group.to_string(),
        access,
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
    let registry = f.schema_registry_url.as_ref().map(|url| RegistrySettings {
        url: url.clone(),
        auth: match (&f.schema_registry_username, &f.schema_registry_password, &f.schema_registry_bearer_token) {
            (Some(u), Some(p), _) => Some(RegistryAuth::Basic { username: u.clone(), password: p.clone() }),
            (_, _, Some(t)) => Some(RegistryAuth::Bearer(t.clone())),
            _ => None,
        },
        connect_timeout: f.schema_registry_connect_timeout,
        request_timeout: f.schema_registry_request_timeout,
        ..RegistrySettings::new(url.clone())
    });
    let (score_change_id, transition_id) =
        if f.output == Encoding::Avro { crate::output_schemas::ids(config, registry.as_ref())? } else { (0, 0) };
    let codec = Arc::new(
        leadscore_codec::AvroCodec::new(leadscore_codec::AvroSettings {
            schema_files: config.avro_schema_ids()?,
            registry,
            score_change_id,
            transition_id,
        })
        .map_err(|e| anyhow::anyhow!("formats: {e}"))?,
    );
    Ok(leadscore_pipeline::Formats {
        avro_input: (f.input == Encoding::Avro).then(|| codec.clone()),
        avro_output: (f.output == Encoding::Avro).then_some(codec),
    })
}

/// `kafka.transactional_id`, or one derived from the group and the instance.
fn transactional_id(config: &ServiceConfig) -> String {
    let k = &config.kafka;
    if let Some(id) = &k.transactional_id {
        return id.clone();
    }
    let instance = k.group_instance_id.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "leadscore".into())
    });
    format!("{}-{instance}", k.group_id)
}
