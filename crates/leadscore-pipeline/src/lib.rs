//! leadscore's runtime, independent of Kafka and RocksDB.
//!
//! The [`processor`] turns released input messages of one partition (and the
//! passage of time) into output records and one atomic state write. The
//! [`runtime`] is the loop around it: it polls a [`ports::Source`], restores
//! newly owned partitions from a [`ports::Changelog`], merges co-partitioned
//! topics in event-time order ([`aligner`]), publishes through a
//! [`ports::Sink`] and commits to a [`leadscore_store::StateStore`], with the
//! guarantee configured. The Kafka and RocksDB adapters live in
//! `leadscore-kafka` and `leadscore-rocks`; the deterministic simulation that
//! proves the guarantees under crashes lives in `leadscore-sim`;
//! docs/runtime.md describes the commit protocols.
//!
//! Offline scoring ([`offline`]) drives the same processor over a file and an
//! in-memory store.
//!
//! # Layout
//!
//! - [`admission`]: plausible time ranges and unknown event kinds.
//! - [`aligner`]: event-time order across co-partitioned topics and poll batches.
//! - [`messages`]: input messages, output records, topics.
//! - [`processor`]: the processing step.
//! - [`ports`]: what the runtime needs from the world.
//! - [`runtime`]: the loop, its commit protocols, restores and membership.
//! - [`offline`]: `leadscore score`.

pub mod admission;
pub mod aligner;
pub mod messages;
pub mod offline;
pub mod ports;
pub mod processor;
pub mod runtime;

pub use admission::{Admission, UnknownKinds};
pub use aligner::{Aligner, Arrival, Position, Release, SchemaWait};
pub use messages::{ChangelogKind, InputMessage, OutputRecord, OutputTopic, Topics};
pub use processor::{Formats, Processor, Step, StepContext, StepError, TimeMode};
pub use runtime::{Guarantee, Ports, RunError, Runtime, RuntimeSettings};
