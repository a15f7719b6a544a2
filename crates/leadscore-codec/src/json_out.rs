//! Encodes output records as the JSON of docs/events.md, fields in contract order.

use leadscore_core::event::Kind;
use leadscore_core::model::Model;
use leadscore_core::output::{Reason, Record};
use leadscore_core::time::format_rfc3339;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

/// What a record needs besides itself: the model (for names and version), the
/// lead, and the event that produced it (absent for timers).
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    pub model: &'a Model,
    pub lead_id: &'a str,
    pub event: Option<(&'a str, Kind)>,
}

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

/// Appends one record as a JSON object (no newline) to `buf`. `reasons` are the
/// reasons of the [`leadscore_core::Outputs`] the record came from.
pub fn encode_json(buf: &mut Vec<u8>, ctx: &RecordContext, record: &Record, reasons: &[Reason]) {
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
