//! The service configuration of `leadscore run`: embedded defaults
//! (`config/leadscore.default.toml`), then the file given with `--config`, then
//! `LEADSCORE__SECTION__KEY` environment variables. Unknown keys are errors that
//! name their path; values are checked here so the engine never re-checks them.
//!
//! - `check`: the checks serde cannot express.
//! - `print`: the effective configuration as `check-config` prints it.

use crate::error::ConfigError;
use crate::millis;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use leadscore_core::Kind;
use leadscore_pipeline::Topics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leadscore_core::time::MAX_DURATION;
pub use leadscore_pipeline::{Admission, Guarantee, TimeMode, UnknownKinds};

/// The defaults, as shipped.
pub const DEFAULT_SERVICE_TOML: &str = include_str!("../../../config/leadscore.default.toml");

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub processing: ProcessingConfig,
    pub state: StateConfig,
    pub model: ModelConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub formats: FormatsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FormatsConfig {
    pub input: Encoding,
    pub output: Encoding,
    /// `http(s)://host:port` of a schema registry, if any.
    pub schema_registry_url: Option<String>,
    /// Basic authentication to the registry (with the password), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_password: Option<String>,
    /// Bearer authentication to the registry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_bearer_token: Option<String>,
    #[serde(rename = "schema_registry_connect_timeout_ms", with = "millis")]
    pub schema_registry_connect_timeout: Duration,
    /// The deadline of one registry request.
    #[serde(rename = "schema_registry_request_timeout_ms", with = "millis")]
    pub schema_registry_request_timeout: Duration,
    /// The schema ids of Avro outputs; not set: by subject with a registry
    /// (see [`FormatsConfig::auto_register_schemas`]), else 1 and 2.
    #[serde(default)]
    pub score_change_schema_id: Option<u32>,
    #[serde(default)]
    pub transition_schema_id: Option<u32>,
    /// Register the output schemas under their TopicNameStrategy subjects at
    /// startup (true), or only look them up (false).
    pub auto_register_schemas: bool,
    /// Input writer schemas by Confluent schema id.
    #[serde(default)]
    pub avro_schema_files: BTreeMap<String, PathBuf>,
}

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Json,
    Avro,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the admin HTTP server runs.
    pub enabled: bool,
    /// Where it listens.
    #[serde(deserialize_with = "socket_address")]
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer <token>` on every route but the
    /// probes (/healthz, /readyz), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// Whether /leads/{lead_id} shows the lead's profile (personal data).
    #[serde(default)]
    pub expose_profile: bool,
}

/// A `host:port` socket address, with an error that names the value.
fn socket_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?}: expected an address like \"127.0.0.1:9898\" (IP and port)"))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Static group membership (librdkafka's group.instance.id); none: dynamic.
    pub group_instance_id: Option<String>,
    /// The producer's transactional.id in exactly-once mode; none: derived.
    pub transactional_id: Option<String>,
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// Topic names; each defaults to the name in [`Topics::default`], the one
/// place the default names are set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    #[serde(default = "default_score_changes")]
    pub score_changes: String,
    #[serde(default = "default_transitions")]
    pub transitions: String,
    #[serde(default = "default_dead_letters")]
    pub dead_letters: String,
    /// Not set: `<kafka.group_id>-state-changelog` (as Kafka Streams derives
    /// its changelogs from the application id), so that two deployments in
    /// one cluster never share one.
    #[serde(default)]
    pub changelog: String,
    /// Topic → kind name, or `any`. Empty after loading: the default topics.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// What becomes of events whose `type` the model does not know.
    #[serde(default = "default_unknown_kinds")]
    pub unknown_kinds: UnknownKinds,
}

fn default_unknown_kinds() -> UnknownKinds {
    UnknownKinds::DeadLetter
}

/// The changelog's name when `topics.changelog` is not set.
pub fn changelog_of(group_id: &str) -> String {
    format!("{group_id}-state-changelog")
}

fn default_score_changes() -> String {
    Topics::default().score_changes
}
fn default_transitions() -> String {
    Topics::default().transitions
}
fn default_dead_letters() -> String {
    Topics::default().dead_letters
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    pub guarantee: Guarantee,
    pub time: TimeMode,
    pub max_batch: usize,
    /// Threads a poll batch's partition steps run on; 0: one per core, at
    /// most [`ProcessingConfig::AUTO_STEP_THREADS_MAX`].
    pub step_threads: usize,
    #[serde(rename = "poll_timeout_ms", with = "millis")]
    pub poll_timeout: Duration,
    #[serde(rename = "max_idle_ms", with = "millis")]
    pub max_idle: Duration,
    #[serde(rename = "tick_interval_ms", with = "millis")]
    pub tick_interval: Duration,
    #[serde(rename = "delivery_timeout_ms", with = "millis")]
    pub delivery_timeout: Duration,
    /// How often the state store is committed; not set: the guarantee's
    /// default ([`ProcessingConfig::commit_interval`]).
    #[serde(rename = "commit_interval_ms", default, with = "millis::option", skip_serializing_if = "Option::is_none")]
    pub commit_interval: Option<Duration>,
    #[serde(rename = "restore_stall_timeout_ms", with = "millis")]
    pub restore_stall_timeout: Duration,
    pub dead_letter_max_share: f64,
    pub dead_letter_window: u64,
    /// How far ahead of the wall clock (or of the partition's event time) an
    /// event may be; not set: the time mode's default.
    #[serde(rename = "max_future_ms", default, with = "millis::option", skip_serializing_if = "Option::is_none")]
    pub max_future: Option<Duration>,
    /// Events before this instant (RFC 3339) are out of range.
    pub min_timestamp: String,
    /// The largest input message (key and value) decoded.
    pub max_message_bytes: usize,
}

impl ProcessingConfig {
    /// The most threads `step_threads = 0` chooses: a batch of a few thousand
    /// messages split further gives each thread too little to be worth it.
    pub const AUTO_STEP_THREADS_MAX: usize = 8;
    /// The most threads `step_threads` may ask for.
    pub const STEP_THREADS_MAX: usize = 64;

    /// `step_threads`, with 0 resolved to the machine's cores (at most
    /// [`ProcessingConfig::AUTO_STEP_THREADS_MAX`]).
    pub fn step_threads(&self) -> usize {
        match self.step_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(Self::AUTO_STEP_THREADS_MAX),
            n => n,
        }
    }

    /// `commit_interval_ms`, or the guarantee's default: at least once
    /// commits RocksDB once a second (its outputs are sent at once all the
    /// same; a crash loses nothing: the changelog has every committed
    /// interval, and the input after it is processed again);
    /// exactly once commits a transaction and RocksDB every 100 ms (its
    /// outputs visible to read_committed consumers only then, so the
    /// interval bounds how late they are seen).
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval.unwrap_or(match self.guarantee {
            Guarantee::AtLeastOnce => Duration::from_millis(1000),
            Guarantee::ExactlyOnce => Duration::from_millis(100),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: PathBuf,
    /// Memory for lead states processed but not yet committed to RocksDB.
    pub cache_mb: usize,
    pub block_cache_mb: usize,
    pub write_buffer_mb: usize,
    pub sync_writes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model file; none: the built-in seed model.
    pub file: Option<PathBuf>,
}

/// The default input topics and their kinds, as config values.
pub fn default_inputs() -> BTreeMap<String, String> {
    Topics::default().inputs.into_iter().map(|(t, k)| (t, k.map_or("any", Kind::as_str).to_string())).collect()
}

impl ServiceConfig {
    /// The input writer schema files by numeric schema id.
    pub fn avro_schema_ids(&self) -> Result<BTreeMap<u32, PathBuf>, ConfigError> {
        self.formats
            .avro_schema_files
            .iter()
            .map(|(id, path)| {
                id.parse::<u32>().map(|id| (id, path.clone())).map_err(|_| {
                    ConfigError::at(
                        format!("formats.avro_schema_files.{id}"),
                        format!("{id:?}: expected a schema id (a number)"),
                    )
                })
            })
            .collect()
    }

    /// Loads the defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<ServiceConfig, ConfigError> {
        Self::load_files(file.as_slice())
    }

    /// Loads the defaults, then each file in order (later files override
    /// earlier ones: e.g. a ConfigMap, then a Secret), then the environment.
    pub fn load_files<P: AsRef<Path>>(files: &[P]) -> Result<ServiceConfig, ConfigError> {
        Self::load_with_env(files, Env::prefixed("LEADSCORE__").split("__"))
    }

    fn load_with_env<P: AsRef<Path>>(files: &[P], env: Env) -> Result<ServiceConfig, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_SERVICE_TOML));
        for path in files {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
            // Each file on its own first, so that a mistake names its file.
            Figment::from(Toml::string(DEFAULT_SERVICE_TOML))
                .merge(Toml::string(&text))
                .extract::<ServiceConfig>()
                .map_err(|e| ConfigError::from_figment(e).in_file(path))?;
            figment = figment.merge(Toml::string(&text));
        }
        let mut config: ServiceConfig = figment.merge(env).extract().map_err(ConfigError::from_figment)?;
        // A table given by the user replaces the default list rather than
        // merging with it (which would keep topics the user does not have).
        if config.topics.inputs.is_empty() {
            config.topics.inputs = default_inputs();
        }
        if config.topics.changelog.trim().is_empty() {
            config.topics.changelog = changelog_of(&config.kafka.group_id);
        }
        config.check()?;
        Ok(config)
    }

    /// The admission rules (see [`Admission`]).
    pub fn admission(&self) -> Result<Admission, ConfigError> {
        let p = &self.processing;
        let min_timestamp = Admission::parse_min_timestamp(&p.min_timestamp)
            .map_err(|e| ConfigError::at("processing.min_timestamp", e))?;
        let max_future = match p.max_future.map(|d| d.as_millis()) {
            None => None,
            Some(ms) if ms == 0 || ms > MAX_DURATION as u128 => {
                return Err(ConfigError::at(
                    "processing.max_future_ms",
                    format!("{ms}: expected above 0 and at most 100 years ({MAX_DURATION})"),
                ))
            }
            Some(ms) => Some(ms as i64),
        };
        Ok(Admission { min_timestamp, max_future, unknown_kinds: self.topics.unknown_kinds })
    }

    /// The input topics and their kinds (`None`: any kind).
    pub fn input_kinds(&self) -> Result<BTreeMap<String, Option<Kind>>, ConfigError> {
        self.topics
            .inputs
            .iter()
            .map(|(topic, kind)| match kind.as_str() {
                "any" => Ok((topic.clone(), None)),
                k => Kind::parse(k).map(|k| (topic.clone(), Some(k))).ok_or_else(|| {
                    ConfigError::at(
                        format!("topics.inputs.{topic}"),
                        format!(
                            "{k:?} is not an event kind; expected \"any\" or one of: {}",
                            Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                }),
            })
            .collect()
    }
}

mod check;
mod print;

#[cfg(test)]
mod tests;
