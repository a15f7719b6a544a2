//! Encodes output records as the JSON of docs/events.md, fields in contract order.
//!
//! Written directly, field by field, rather than through serde: every event
//! produces one or two records, and the generic path cost more than scoring
//! the event did. Numbers and escapes are serde_json's own, so the bytes are
//! exactly what serde_json would write (the tests hold both side by side).

use crate::json_bytes::first_special;
use leadscore_core::event::Kind;
use leadscore_core::model::Model;
use leadscore_core::output::{Reason, Record};
use leadscore_core::time::push_rfc3339;
use serde_json::ser::{CompactFormatter, Formatter};

/// What a record needs besides itself: the model (for names and version), the
/// lead, and the event that produced it (absent for timers).
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    pub model: &'a Model,
    pub lead_id: &'a str,
    pub event: Option<(&'a str, Kind)>,
}

/// Appends one record as a JSON object (no newline) to `buf`. `reasons` are the
/// reasons of the [`leadscore_core::Outputs`] the record came from.
pub fn encode_json(buf: &mut Vec<u8>, ctx: &RecordContext, record: &Record, reasons: &[Reason]) {
    let model = ctx.model;
    match record {
        Record::ScoreChange(c) => {
            buf.extend_from_slice(br#"{"kind":"score_change","lead_id":"#);
            string(buf, ctx.lead_id);
            buf.extend_from_slice(br#","version":"#);
            integer(buf, c.version);
            buf.extend_from_slice(br#","timestamp":""#);
            push_rfc3339(buf, c.timestamp);
            buf.extend_from_slice(br#"","event_id":"#);
            optional(buf, ctx.event.map(|(id, _)| id));
            buf.extend_from_slice(br#","event_type":"#);
            optional(buf, ctx.event.map(|(_, k)| k.as_str()));
            buf.extend_from_slice(br#","score":"#);
            number(buf, c.score);
            buf.extend_from_slice(br#","previous_score":"#);
            number(buf, c.previous_score);
            buf.extend_from_slice(br#","delta":"#);
            number(buf, c.delta);
            buf.extend_from_slice(br#","grade":""#);
            buf.extend_from_slice(c.grade.as_str().as_bytes());
            buf.extend_from_slice(br#"","previous_grade":""#);
            buf.extend_from_slice(c.previous_grade.as_str().as_bytes());
            buf.extend_from_slice(br#"","reasons":["#);
            for (i, r) in reasons[c.reasons.start as usize..c.reasons.end as usize].iter().enumerate() {
                buf.extend_from_slice(if i == 0 { br#"{"rule":"# } else { br#",{"rule":"# });
                string(buf, &model.rules[r.rule as usize].name);
                buf.extend_from_slice(br#","points":"#);
                number(buf, r.points);
                buf.push(b'}');
            }
            buf.extend_from_slice(br#"],"model_version":"#);
        }
        Record::Transition(t) => {
            buf.extend_from_slice(br#"{"kind":"segment_transition","lead_id":"#);
            string(buf, ctx.lead_id);
            buf.extend_from_slice(br#","version":"#);
            integer(buf, t.version);
            buf.extend_from_slice(br#","segment":"#);
            string(
                buf,
                match &t.retired_segment {
                    Some(name) => name,
                    None => &model.segments[t.segment as usize].name,
                },
            );
            buf.extend_from_slice(br#","transition":""#);
            buf.extend_from_slice(t.direction.as_str().as_bytes());
            buf.extend_from_slice(br#"","timestamp":""#);
            push_rfc3339(buf, t.timestamp);
            buf.extend_from_slice(br#"","cause":""#);
            buf.extend_from_slice(t.cause.as_str().as_bytes());
            buf.extend_from_slice(br#"","event_id":"#);
            optional(buf, if t.cause.has_event() { ctx.event.map(|(id, _)| id) } else { None });
            buf.extend_from_slice(br#","score":"#);
            number(buf, t.score);
            buf.extend_from_slice(br#","grade":""#);
            buf.extend_from_slice(t.grade.as_str().as_bytes());
            buf.extend_from_slice(br#"","model_version":"#);
        }
    }
    string(buf, &model.version);
    buf.push(b'}');
}

/// A JSON string. Names and ids rarely need escapes: those that do are
/// escaped by serde_json, so that the two can never disagree.
fn string(buf: &mut Vec<u8>, s: &str) {
    if first_special(s.as_bytes(), 0) < s.len() {
        serde_json::to_writer(&mut *buf, s).expect("encoding a string to memory never fails");
        return;
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

fn optional(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// As serde_json writes an `f64`: the shortest form that reads back the
/// same, `null` for NaN and the infinities.
fn number(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        CompactFormatter.write_f64(buf, v).expect("writing to memory never fails");
    } else {
        buf.extend_from_slice(b"null");
    }
}

fn integer(buf: &mut Vec<u8>, v: u64) {
    CompactFormatter.write_u64(buf, v).expect("writing to memory never fails");
}

#[cfg(test)]
mod tests;
