//! The configuration error: where (file and key path), what was found, what was
//! expected.

use std::fmt;
use std::path::Path;

/// A configuration or model error. Its `Display` is the whole message a user
/// needs: `seed-model.toml: rules[2].cap.per: "1 day" is not a duration: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<String>,
    /// Dotted key path, e.g. `segments[4].when[0].since`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: None, path: path.into(), message: message.into() }
    }

    pub fn io(path: &Path, err: &std::io::Error) -> ConfigError {
        ConfigError {
            file: Some(path.display().to_string()),
            path: String::new(),
            message: format!("cannot read: {err}"),
        }
    }

    pub fn in_file(mut self, path: &Path) -> ConfigError {
        self.file = Some(path.display().to_string());
        self
    }

    /// Turns figment's error (type mismatches, unknown or missing keys, TOML
    /// syntax) into ours, with the key path written the same way as ours.
    pub fn from_figment(err: figment::Error) -> ConfigError {
        let path = err
            .path
            .iter()
            .map(|k| if k.chars().all(|c| c.is_ascii_digit()) { format!("[{k}]") } else { format!(".{k}") })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string();
        let message = match &err.kind {
            figment::error::Kind::Message(m) => m.clone(),
            kind => kind.to_string(),
        };
        ConfigError { file: None, path, message }
    }
}
