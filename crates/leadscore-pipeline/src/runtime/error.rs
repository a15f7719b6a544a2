//! Why the runtime stopped, and whether a restart from the last commit can
//! help (the service restarts the loop for those, after a pause).

use crate::ports::PortError;
use crate::processor::StepError;
use leadscore_store::{Partition, StoreError};

/// See the module documentation.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("input: {0}")]
    Source(PortError),
    #[error("publishing outputs: {0}")]
    Sink(PortError),
    #[error("reading the changelog: {0}")]
    Changelog(PortError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(
        "changelog restore of partition {partition} made no progress for {seconds} s at offset {at} (reading up \
         to {high})"
    )]
    RestoreStalled { partition: Partition, at: i64, high: i64, seconds: u64 },
    #[error("{0}")]
    TooManyDeadLetters(String),
}

impl RunError {
    /// Whether restarting the loop from the last commit may help.
    pub fn is_retriable(&self) -> bool {
        match self {
            RunError::Source(e) | RunError::Sink(e) | RunError::Changelog(e) => matches!(e, PortError::Retriable(_)),
            RunError::RestoreStalled { .. } => true,
            RunError::Store(_) | RunError::Step(_) | RunError::TooManyDeadLetters(_) => false,
        }
    }
}
