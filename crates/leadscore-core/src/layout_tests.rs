//! Tests of the layout module, on a small hand-built model: slots move by
//! name, whatever their order; gone slots are dropped, new ones start empty;
//! memberships of removed segments come back as retired.

use super::*;
use crate::cells::TallyState;
use crate::event::{Event, Kind, KindSet};
use crate::model::{Cap, Cond, EventMatcher, GradeSpec, Measure, ModelSpec, Rule, ScoreSpec, Segment, Tally};
use crate::model::{Grade, Model};
use crate::Outputs;

fn views() -> EventMatcher {
    EventMatcher { kinds: KindSet::of(&[Kind::PageView]), when: Vec::new() }
}

fn rule(name: &str, cap: bool) -> Rule {
    Rule {
        name: name.into(),
        description: String::new(),
        on: views(),
        points: 5.0,
        escalate: None,
        cap: cap.then_some(Cap { points: 50.0, window: 86_400_000 }),
    }
}

fn tally(name: &str, window: bool) -> Tally {
    Tally {
        name: name.into(),
        description: String::new(),
        events: vec![views()],
        measure: Measure::Count,
        window: window.then_some(86_400_000),
        reset_on_change: None,
    }
}

fn segment(name: &str, at_least: i64) -> Segment {
    Segment {
        name: name.into(),
        description: String::new(),
        when: Cond::Score { at_least: Some(at_least), below: None },
    }
}

fn model(rules: Vec<Rule>, tallies: Vec<Tally>, segments: Vec<Segment>) -> Model {
    Model::new(ModelSpec {
        version: "t".into(),
        description: String::new(),
        score: ScoreSpec { min: 0.0, max: 100.0, half_life: 0 },
        rules,
        grade: GradeSpec { start: 0.0, letters: Vec::new(), lowest: Grade::F, criteria: Vec::new() },
        tallies,
        segments,
        profile_tests: Vec::new(),
        remember_event_ids: 4,
        bucket: 1,
    })
    .expect("a model")
}

fn lead(m: &Model, views: i64) -> LeadState {
    let mut slot = None;
    for i in 0..views {
        crate::apply(
            m,
            &mut slot,
            &Event::new(format!("e{i}").as_str(), "L", Kind::PageView, i),
            &mut Outputs::default(),
        );
    }
    slot.expect("a lead")
}

#[test]
fn slots_move_by_name_and_removed_segments_are_retired() {
    let old = model(
        vec![rule("a", true), rule("plain", false), rule("b", true)],
        vec![tally("t1", true), tally("t2", false)],
        vec![segment("low", 0), segment("mid", 1000), segment("gone", 0)],
    );
    let mut s = lead(&old, 3);
    assert_eq!(s.member, 0b111);
    let (rules, tallies, windows): (Vec<u32>, Vec<TallyState>, _) =
        (s.cells.rules().collect(), s.cells.tallies().collect(), s.cells.clone());
    // Reordered, "a" removed, "c" and "t3" new, "t1" now kept for ever, "gone" removed.
    let new = model(
        vec![rule("c", true), rule("b", true)],
        vec![tally("t3", false), tally("t2", false), tally("t1", false)],
        vec![segment("new", 0), segment("mid", 1000), segment("low", 0)],
    );
    let retired = migrate(&mut s, old.layout(), &new);
    assert_eq!(retired, vec![Retired { segment: "gone".into(), since: 0 }]);
    assert_eq!(s.cells.rules().collect::<Vec<_>>(), vec![0, rules[1]]);
    assert_eq!(
        s.cells.tallies().collect::<Vec<_>>(),
        vec![TallyState::default(), tallies[1], TallyState::default()],
        "t1 changed kind"
    );
    // Only "b"'s cap window survives; "t1" lost its window.
    assert_eq!(new.layout().windows, vec!["cap:c".to_string(), "cap:b".to_string()]);
    assert_eq!(s.cells.meta(0), WindowMeta::default());
    assert_eq!(s.cells.window(1).entries, windows.window(2).entries);
    assert_eq!(s.cells.meta(1), windows.meta(2));
    assert_eq!(s.cells.ids().collect::<Vec<_>>(), windows.ids().collect::<Vec<_>>(), "the recent ids are kept");
    assert_eq!(s.member, 0b110, "mid and low, at their new positions; new is not decided yet");
    assert_eq!(s.segments.iter().map(|m| m.segment).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(segment_moves(old.layout(), new.layout()), vec![Some(2), Some(1), None]);
}

#[test]
fn remodel_publishes_what_the_new_model_changes_with_cause_model_change() {
    let old = model(vec![rule("a", false)], Vec::new(), vec![segment("low", 0), segment("gone", 0)]);
    let mut s = lead(&old, 4);
    let version = s.version;
    let new = model(vec![rule("a", false)], Vec::new(), vec![segment("hot", 1500), segment("low", 0)]);
    let retired = migrate(&mut s, old.layout(), &new);
    let mut out = Outputs::default();
    crate::engine::remodel(&new, &mut s, 10, retired, &mut out);
    let got: Vec<(Option<&str>, u16, crate::Direction, crate::Cause, i64)> = out
        .records
        .iter()
        .map(|r| match r {
            crate::Record::Transition(t) => {
                (t.retired_segment.as_deref(), t.segment, t.direction, t.cause, t.timestamp)
            }
            crate::Record::ScoreChange(_) => panic!("the score and grade did not change"),
        })
        .collect();
    use crate::{Cause::ModelChange, Direction::*};
    assert_eq!(got, vec![(Some("gone"), u16::MAX, Exited, ModelChange, 10), (None, 0, Entered, ModelChange, 10)]);
    assert_eq!(s.version, version + 2);
    assert_eq!((s.member, s.clock), (0b11, 10));
}
