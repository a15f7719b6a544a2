//! The direct encoder against serde_json's: the reference below is the
//! encoder it replaced (derived `Serialize` structs), kept to hold the
//! bytes equal on any record, name and number.

use super::*;
use leadscore_core::event::Kind;
use leadscore_core::output::{Cause, Direction, ScoreChange, Transition};
use leadscore_core::time::format_rfc3339;
use leadscore_core::Grade;
use proptest::prelude::*;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

#[derive(Serialize)]
struct ScoreChangeJson<'a> {
    kind: &'static str,
    lead_id: &'a str,
    version: u64,
    timestamp: String,
    event_id: Option<&'a str>,
    event_type: Option<&'static str>,
    score: f64,
    previous_score: f64,
    delta: f64,
    grade: &'static str,
    previous_grade: &'static str,
    reasons: ReasonsJson<'a>,
    model_version: &'a str,
}

struct ReasonsJson<'a>(&'a Model, &'a [Reason]);

impl Serialize for ReasonsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct R<'a> {
            rule: &'a str,
            points: f64,
        }
        let mut seq = s.serialize_seq(Some(self.1.len()))?;
        for r in self.1 {
            seq.serialize_element(&R { rule: &self.0.rules[r.rule as usize].name, points: r.points })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct TransitionJson<'a> {
    kind: &'static str,
    lead_id: &'a str,
    version: u64,
    segment: &'a str,
    transition: &'static str,
    timestamp: String,
    cause: &'static str,
    event_id: Option<&'a str>,
    score: f64,
    grade: &'static str,
    model_version: &'a str,
}

fn reference(buf: &mut Vec<u8>, ctx: &RecordContext, record: &Record, reasons: &[Reason]) {
    let model = ctx.model;
    let result = match record {
        Record::ScoreChange(c) => serde_json::to_writer(
            &mut *buf,
            &ScoreChangeJson {
                kind: "score_change",
                lead_id: ctx.lead_id,
                version: c.version,
                timestamp: format_rfc3339(c.timestamp),
                event_id: ctx.event.map(|(id, _)| id),
                event_type: ctx.event.map(|(_, k)| k.as_str()),
                score: c.score,
                previous_score: c.previous_score,
                delta: c.delta,
                grade: c.grade.as_str(),
                previous_grade: c.previous_grade.as_str(),
                reasons: ReasonsJson(model, &reasons[c.reasons.start as usize..c.reasons.end as usize]),
                model_version: &model.version,
            },
        ),
        Record::Transition(t) => serde_json::to_writer(
            &mut *buf,
            &TransitionJson {
                kind: "segment_transition",
                lead_id: ctx.lead_id,
                version: t.version,
                segment: match &t.retired_segment {
                    Some(name) => name,
                    None => &model.segments[t.segment as usize].name,
                },
                transition: t.direction.as_str(),
                timestamp: format_rfc3339(t.timestamp),
                cause: t.cause.as_str(),
                event_id: if t.cause.has_event() { ctx.event.map(|(id, _)| id) } else { None },
                score: t.score,
                grade: t.grade.as_str(),
                model_version: &model.version,
            },
        ),
    };
    // Writing to a Vec cannot fail, and every value here is serialisable.
    result.expect("encoding a record to memory never fails");
}

/// The seed model with names that need escaping.
fn awkward_model() -> Model {
    let mut spec: leadscore_core::ModelSpec = (*leadscore_config::seed_model()).clone();
    spec.version = "v\"2\"\n\u{1}é".into();
    spec.rules[0].name = "quote \" backslash \\ tab \t del \u{7f} ü".into();
    spec.segments[0].name = "\u{1f}snow ☃".into();
    Model::new(spec).expect("renaming keeps the model valid")
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just("L-1".to_string()), "[a-zA-Z0-9\"\\\\\u{0}-\u{1f}\u{7f}é☃ /:-]{0,12}"]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-100_000i64..100_000).prop_map(|c| c as f64 / 100.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(1e21),
        Just(5e-324),
    ]
}

fn millis() -> impl Strategy<Value = i64> {
    prop_oneof![1_700_000_000_000i64..1_900_000_000_000, -400_000_000_000_000i64..400_000_000_000_000]
}

fn grade() -> impl Strategy<Value = Grade> {
    prop::sample::select(Grade::ALL.to_vec())
}

fn record() -> impl Strategy<Value = (Record, Vec<Reason>)> {
    let reasons = prop::collection::vec((0u16..4, float()).prop_map(|(rule, points)| Reason { rule, points }), 0..4);
    let change = (any::<u64>(), millis(), float(), float(), float(), grade(), grade(), reasons).prop_map(
        |(version, timestamp, score, previous_score, delta, grade, previous_grade, reasons)| {
            let change = ScoreChange {
                version,
                timestamp,
                score,
                previous_score,
                delta,
                grade,
                previous_grade,
                reasons: 0..reasons.len() as u32,
            };
            (Record::ScoreChange(change), reasons)
        },
    );
    let transition = (
        any::<u64>(),
        0u16..3,
        any::<bool>(),
        millis(),
        prop::sample::select(vec![Cause::Event, Cause::Timer, Cause::ModelChange, Cause::Erase]),
        float(),
        grade(),
        prop::option::of(text()),
    )
        .prop_map(|(version, segment, entered, timestamp, cause, score, grade, retired)| {
            let direction = if entered { Direction::Entered } else { Direction::Exited };
            let t = Transition {
                version,
                segment,
                direction,
                timestamp,
                cause,
                score,
                grade,
                retired_segment: retired.map(String::into_boxed_str),
            };
            (Record::Transition(t), Vec::new())
        });
    prop_oneof![change, transition]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn writes_what_serde_json_writes(
        (record, reasons) in record(),
        lead in text(),
        event in prop::option::of((text(), prop::sample::select(Kind::ALL.to_vec()))),
        awkward in any::<bool>(),
    ) {
        let model = if awkward { awkward_model() } else { leadscore_config::seed_model() };
        let ctx = RecordContext { model: &model, lead_id: &lead, event: event.as_ref().map(|(id, k)| (id.as_str(), *k)) };
        // Appended after earlier bytes, as encoders of a batch do.
        let (mut direct, mut serde) = (b"x\n".to_vec(), b"x\n".to_vec());
        encode_json(&mut direct, &ctx, &record, &reasons);
        reference(&mut serde, &ctx, &record, &reasons);
        prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(serde).unwrap());
    }
}
