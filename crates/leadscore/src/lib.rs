//! The leadscore command's library: everything the binary does, callable from
//! tests.
//!
//! # Layout
//!
//! - [`offline`]: scores a file of events in event time, as `leadscore score` does.
//! - [`describe`]: the readable model summary of `leadscore check-model`.
//! - [`demo`]: `leadscore demo`, the pipeline on an embedded broker.
//! - [`service`]: `leadscore run`, the streaming service from its configuration.
//! - [`loadgen`]: the synthetic stream produced to a broker (`leadscore gen`).
//! - [`bench`](mod@bench): `leadscore bench`, the end-to-end benchmark.
//! - [`progress`]: progress lines of long commands.

pub mod bench;
pub mod demo;
pub mod describe;
pub mod loadgen;
pub mod offline;
pub mod progress;
pub mod service;
