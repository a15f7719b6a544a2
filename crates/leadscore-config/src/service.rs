//! The service configuration of `leadscore run`: embedded defaults
//! (`config/leadscore.default.toml`), then the file given with `--config`, then
//! `LEADSCORE__SECTION__KEY` environment variables. Unknown keys are errors that
//! name their path; values are checked here so the engine never re-checks them.

use crate::error::ConfigError;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use leadscore_core::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// `http://host:port` of a schema registry; empty: none.
    pub schema_registry_url: String,
    pub score_change_schema_id: u32,
    pub transition_schema_id: u32,
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
    /// host:port of the admin HTTP server; empty disables it.
    pub listen: String,
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
    /// Static group membership (librdkafka's group.instance.id); empty: dynamic.
    pub group_instance_id: String,
    /// The producer's transactional.id in exactly-once mode; empty: derived.
    pub transactional_id: String,
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub score_changes: String,
    pub transitions: String,
    pub dead_letters: String,
    pub changelog: String,
    /// Topic → kind name, or `any`. Empty after loading: [`default_inputs`].
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    WallClock,
    EventTime,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    pub guarantee: Guarantee,
    pub time: TimeSource,
    pub max_batch: usize,
    pub poll_timeout_ms: u64,
    pub max_idle_ms: u64,
    pub tick_interval_ms: u64,
    pub delivery_timeout_ms: u64,
    pub restore_stall_timeout_ms: u64,
    pub dead_letter_max_share: f64,
    pub dead_letter_window: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub block_cache_mb: usize,
    pub write_buffer_mb: usize,
    pub sync_writes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Empty: the built-in seed model.
    pub file: String,
}

/// The input topics of domain.md §2 and their kinds.
pub fn default_inputs() -> BTreeMap<String, String> {
    [
        ("page-views", "page_view"),
        ("email-clicks", "email_click"),
        ("downloads", "download"),
        ("email-bounces", "email_bounce"),
        ("lead-events", "any"),
        ("lead-profiles", "any"),
    ]
    .into_iter()
    .map(|(t, k)| (t.to_string(), k.to_string()))
    .collect()
}

/// librdkafka option names whose values are secrets.
fn is_secret(key: &str) -> bool {
    ["password", "secret", "token", "key.pem", "private"].iter().any(|s| key.contains(s))
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
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::at(
                "kafka.bootstrap_servers",
                "expected host:port[,host:port...], got an empty value",
            ));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(ConfigError::at("kafka.group_id", "expected a consumer group id, got an empty value"));
        }
        if self.topics.inputs.is_empty() {
            return Err(ConfigError::at("topics.inputs", "expected at least one input topic"));
        }
        self.input_kinds()?;
        let listen = self.admin.listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::at(
                "admin.listen",
                format!("{listen:?}: expected an address like \"0.0.0.0:9898\" (or \"\" to disable the admin server)"),
            ));
        }
        self.avro_schema_ids()?;
        let share = self.processing.dead_letter_max_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(ConfigError::at(
                "processing.dead_letter_max_share",
                format!("{share}: expected a share above 0 and at most 1 (1 never stops)"),
            ));
        }
        let f = &self.formats;
        if f.input == Encoding::Avro && f.schema_registry_url.trim().is_empty() && f.avro_schema_files.is_empty() {
            return Err(ConfigError::at(
                "formats.input",
                "\"avro\" needs writer schemas: set formats.schema_registry_url or formats.avro_schema_files",
            ));
        }
        let url = f.schema_registry_url.trim();
        if !url.is_empty() && !url.starts_with("http://") {
            return Err(ConfigError::at(
                "formats.schema_registry_url",
                format!("{url:?}: expected an http:// URL (for https, give the schemas as avro_schema_files)"),
            ));
        }
        for (key, v) in [
            ("processing.max_batch", self.processing.max_batch as u64),
            ("processing.poll_timeout_ms", self.processing.poll_timeout_ms),
            ("processing.tick_interval_ms", self.processing.tick_interval_ms),
            ("processing.delivery_timeout_ms", self.processing.delivery_timeout_ms),
            ("processing.restore_stall_timeout_ms", self.processing.restore_stall_timeout_ms),
            ("processing.dead_letter_window", self.processing.dead_letter_window),
            ("state.block_cache_mb", self.state.block_cache_mb as u64),
            ("state.write_buffer_mb", self.state.write_buffer_mb as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::at(key, "0: expected a value above zero"));
            }
        }
        Ok(())
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

    /// The same configuration with secret values replaced by `*****`, for
    /// printing and logging.
    pub fn redacted(&self) -> ServiceConfig {
        let mut c = self.clone();
        for (k, v) in c.kafka.librdkafka.iter_mut() {
            if is_secret(k) {
                *v = "*****".into();
            }
        }
        c
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        figment::value::Value::serialize(self.redacted())
            .ok()
            .and_then(|v| v.into_dict())
            .map(|d| toml_of(&d))
            .unwrap_or_default()
    }
}

/// A small TOML writer for the effective config (tables of scalars and maps).
fn toml_of(root: &figment::value::Dict) -> String {
    use figment::value::Value;
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(_, s) => format!("{s:?}"),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(_, n) => {
                n.to_u128().map(|n| n.to_string()).or_else(|| n.to_f64().map(|f| f.to_string())).unwrap_or_default()
            }
            other => format!("{other:?}"),
        }
    }
    fn key(k: &str) -> String {
        if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            k.to_string()
        } else {
            format!("{k:?}")
        }
    }
    fn table(out: &mut String, name: &str, d: &figment::value::Dict) {
        out.push_str(&format!("[{name}]\n"));
        let mut nested = Vec::new();
        for (k, v) in d {
            match v {
                Value::Dict(_, inner) => nested.push((k, inner)),
                v => out.push_str(&format!("{} = {}\n", key(k), scalar(v))),
            }
        }
        out.push('\n');
        for (k, inner) in nested {
            table(out, &format!("{name}.{}", key(k)), inner);
        }
    }
    let mut out = String::new();
    for (name, v) in root {
        if let Value::Dict(_, d) = v {
            table(&mut out, &key(name), d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ServiceConfig, ConfigError> {
        // One file per call: the tests run in parallel threads of one process.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("leadscore-config-{}-{call}", std::process::id()));
        std::fs::write(&dir, text).expect("write");
        let r = ServiceConfig::load_with_env(&[&dir], Env::prefixed("LEADSCORE_TEST_NONE__"));
        std::fs::remove_file(&dir).ok();
        r
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let none: [&Path; 0] = [];
        let c = ServiceConfig::load_with_env(&none, Env::prefixed("LEADSCORE_TEST_NONE__")).expect("defaults");
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.processing.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(c.input_kinds().expect("kinds").get("page-views"), Some(&Some(Kind::PageView)));
        assert_eq!(c.input_kinds().expect("kinds").get("lead-events"), Some(&None));
    }

    #[test]
    fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        let c = load_text(
            "[kafka]\nbootstrap_servers = \"k1:9092\"\n[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n",
        )
        .expect("config");
        assert_eq!(c.kafka.bootstrap_servers, "k1:9092");
        assert_eq!(c.kafka.group_id, "leadscore", "untouched keys keep their defaults");
        let printed = c.to_toml();
        assert!(printed.contains("\"sasl.password\" = \"*****\""), "{printed}");
        assert!(!printed.contains("hunter2"));
        assert!(!format!("{:?}", c.redacted()).contains("hunter2"));

        let env = Env::prefixed("LEADSCORE_ENVTEST__").split("__");
        // A variable only this test reads.
        std::env::set_var("LEADSCORE_ENVTEST__KAFKA__GROUP_ID", "from-env");
        let none: [&Path; 0] = [];
        let c = ServiceConfig::load_with_env(&none, env).expect("config");
        std::env::remove_var("LEADSCORE_ENVTEST__KAFKA__GROUP_ID");
        assert_eq!(c.kafka.group_id, "from-env");
    }

    #[test]
    fn an_inputs_table_replaces_the_default_topics() {
        let none: [&Path; 0] = [];
        let defaults = ServiceConfig::load_with_env(&none, Env::prefixed("LEADSCORE_TEST_NONE__")).expect("defaults");
        assert_eq!(defaults.topics.inputs, default_inputs());
        let c = load_text("[topics.inputs]\n\"clicks\" = \"email_click\"\n").expect("config");
        assert_eq!(c.topics.inputs.keys().collect::<Vec<_>>(), ["clicks"]);
    }

    #[test]
    fn mistakes_name_the_key_the_value_and_what_was_expected() {
        let e = load_text("[processing]\nguarantee = \"exactly_twice\"\n").unwrap_err().to_string();
        assert!(e.contains("processing.guarantee") && e.contains("exactly_twice"), "{e}");
        let e = load_text("[kafka]\nbootstrap_server = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("kafka.bootstrap_server") && e.contains("unknown field"), "{e}");
        let e = load_text("[topics.inputs]\n\"web\" = \"pageview\"\n").unwrap_err().to_string();
        assert!(e.contains("topics.inputs.web") && e.contains("\"pageview\" is not an event kind"), "{e}");
        let e = load_text("[state]\nblock_cache_mb = 0\n").unwrap_err().to_string();
        assert!(e.contains("state.block_cache_mb") && e.contains("above zero"), "{e}");
        let e = load_text("[processing]\nmax_batch = \"lots\"\n").unwrap_err().to_string();
        assert!(e.contains("processing.max_batch") && e.contains("lots"), "{e}");
        let e = load_text("[formats]\ninput = \"avro\"\n").unwrap_err().to_string();
        assert!(e.contains("formats.input") && e.contains("schema_registry_url"), "{e}");
        let e = load_text("[formats.avro_schema_files]\none = \"x.avsc\"\n").unwrap_err().to_string();
        assert!(e.contains("formats.avro_schema_files.one") && e.contains("expected a schema id"), "{e}");
        let e = load_text("[formats]\nschema_registry_url = \"https://r\"\n").unwrap_err().to_string();
        assert!(e.contains("formats.schema_registry_url") && e.contains("http://"), "{e}");
        let e = load_text("[admin]\nlisten = \"everywhere\"\n").unwrap_err().to_string();
        assert!(e.contains("admin.listen") && e.contains("everywhere"), "{e}");
    }
}
