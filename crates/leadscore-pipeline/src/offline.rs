//! Offline scoring: a file of JSON events, one per line, through the same
//! processing step the service runs, over an in-memory store, writing every
//! score change and segment transition the service would publish, one JSON
//! object per line. So `leadscore score` and the stream cannot drift apart.
//!
//! The whole file is one partition read in order, in event time: before each
//! event, every timer due strictly before the latest event time seen fires (in
//! due order, ties by lead id). At the end, `until` fires the timers due up to
//! and including that instant. Bad lines are reported with their line number
//! and error class, as the service would dead-letter them.

use crate::admission::Admission;
use crate::messages::{headers, InputMessage, OutputTopic, Topics};
use crate::processor::{Processor, StateCache, Step, StepContext, StepError, TimeMode};
use leadscore_core::{Millis, Model};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

/// The topic name offline lines are read as (any kind, `type` required).
const TOPIC: &str = "events";
/// Lines processed per step.
const BATCH: usize = 8192;
/// Leads whose decoded states are kept between steps; beyond, all are
/// written back to the store (memory: roughly 1 to 2 KB per lead).
const CACHED_LEADS: usize = 200_000;

/// What a run did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub events_read: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub erased: u64,
    pub score_changes: u64,
    pub transitions: u64,
    pub timer_transitions: u64,
    pub leads: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events read: {} applied, {} duplicates, {} rejected; {} leads erased; \
             {} score changes, {} segment transitions ({} by timer); {} leads in state",
            self.events_read,
            self.applied,
            self.duplicates,
            self.rejected,
            self.erased,
            self.score_changes,
            self.transitions,
            self.timer_transitions,
            self.leads
        )
    }
}

/// Why an offline run stopped.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// How an offline run goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Fire the timers due up to and including this instant at the end.
    pub until: Option<Millis>,
    /// Report progress to `err` every two seconds.
    pub progress: bool,
    /// The admission rules, as the service in event-time mode has them.
    pub admission: Admission,
}

/// Scores every line of `input`, writing records to `out` and problems,
/// progress (when asked) and the summary to `err`.
pub fn score(
    model: &Model,
    input: impl BufRead,
    options: &Options,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    score_into(&MemoryStore::new(), model, input, options, out, err)
}

/// [`score`] into a given store, which then holds every lead's final state
/// (partition 0): the reference the simulation compares the service's state
/// with.
pub fn score_into(
    store: &MemoryStore,
    model: &Model,
    input: impl BufRead,
    options: &Options,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    let summary = score_steps(store, model, input, options, |step| write_records(step, out), err)?;
    out.flush()?;
    Ok(summary)
}

/// Each score change and transition of `step`, as a JSON line.
fn write_records(step: &Step, out: &mut impl Write) -> io::Result<()> {
    for o in step.outputs.iter().filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions)) {
        out.write_all(o.value.as_deref().unwrap_or_default())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// [`score_into`], handing each step (its typed records are in
/// `step.observations.published`) to `on_step` instead of writing JSON: for
/// tools that analyse what a model does with a history (`leadscore replay`,
/// `leadscore review`).
pub fn score_steps(
    store: &MemoryStore,
    model: &Model,
    input: impl BufRead,
    options: &Options,
    mut on_step: impl FnMut(&Step) -> io::Result<()>,
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    let topics = Topics { inputs: [(TOPIC.to_string(), None)].into_iter().collect(), ..Topics::default() };
    // Decoded states stay in memory between steps (up to CACHED_LEADS): a
    // lead's state is decoded and encoded once, not at every step; the
    // changelog, which would need the bytes, is not wanted here.
    let cache = StateCache::new(CACHED_LEADS);
    let processor = Processor {
        admission: options.admission,
        changelog_per_step: false,
        cache: Some(&cache),
        ..Processor::new(model, store, &topics, TimeMode::EventTime)
    };
    let Options { until, progress, .. } = *options;
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut last_report = started;
    let mut batch = Vec::with_capacity(BATCH);
    for (n, line) in input.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.events_read += 1;
        batch.push(InputMessage {
            topic: TOPIC.to_string(),
            partition: 0,
            offset: n as i64 + 1,
            key: None,
            payload: Some(line),
            timestamp: None,
        });
        if batch.len() == BATCH {
            let arrivals = batch.drain(..).map(|m| processor.decode(m)).collect();
            let step = processor.process_arrivals(0, arrivals, StepContext::default())?;
            commit(store, step, &mut summary, &mut on_step, err)?;
            if cache.full() {
                write_back(store, model, &cache)?;
            }
            if progress && last_report.elapsed() > Duration::from_secs(2) {
                last_report = Instant::now();
                let rate = summary.events_read as f64 / started.elapsed().as_secs_f64();
                writeln!(err, "leadscore: {} events read ({rate:.0}/s)", summary.events_read)?;
            }
        }
    }
    let arrivals = batch.drain(..).map(|m| processor.decode(m)).collect();
    let step = processor.process_arrivals(0, arrivals, StepContext::default())?;
    commit(store, step, &mut summary, &mut on_step, err)?;
    if let Some(until) = until {
        commit(store, processor.tick(0, until)?, &mut summary, &mut on_step, err)?;
    }
    write_back(store, model, &cache)?;
    summary.leads = store.lead_count() as u64;
    writeln!(err, "leadscore: {summary}")?;
    Ok(summary)
}

/// Writes the cached states the store lags behind on into it.
fn write_back(store: &MemoryStore, model: &Model, cache: &StateCache) -> Result<(), OfflineError> {
    let mut batch = leadscore_store::WriteBatch::default();
    cache.write_back(model, &mut batch);
    store.write(&batch).map_err(StepError::from)?;
    Ok(())
}

/// Hands a step to `on_step`, reports its rejected lines, and commits it.
fn commit(
    store: &MemoryStore,
    step: Step,
    summary: &mut Summary,
    on_step: &mut impl FnMut(&Step) -> io::Result<()>,
    err: &mut impl Write,
) -> Result<(), OfflineError> {
    on_step(&step)?;
    for o in &step.outputs {
        match o.topic {
            OutputTopic::ScoreChanges | OutputTopic::Transitions => {}
            OutputTopic::DeadLetters => {
                let header = |name: &str| {
                    o.headers
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map_or(String::new(), |(_, v)| String::from_utf8_lossy(v).into_owned())
                };
                writeln!(
                    err,
                    "line {}: {}: {}",
                    header(headers::SOURCE_OFFSET),
                    header(headers::ERROR_CLASS),
                    header(headers::ERROR_MESSAGE)
                )?;
            }
            OutputTopic::Changelog => {}
        }
    }
    let s = &step.stats;
    summary.applied += s.applied;
    summary.duplicates += s.duplicates;
    summary.rejected += s.dead_lettered;
    summary.erased += s.erased;
    summary.score_changes += s.score_changes;
    summary.transitions += s.transitions;
    summary.timer_transitions += s.timer_transitions;
    store.write(&step.write).map_err(StepError::from)?;
    Ok(())
}
