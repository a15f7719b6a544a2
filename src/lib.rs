//! Workspace-level test and benchmark support for leadscore.
//!
//! The root package exists so that `tests/` (integration and golden tests that
//! span crates) and `benches/` sit at the top of the repository. This library
//! re-exports the crates they use.

pub use leadscore as cli;
pub use leadscore_codec as codec;
pub use leadscore_config as config;
pub use leadscore_core as core;
pub use leadscore_pipeline as pipeline;
pub use leadscore_synth as synth;
