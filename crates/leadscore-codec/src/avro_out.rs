//! Output records written straight to Avro binary (Confluent-framed), field
//! by field in the order of `schemas/score-change.avsc` and
//! `schemas/segment-transition.avsc`, with the values of the JSON contract
//! ([`crate::json_out`]): no JSON and no value tree in between. The tests
//! check every byte against apache-avro's encoding of the JSON record.

use crate::json_out::RecordContext;
use leadscore_core::output::{Reason, Record};
use leadscore_core::time::write_rfc3339;

/// Appends one record, framed with `schema_id`, to `buf`. `reasons` are the
/// reasons of the [`leadscore_core::Outputs`] the record came from.
pub fn encode_avro(buf: &mut Vec<u8>, ctx: &RecordContext, record: &Record, reasons: &[Reason], schema_id: u32) {
    buf.push(0);
    buf.extend_from_slice(&schema_id.to_be_bytes());
    let model = ctx.model;
    let mut stamp = String::with_capacity(24);
    match record {
        Record::ScoreChange(c) => {
            string(buf, "score_change");
            string(buf, ctx.lead_id);
            long(buf, c.version as i64);
            write_rfc3339(&mut stamp, c.timestamp);
            string(buf, &stamp);
            optional(buf, ctx.event.map(|(id, _)| id));
            optional(buf, ctx.event.map(|(_, k)| k.as_str()));
            double(buf, c.score);
            double(buf, c.previous_score);
            double(buf, c.delta);
            string(buf, c.grade.as_str());
            string(buf, c.previous_grade.as_str());
            let reasons = &reasons[c.reasons.start as usize..c.reasons.end as usize];
            // An array is one block of all its items, then the empty block.
            if !reasons.is_empty() {
                long(buf, reasons.len() as i64);
                for r in reasons {
                    string(buf, &model.rules[r.rule as usize].name);
                    double(buf, r.points);
                }
            }
            long(buf, 0);
            string(buf, &model.version);
        }
        Record::Transition(t) => {
            string(buf, "segment_transition");
            string(buf, ctx.lead_id);
            long(buf, t.version as i64);
            string(
                buf,
                match &t.retired_segment {
                    Some(name) => name,
                    None => &model.segments[t.segment as usize].name,
                },
            );
            string(buf, t.direction.as_str());
            write_rfc3339(&mut stamp, t.timestamp);
            string(buf, &stamp);
            string(buf, t.cause.as_str());
            optional(buf, if t.cause.has_event() { ctx.event.map(|(id, _)| id) } else { None });
            double(buf, t.score);
            string(buf, t.grade.as_str());
            string(buf, &model.version);
        }
    }
}

/// A zig-zag variable-length long.
fn long(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z > 0x7f {
        buf.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

fn string(buf: &mut Vec<u8>, s: &str) {
    long(buf, s.len() as i64);
    buf.extend_from_slice(s.as_bytes());
}

fn double(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// `["null", "string"]`.
fn optional(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => long(buf, 0),
        Some(s) => {
            long(buf, 1);
            string(buf, s);
        }
    }
}
