//! The checks of a loaded service configuration that serde cannot express:
//! topics that collide, empty or zero values, settings that need each other.
//! Each error names the key, the value and what was expected.

use super::*;

impl ServiceConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let t = &self.topics;
        let outputs = [
            ("topics.score_changes", &t.score_changes),
            ("topics.transitions", &t.transitions),
            ("topics.dead_letters", &t.dead_letters),
            ("topics.changelog", &t.changelog),
        ];
        for (i, (key, name)) in outputs.iter().enumerate() {
            if let Some(input) = t.inputs.keys().find(|input| input == name) {
                return Err(ConfigError::at(
                    *key,
                    format!("{input:?} is also an input topic; expected a topic of its own"),
                ));
            }
            if let Some((other, _)) = outputs[..i].iter().find(|(_, n)| n == name) {
                return Err(ConfigError::at(*key, format!("{name:?} is also {other}; expected a topic of its own")));
            }
        }
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
        self.avro_schema_ids()?;
        self.admission()?;
        if self.admin.bearer_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::at("admin.bearer_token", "empty: expected a token, or no bearer_token at all"));
        }
        let share = self.processing.dead_letter_max_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(ConfigError::at(
                "processing.dead_letter_max_share",
                format!("{share}: expected a share above 0 and at most 1 (1 never stops)"),
            ));
        }
        let f = &self.formats;
        if f.input == Encoding::Avro && f.schema_registry_url.is_none() && f.avro_schema_files.is_empty() {
            return Err(ConfigError::at(
                "formats.input",
                "\"avro\" needs writer schemas: set formats.schema_registry_url or formats.avro_schema_files",
            ));
        }
        let url = f.schema_registry_url.as_deref().unwrap_or("").trim();
        if f.schema_registry_url.is_some() && !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::at(
                "formats.schema_registry_url",
                format!("{url:?}: expected an http:// or https:// URL"),
            ));
        }
        if f.schema_registry_username.is_some() != f.schema_registry_password.is_some() {
            return Err(ConfigError::at(
                "formats.schema_registry_username",
                "basic authentication needs both schema_registry_username and schema_registry_password",
            ));
        }
        if f.schema_registry_username.is_some() && f.schema_registry_bearer_token.is_some() {
            return Err(ConfigError::at(
                "formats.schema_registry_bearer_token",
                "give either a bearer token or a username and password, not both",
            ));
        }
        let p = &self.processing;
        if p.step_threads > ProcessingConfig::STEP_THREADS_MAX {
            return Err(ConfigError::at(
                "processing.step_threads",
                format!(
                    "{}: expected 0 (one per core) up to {} threads",
                    p.step_threads,
                    ProcessingConfig::STEP_THREADS_MAX
                ),
            ));
        }
        for (key, v) in [
            ("processing.max_batch", p.max_batch as u64),
            ("processing.poll_timeout_ms", p.poll_timeout.as_millis() as u64),
            ("processing.tick_interval_ms", p.tick_interval.as_millis() as u64),
            ("processing.delivery_timeout_ms", p.delivery_timeout.as_millis() as u64),
            ("processing.restore_stall_timeout_ms", p.restore_stall_timeout.as_millis() as u64),
            ("processing.dead_letter_window", p.dead_letter_window),
            ("processing.max_message_bytes", p.max_message_bytes as u64),
            ("formats.schema_registry_connect_timeout_ms", f.schema_registry_connect_timeout.as_millis() as u64),
            ("formats.schema_registry_request_timeout_ms", f.schema_registry_request_timeout.as_millis() as u64),
            ("state.block_cache_mb", self.state.block_cache_mb as u64),
            ("state.cache_mb", self.state.cache_mb as u64),
            ("state.write_buffer_mb", self.state.write_buffer_mb as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::at(key, "0: expected a value above zero"));
            }
        }
        Ok(())
    }
}
