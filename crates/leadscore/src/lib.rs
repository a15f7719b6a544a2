//! The leadscore command's library: everything the binary does, callable from
//! tests.
//!
//! # Layout
//!
//! - [`describe`]: the readable model summary of `leadscore check-model`.
//! - [`demo`]: `leadscore demo`, the pipeline on an embedded broker.
//! - [`service`]: `leadscore run`, the streaming service from its configuration.
//! - [`loadgen`]: the synthetic stream produced to a broker (`leadscore gen`).
//! - [`bench`](mod@bench): `leadscore bench`, the end-to-end benchmark.
//! - [`progress`]: progress lines of long commands.
//! - [`topics_cmd`]: `leadscore topics check|create`.
//! - [`output_schemas`]: the schema ids of Avro outputs, by subject.
//!
//! The library sets the process's allocator, so that the binary, its tests and
//! the workspace benchmarks (which link this library) all run on jemalloc.

pub mod bench;
pub mod demo;
pub mod describe;
pub mod loadgen;
pub mod output_schemas;
pub mod progress;
pub mod service;
pub mod topics_cmd;

/// jemalloc for everything in the process, RocksDB and librdkafka included
/// (its unprefixed `malloc`): fewer cycles per allocation than glibc's malloc
/// on the hot path (decoded events, output records, write batches); glibc's
/// malloc and free were a fifth of the service's profile.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
