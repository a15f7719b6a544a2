//! leadscore's Kafka adapter. rdkafka types stop here: messages become
//! [`leadscore_pipeline::InputMessage`]s at the edge.
//!
//! # Layout
//!
//! - [`runtime`]: the consume, process, produce, commit loop (at-least-once).
//! - [`producer`]: publishing output records and waiting for their delivery.
//! - [`restore`]: bringing a newly assigned partition's state up to date from the changelog.
//! - [`counters`]: what the loop has done, shared with observers (console, admin server).
//! - [`metrics`]: the Prometheus metrics.
//! - [`embedded`]: the in-process broker of `leadscore demo` and `dev-broker`.
//! - [`events`]: producing input events (demo, `leadscore gen`, benchmarks, tests).

pub mod counters;
pub mod embedded;
pub mod events;
pub mod metrics;
pub mod producer;
pub mod restore;
pub mod runtime;

pub use counters::Counters;
pub use metrics::Metrics;
pub use runtime::{group_consumer_config, run, Guarantee, RunError, RunSettings};
