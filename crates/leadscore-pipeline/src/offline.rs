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
//!
//! Three threads share the work, a few batches apart: one reads, splits and
//! decodes lines, one runs the steps (the only one that touches state), one
//! encodes and writes their records, in the steps' order.

use crate::admission::Admission;
use crate::aligner::Arrival;
use crate::messages::{headers, InputMessage, OutputTopic, Topics};
use crate::processor::{Processor, StateCache, Step, StepContext, StepError, TimeMode};
use leadscore_codec::{encode_json, RecordContext};
use leadscore_core::{Millis, Model};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_telemetry::PublishedRecord;
use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The topic name offline lines are read as (any kind, `type` required).
const TOPIC: &str = "events";
/// Lines processed per step.
const BATCH: usize = 8192;
/// Leads whose decoded states are kept between steps; beyond, all are
/// written back to the store (memory: roughly 1 to 2 KB per lead).
const CACHED_LEADS: usize = 200_000;
/// Steps between the scorer and the encoder, at most.
const IN_FLIGHT: usize = 3;
/// Decoded batches waiting for the steps, at most: with the one being read
/// and the one being scored, three batches of events are in memory.
const DECODED_AHEAD: usize = 1;

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
    /// Leads whose decoded states stay in memory between steps; beyond,
    /// all are written back to the store. `None`: 200,000.
    pub cached_leads: Option<usize>,
}

/// Scores every line of `input`, writing records to `out` and problems,
/// progress (when asked) and the summary to `err`.
pub fn score(
    model: &Model,
    input: impl BufRead + Send,
    options: &Options,
    out: &mut (impl Write + Send),
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    // The states are not wanted afterwards: the cache is not written back.
    score_to(&MemoryStore::new(), false, model, input, options, out, err)
}

/// [`score`] into a given store, which then holds every lead's final state
/// (partition 0): the reference the simulation compares the service's state
/// with.
///
/// Records are encoded and written on a thread of their own while the next
/// steps run, in the steps' order.
pub fn score_into(
    store: &MemoryStore,
    model: &Model,
    input: impl BufRead + Send,
    options: &Options,
    out: &mut (impl Write + Send),
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    score_to(store, true, model, input, options, out, err)
}

/// [`score_into`]; `keep_states`: every final state ends in `store`.
fn score_to(
    store: &MemoryStore,
    keep_states: bool,
    model: &Model,
    input: impl BufRead + Send,
    options: &Options,
    out: &mut (impl Write + Send),
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    std::thread::scope(|s| {
        // Bounded: the steps wait when the writer falls behind.
        let (records, to_write) = mpsc::sync_channel::<Vec<PublishedRecord>>(IN_FLIGHT);
        let writer = s.spawn(move || -> io::Result<()> {
            for batch in to_write {
                out.write_all(&encode_lines(model, &batch))?;
            }
            out.flush()
        });
        let on_step = |step: &mut Step| -> io::Result<()> {
            let batch = std::mem::take(&mut step.observations.published);
            // It fails only once the writer has stopped on an error, which
            // is what the run then reports.
            records.send(batch).map_err(|_| io::Error::other("the output writer stopped"))
        };
        let scored = steps(store, keep_states, model, input, options, on_step, err);
        drop(records);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The writer's error first: when both failed, it is the cause.
        written?;
        scored
    })
}

/// Each score change and transition of a step, as a JSON line.
fn encode_lines(model: &Model, records: &[PublishedRecord]) -> Vec<u8> {
    let mut lines = Vec::with_capacity(records.len() * 320);
    for r in records {
        let ctx = RecordContext {
            model,
            lead_id: r.lead.as_str(),
            event: r.event.as_ref().map(|(id, kind)| (id.as_str(), *kind)),
        };
        encode_json(&mut lines, &ctx, &r.record, &r.reasons);
        lines.push(b'\n');
    }
    lines
}

/// [`score_into`], handing each step (its typed records are in
/// `step.observations.published`; none is encoded into `step.outputs`) to
/// `on_step` instead of writing JSON: for tools that analyse what a model
/// does with a history (`leadscore replay`, `leadscore review`).
///
/// Lines are read and decoded on a thread of their own, a batch ahead of
/// the steps.
pub fn score_steps(
    store: &MemoryStore,
    model: &Model,
    input: impl BufRead + Send,
    options: &Options,
    on_step: impl FnMut(&mut Step) -> io::Result<()>,
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    steps(store, true, model, input, options, on_step, err)
}

/// [`score_steps`]; without `keep_states`, states still cached at the end
/// are not written to `store`.
fn steps(
    store: &MemoryStore,
    keep_states: bool,
    model: &Model,
    input: impl BufRead + Send,
    options: &Options,
    mut on_step: impl FnMut(&mut Step) -> io::Result<()>,
    err: &mut impl Write,
) -> Result<Summary, OfflineError> {
    let topics = Topics { inputs: [(TOPIC.to_string(), None)].into_iter().collect(), ..Topics::default() };
    // Decoded states stay in memory between steps (up to CACHED_LEADS): a
    // lead's state is decoded and encoded once, not at every step; the
    // changelog, which would need the bytes, is not wanted here.
    let cache = StateCache::new(options.cached_leads.unwrap_or(CACHED_LEADS));
    let processor = Processor {
        admission: options.admission,
        changelog_per_step: false,
        cache: Some(&cache),
        encode_records: false,
        ..Processor::new(model, store, &topics, TimeMode::EventTime)
    };
    let Options { until, progress, .. } = *options;
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut last_report = started;
    std::thread::scope(|s| {
        // Lines are read, split and decoded on a thread of their own, a few
        // batches ahead of the steps (whose thread sets the pace: reading
        // and splitting on it were about a tenth of its time).
        let (decoded_tx, decoded) = mpsc::sync_channel::<io::Result<Vec<Arrival>>>(DECODED_AHEAD);
        // Scored batches go back to be dropped where they were allocated:
        // freeing them on the steps' thread, memory of another thread's
        // allocator cache, cost that thread about a twentieth of its time.
        let (used_tx, used) = mpsc::channel::<Vec<Arrival>>();
        let decoder = &processor;
        s.spawn(move || {
            for batch in read_batches(input, decoder) {
                used.try_iter().for_each(drop);
                let failed = batch.is_err();
                // An error ends the run; so does a closed channel (the steps
                // stopped on one of their own).
                if decoded_tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        for arrivals in decoded {
            let arrivals = arrivals?;
            summary.events_read += arrivals.len() as u64;
            let step = processor.process_arrivals(0, &arrivals, StepContext::default())?;
            // Once the reader has stopped, they are dropped here.
            let _ = used_tx.send(arrivals);
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
        Ok::<_, OfflineError>(())
    })?;
    if let Some(until) = until {
        commit(store, processor.tick(0, until)?, &mut summary, &mut on_step, err)?;
    }
    if keep_states {
        write_back(store, model, &cache)?;
    }
    // The checkpoint counts every lead in state, cached or stored.
    let counts = store.checkpoint(0).map_err(StepError::from)?.map(|c| c.counts);
    summary.leads = counts.map_or(0, |c| c.leads.max(0) as u64);
    writeln!(err, "leadscore: {summary}")?;
    Ok(summary)
}

/// The non-blank lines of `input` decoded, [`BATCH`] at a time; a line's
/// offset is its line number (from 1), so that problems can name it.
fn read_batches<'i>(
    input: impl BufRead + 'i,
    decoder: &'i Processor<'_>,
) -> impl Iterator<Item = io::Result<Vec<Arrival>>> + 'i {
    let mut lines = input.split(b'\n').enumerate();
    std::iter::from_fn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for (n, line) in lines.by_ref() {
            let mut line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(decoder.decode(InputMessage {
                topic: TOPIC.to_string(),
                partition: 0,
                offset: n as i64 + 1,
                key: None,
                payload: Some(line),
                timestamp: None,
            }));
            if batch.len() == BATCH {
                return Some(Ok(batch));
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    })
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
    mut step: Step,
    summary: &mut Summary,
    on_step: &mut impl FnMut(&mut Step) -> io::Result<()>,
    err: &mut impl Write,
) -> Result<(), OfflineError> {
    on_step(&mut step)?;
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
