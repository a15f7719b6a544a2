//! The model's life cycle, offline: what a model did (or would do) with a
//! history of events.
//!
//! - [`replay`]: a history scored under the current model and a candidate side
//!   by side (`leadscore replay`): who would enter or leave each segment, how
//!   the score distribution shifts, the points each rule awards.
//! - [`review`]: the periodic review against closed deals (`leadscore
//!   review`): conversion and lift by score tier and grade, ROC AUC, time to
//!   close, won value, the points of each rule among won and lost deals, and
//!   suggested changes; as a table, JSON, or a self-contained HTML report.
//!
//! Both score the history with the same processing step the service runs
//! ([`leadscore_pipeline::offline`]), so they see what the service would have
//! published.
//!
//! # Layout
//!
//! - [`input`]: a history, read once per model.
//! - [`history`]: one model over a history: score timelines, awards, segment
//!   entries and final states per lead.
//! - [`deals`]: the opportunities of a history and how they ended.
//! - [`stats`]: AUC, ROC, medians, thresholds for a precision.
//! - [`replay`], [`review`]: the two reports.
//! - [`charts`]: the review's charts (SVG) and its HTML page.

pub mod charts;
pub mod deals;
pub mod history;
pub mod input;
pub mod replay;
pub mod review;
pub mod stats;

pub use input::Input;

/// Why a replay or review could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Offline(#[from] leadscore_pipeline::offline::OfflineError),
    #[error("{0}")]
    Invalid(String),
}
