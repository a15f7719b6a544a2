//! Configuration for leadscore: scoring models, and the service configuration.
//!
//! A model file is TOML (see `config/seed-model.toml`), read through figment into
//! the plain structures of [`model_file`], then compiled by [`compile`] into a
//! checked [`leadscore_core::Model`]. Every error names the key path
//! (`segments[4].when[0].since`), the bad value, and what was expected.
//!
//! # Layout
//!
//! - [`error`]: the one error type, with a key path.
//! - [`model_file`]: the file format, as serde structures.
//! - [`compile`]: names resolved, values checked, core model built.
//! - [`service`]: the configuration of `leadscore run`.
//! - [`millis`]: `_ms` keys read as durations.

pub mod compile;
pub mod error;
pub mod millis;
pub mod model_file;
pub mod service;

pub use error::ConfigError;

use figment::providers::{Format, Toml};
use figment::Figment;
use leadscore_core::Model;
use std::path::Path;

/// The seed model (docs/model.md), as shipped in `config/seed-model.toml`.
pub const SEED_MODEL_TOML: &str = include_str!("../../../config/seed-model.toml");

/// Loads and checks a model file.
pub fn load_model(path: &Path) -> Result<Model, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
    parse_model(&text).map_err(|e| e.in_file(path))
}

/// Parses and checks a model from TOML text.
pub fn parse_model(toml: &str) -> Result<Model, ConfigError> {
    let file: model_file::ModelFile = Figment::from(Toml::string(toml)).extract().map_err(ConfigError::from_figment)?;
    compile::compile(&file)
}

/// The seed model, compiled.
pub fn seed_model() -> Model {
    parse_model(SEED_MODEL_TOML).expect("the shipped seed model is valid")
}
