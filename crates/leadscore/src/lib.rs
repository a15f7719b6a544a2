//! The leadscore command's library: everything the binary does, callable from
//! tests.
//!
//! # Layout
//!
//! - [`offline`]: scores a file of events in event time, as `leadscore score` does.
//! - [`describe`]: the readable model summary of `leadscore check-model`.
//! - [`demo`]: `leadscore demo`, the pipeline on an embedded broker.
//! - [`service`]: `leadscore run`, the streaming service from its configuration.

pub mod demo;
pub mod describe;
pub mod offline;
pub mod service;
