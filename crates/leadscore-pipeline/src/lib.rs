//! leadscore's processing step, independent of Kafka and RocksDB.
//!
//! A [`Processor`] turns one poll batch of input messages of one partition into
//! the output records to publish and one [`leadscore_store::WriteBatch`] (states,
//! timers, input offsets) to commit once the outputs are delivered. Committing
//! state and offsets together, after the outputs, is what gives at-least-once
//! output with exactly-once state: a crash before the commit replays the batch
//! against the old state and re-publishes the same records with the same
//! `(lead_id, version)`.
//!
//! Timers: in event-time mode the watermark is the latest event time of the
//! partition, and before each event every timer due strictly before it fires, in
//! (due, lead) order: exactly what `leadscore score` does, so the stream and the
//! offline scorer publish the same records. In wall-clock mode, [`Processor::tick`]
//! fires the timers due by now, with or without input.
//!
//! # Layout
//!
//! - [`aligner`]: event-time order across co-partitioned topics and poll batches.
//! - [`messages`]: input messages, output records, topics.
//! - [`observations`]: what a step saw, aggregated for metrics.
//! - [`processor`]: the processing step.

pub mod aligner;
pub mod messages;
pub mod observations;
pub mod processor;

pub use aligner::{Aligner, Arrival, Release};
pub use messages::{InputMessage, OutputRecord, OutputTopic, Topics};
pub use observations::{EventOutcome, Observations, Published};
pub use processor::{Formats, Processor, Stats, Step, TimeMode};
