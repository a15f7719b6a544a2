//! The offline scorer decodes, scores and encodes on three threads, a few
//! batches apart: what it prints must still be, byte for byte and in order,
//! what the processing step publishes when it is fed the same lines directly,
//! and the states it leaves in its store must be the step's, whether every
//! lead stays cached or the cache is written back again and again. A failing
//! input or output ends a run with its own error; blank lines are skipped and
//! problems name their line.

mod common;

use common::messages;
use leadscore_config::seed_model;
use leadscore_pipeline::offline::{score, score_into, Options};
use leadscore_pipeline::{OutputTopic, Processor, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;

/// Enough lines for many batches of the scorer (8192 lines each), so that
/// batches are decoded and encoded while others are scored.
const EVENTS: usize = 60_000;

#[test]
fn the_offline_scorer_prints_what_the_step_publishes_in_the_same_order() {
    let model = seed_model();
    let mut g = leadscore_synth::Generator::new(leadscore_synth::Settings {
        seed: 4,
        leads: 2_000,
        step: 600_000,
        erase_share: 0.001,
        ..Default::default()
    });
    let mut lines: Vec<String> = Vec::new();
    for i in 0..EVENTS {
        let mut b = Vec::new();
        leadscore_codec::encode_event_json(&mut b, &g.next_event());
        lines.push(String::from_utf8(b).expect("utf-8"));
        // Bad lines are reported, not printed, and change nothing around them.
        if i % 9_999 == 17 {
            lines.push("{\"not\": \"an event\"}".to_string());
        }
    }
    let until = 4_000_000_000_000;

    let input = lines.join("\n");
    let scored = |cached_leads| {
        let options = Options { until: Some(until), cached_leads, ..Options::default() };
        let (store, mut printed, mut reported) = (MemoryStore::new(), Vec::new(), Vec::new());
        let summary =
            score_into(&store, &model, input.as_bytes(), &options, &mut printed, &mut reported).expect("scored");
        let printed = String::from_utf8(printed).expect("UTF-8");
        let reported = String::from_utf8(reported).expect("UTF-8");
        (summary, printed, reported, store)
    };
    let (summary, printed, reported, cached) = scored(None);
    // 300 of the 2,000 leads: the cache is written back after most steps, and
    // leads come back from the store.
    let (small_summary, small_printed, _, small) = scored(Some(300));

    let topics = Topics { inputs: [("events".to_string(), None)].into_iter().collect(), ..Topics::default() };
    let store = MemoryStore::new();
    let p = Processor::new(&model, &store, &topics, TimeMode::EventTime);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut expected = String::new();
    let mut publish = |step: leadscore_pipeline::Step| {
        for o in step.outputs.iter().filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
        {
            expected.push_str(std::str::from_utf8(o.value.as_deref().expect("a value")).expect("UTF-8"));
            expected.push('\n');
        }
        store.write(&step.write).expect("commit");
    };
    for chunk in messages("events", &refs).chunks(1_000) {
        publish(p.process(0, chunk, 0).expect("a step"));
    }
    publish(p.tick(0, until).expect("the last timers"));

    assert_eq!(summary.rejected, 6, "{reported}");
    assert_eq!(reported.lines().filter(|l| l.starts_with("line ")).count(), 6, "{reported}");
    assert!(summary.timer_transitions > 1_000, "timers fire on the way: {summary}");
    assert_eq!(printed.lines().count() as u64, summary.score_changes + summary.transitions);
    assert!(printed == expected, "the printed records differ from the published ones");
    assert!(small_printed == expected, "with a small cache, the printed records differ from the published ones");
    assert_eq!(small_summary, summary);
    assert_eq!(summary.leads, cached.lead_count() as u64, "the summary counts the leads in state");
    // `score` keeps no store: its last states are never written back.
    let (mut alone, mut reported) = (Vec::new(), Vec::new());
    let options = Options { until: Some(until), ..Options::default() };
    let alone_summary = score(&model, input.as_bytes(), &options, &mut alone, &mut reported).expect("scored");
    assert_eq!(alone_summary, summary);
    assert!(alone == printed.as_bytes(), "score and score_into print the same");
    for (name, scorer) in [("cached", &cached), ("written back", &small)] {
        let (got, want) = (contents(scorer), contents(&store));
        // Compared whole, reported briefly (the states are megabytes).
        let differ = got.0.iter().zip(&want.0).position(|(a, b)| a != b);
        assert!(
            got == want,
            "the offline scorer's store ({name}) differs from the step's: {} and {} leads (first different: {differ:?}), \
             {} and {} timers, counts {:?} and {:?}",
            got.0.len(),
            want.0.len(),
            got.1.len(),
            want.1.len(),
            got.2,
            want.2
        );
    }
}

/// Every lead's state and every timer of partition 0, and its counts.
type Contents = (Vec<(String, Option<Vec<u8>>)>, Vec<(i64, String)>, leadscore_store::Counts);

fn contents(store: &MemoryStore) -> Contents {
    let ids = store.lead_ids(0, None, usize::MAX).expect("lead ids");
    let names: Vec<&str> = ids.iter().map(|l| l.as_str()).collect();
    let states = store.get_states(0, &names).expect("states");
    let timers = store.due_timers(0, None, i64::MAX, usize::MAX).expect("timers");
    (
        names.iter().map(|n| n.to_string()).zip(states).collect(),
        timers.into_iter().map(|(due, lead)| (due, lead.to_string())).collect(),
        store.checkpoint(0).expect("a checkpoint").expect("written").counts,
    )
}

/// Output that fails once `room` bytes are written, as a closed pipe does.
struct Closing {
    room: usize,
}

impl std::io::Write for Closing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_output_that_fails_stops_the_run_with_its_own_error() {
    let model = seed_model();
    let mut g =
        leadscore_synth::Generator::new(leadscore_synth::Settings { seed: 5, leads: 500, ..Default::default() });
    let mut input = Vec::new();
    for _ in 0..EVENTS {
        leadscore_codec::encode_event_json(&mut input, &g.next_event());
        input.push(b'\n');
    }
    let mut out = Closing { room: 100_000 };
    let failed = score(&model, &input[..], &Options::default(), &mut out, &mut Vec::new()).expect_err("a failed write");
    let leadscore_pipeline::offline::OfflineError::Io(e) = failed else { panic!("not an I/O error: {failed}") };
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
}

/// Input that yields `good` and then fails, as a reset connection or a
/// truncated compressed stream does.
struct Failing {
    good: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.good.read(buf)? {
            0 => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the input went away")),
            n => Ok(n),
        }
    }
}

#[test]
fn an_input_that_fails_midway_stops_the_run_with_its_own_error() {
    let model = seed_model();
    let mut g =
        leadscore_synth::Generator::new(leadscore_synth::Settings { seed: 6, leads: 500, ..Default::default() });
    let mut good = Vec::new();
    // Several batches in, so that earlier ones are being scored and written
    // while the reader fails.
    for _ in 0..EVENTS / 2 {
        leadscore_codec::encode_event_json(&mut good, &g.next_event());
        good.push(b'\n');
    }
    let input = std::io::BufReader::new(Failing { good: std::io::Cursor::new(good) });
    let failed =
        score(&model, input, &Options::default(), &mut Vec::new(), &mut Vec::new()).expect_err("a failed read");
    let leadscore_pipeline::offline::OfflineError::Io(e) = failed else { panic!("not an I/O error: {failed}") };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

#[test]
fn blank_lines_are_skipped_and_crlf_lines_keep_their_numbers() {
    let model = seed_model();
    let event = r#"{"event_id":"e-1","lead_id":"L-1","type":"page_view","timestamp":"2026-01-01T00:00:00Z","properties":{"url":"/pricing"}}"#;
    let input = format!("{event}\r\n\n   \r\n\t\nnot json\r\n{}\n", event.replace("e-1", "e-2"));
    let mut err = Vec::new();
    let summary = score(&model, input.as_bytes(), &Options::default(), &mut Vec::new(), &mut err).expect("a run");
    let reported = String::from_utf8(err).expect("UTF-8");
    assert_eq!((summary.events_read, summary.applied, summary.rejected), (3, 2, 1), "{reported}");
    assert!(reported.contains("line 5: not_json"), "{reported}");
}
