//! The output side of a step: an event's or a timer's records encoded for
//! their topics (and kept for the metrics), and the dead letter of a
//! message that could not be used.

use super::work::Work;
use super::StepError;
use crate::messages::{headers, InputMessage, OutputRecord, OutputTopic};
use leadscore_codec::{encode_json, DecodeError, ErrorClass, RecordContext};
use leadscore_core::output::{Cause, Record};
use leadscore_core::{Event, EventId, LeadId};
use leadscore_telemetry::PublishedRecord;

/// How much of an oversized message's value (and key) its dead letter keeps.
pub const DEAD_LETTER_SAMPLE_BYTES: usize = 64 * 1024;
/// The longest `leadscore.error.message` header (error messages quote input
/// only in short excerpts; this is the safety net).
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// At most `max` bytes of `b`, cut before a UTF-8 character that would not fit.
fn cut(b: &[u8], max: usize) -> &[u8] {
    if b.len() <= max {
        return b;
    }
    let mut end = max;
    while end > 0 && (b[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &b[..end]
}

impl Work<'_, '_> {
    /// Turns the records in `out` into output records.
    pub(super) fn emit(&mut self, lead: &LeadId, event: Option<&Event>) -> Result<(), StepError> {
        let ctx = RecordContext {
            model: self.p.model,
            lead_id: lead.as_str(),
            event: event.map(|e| (e.event_id.as_str(), e.kind)),
        };
        for r in &self.out.records {
            let (topic, reasons) = match r {
                Record::ScoreChange(c) => {
                    self.step.stats.score_changes += 1;
                    (OutputTopic::ScoreChanges, self.out.reasons_of(c).to_vec())
                }
                Record::Transition(t) => {
                    self.step.stats.transitions += 1;
                    // A removed segment's exit has no index to count it by.
                    if t.retired_segment.is_none() {
                        *self.step.observations.transitions.entry((t.segment, t.direction, t.cause)).or_default() += 1;
                    }
                    if t.cause == Cause::Timer {
                        self.step.stats.timer_transitions += 1;
                    }
                    (OutputTopic::Transitions, Vec::new())
                }
            };
            let value = self.p.encode_records.then(|| {
                let mut value = Vec::with_capacity(320);
                match &self.p.formats.avro_output {
                    Some(avro) => avro.encode_record(&mut value, &ctx, r, &self.out.reasons),
                    None => encode_json(&mut value, &ctx, r, &self.out.reasons),
                }
                value
            });
            let mut record = r.clone();
            if let Record::ScoreChange(c) = &mut record {
                c.reasons = 0..reasons.len() as u32;
            }
            self.step.observations.published.push(PublishedRecord {
                lead: lead.clone(),
                event: event.map(|e| (EventId::from(e.event_id.as_str()), e.kind)),
                record,
                reasons,
            });
            if let Some(value) = value {
                self.step.outputs.push(OutputRecord {
                    topic,
                    key: Some(lead.as_str().as_bytes().to_vec()),
                    value: Some(value),
                    headers: Vec::new(),
                    partition: None,
                });
            }
        }
        self.out.clear();
        Ok(())
    }

    /// The dead letter of `m`: its key and value as they came, except that an
    /// oversized message keeps only the first [`DEAD_LETTER_SAMPLE_BYTES`] of
    /// each (with its value's original size in a header, and its key's if
    /// that was cut), so that every dead letter can be published.
    pub(super) fn dead_letter(&mut self, m: &InputMessage, e: &DecodeError) {
        self.step.stats.dead_lettered += 1;
        let mut headers = vec![
            (headers::ERROR_CLASS, e.class.as_str().as_bytes().to_vec()),
            (headers::ERROR_MESSAGE, cut(e.message.as_bytes(), MAX_ERROR_MESSAGE_BYTES).to_vec()),
            (headers::SOURCE_TOPIC, m.topic.as_bytes().to_vec()),
            (headers::SOURCE_PARTITION, m.partition.to_string().into_bytes()),
            (headers::SOURCE_OFFSET, m.offset.to_string().into_bytes()),
        ];
        let (mut key, mut value) = (m.key.clone(), m.payload.clone());
        if e.class == ErrorClass::Oversize {
            if let Some(v) = value.as_mut() {
                headers.push((headers::ORIGINAL_SIZE, v.len().to_string().into_bytes()));
                v.truncate(DEAD_LETTER_SAMPLE_BYTES);
            }
            if let Some(k) = key.as_mut().filter(|k| k.len() > DEAD_LETTER_SAMPLE_BYTES) {
                headers.push((headers::ORIGINAL_KEY_SIZE, k.len().to_string().into_bytes()));
                k.truncate(DEAD_LETTER_SAMPLE_BYTES);
            }
        }
        self.step.outputs.push(OutputRecord { topic: OutputTopic::DeadLetters, key, value, headers, partition: None });
    }
}
