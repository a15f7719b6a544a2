//! Fuzz targets: each takes arbitrary bytes, feeds them to one part of
//! leadscore that faces input, and panics only if an invariant breaks (a
//! panic inside the code under test is a finding too).
//!
//! - [`json`]: the JSON event decoder (with or without a message key, any
//!   topic kind): decodes or names an error, with a short message; what
//!   decodes writes back out to JSON that decodes to the same event.
//! - [`avro`]: a Confluent-framed Avro datum of the envelope schema, from
//!   arbitrary datum bytes: the direct reader agrees with apache-avro (read
//!   through the JSON decoder) on every input.
//! - [`framing`]: the Confluent framing itself (any bytes, any schema id).
//! - [`state`]: the stored lead-state decoder (a corrupt changelog record).
//! - [`engine`]: `apply` and `advance` over a few leads with arbitrary
//!   kinds, timestamps (any `i64`), numbers and strings, in arbitrary order,
//!   checking versions, scores, timers and the state's encoding after every
//!   operation.
//!
//! cargo-fuzz drives them coverage-guided (`scripts/fuzz.sh`, the project in
//! `fuzz/`); `tests/bounded.rs` runs each on a bounded number of generated
//! inputs and on every input in `regressions/`, in every test run.

use arbitrary::Unstructured;
use leadscore_codec::{
    decode_json, encode_event_json, AvroCodec, AvroError, AvroSettings, DecodeError, ErrorClass, Limits,
};
use leadscore_core::event::{BounceType, Field, FieldType, OwnedValue, Stage};
use leadscore_core::output::Record;
use leadscore_core::time::{MAX_MILLIS, MIN_MILLIS};
use leadscore_core::{advance, apply, Event, Kind, LeadState, Model, Outputs};
use std::sync::OnceLock;

/// An error message goes into a dead-letter header and a log line: however
/// hostile the input, it stays short.
const MAX_ERROR_MESSAGE: usize = 2048;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(leadscore_config::seed_model)
}

fn check_error(e: &DecodeError) {
    assert!(!e.message.is_empty(), "an error without a message: {e:?}");
    assert!(e.message.len() <= MAX_ERROR_MESSAGE, "an error message of {} bytes", e.message.len());
}

/// See the module documentation.
pub fn json(data: &[u8]) {
    // First byte: whether there is a key, and the topic's kind; then the key's
    // length; the rest is the message.
    let (Some(&flags), Some(&key_len)) = (data.first(), data.get(1)) else { return };
    let rest = &data[2..];
    let key_len = usize::from(key_len).min(rest.len());
    let (key, payload) = rest.split_at(key_len);
    let key = (flags & 1 == 1).then_some(key);
    let kinds = Kind::ALL;
    let topic_kind = (flags & 2 == 2).then(|| kinds[usize::from(flags >> 2) % kinds.len()]);
    let limits = Limits::default();
    match decode_json(payload, key, topic_kind, &limits) {
        Err(e) => check_error(&e),
        Ok(event) => {
            assert!((MIN_MILLIS..=MAX_MILLIS).contains(&event.timestamp));
            assert!(!event.event_id.as_str().is_empty() && event.event_id.as_str().len() <= limits.max_event_id_bytes);
            assert!(!event.lead_id.as_str().is_empty() && event.lead_id.as_str().len() <= limits.max_lead_id_bytes);
            let mut again = Vec::new();
            encode_event_json(&mut again, &event);
            let back = decode_json(&again, None, None, &limits).unwrap_or_else(|e| {
                panic!("{event:?} written as {} does not decode: {e}", String::from_utf8_lossy(&again))
            });
            assert_eq!(back, event, "written as {}", String::from_utf8_lossy(&again));
        }
    }
}

fn codec() -> &'static AvroCodec {
    static CODEC: OnceLock<AvroCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("leadscore-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let file = dir.join("lead-event.avsc");
        std::fs::write(&file, leadscore_codec::avro::LEAD_EVENT_AVSC).expect("the envelope schema");
        let codec = AvroCodec::new(AvroSettings {
            schema_files: [(1, file)].into_iter().collect(),
            registry: None,
            score_change_id: 2,
            transition_id: 3,
        })
        .expect("the codec");
        // The codec has read its file: nothing left behind in /tmp.
        std::fs::remove_dir_all(&dir).ok();
        codec
    })
}

fn avro_bytes(message: &[u8]) {
    let limits = Limits::default();
    let direct = codec().decode(message, None, None, &limits);
    match &direct {
        Ok(event) => assert!((MIN_MILLIS..=MAX_MILLIS).contains(&event.timestamp)),
        Err(AvroError::Bad(e)) => check_error(e),
        Err(AvroError::Wait { .. }) => panic!("no registry, so nothing waits"),
    }
    // The direct reader against apache-avro's value tree through the JSON
    // decoder: the same events and errors, and invalid Avro wherever
    // apache-avro finds the datum invalid.
    let reference = codec().decode_through_json(message, None, None, &limits);
    match (&direct, &reference) {
        (Err(AvroError::Bad(d)), Err(AvroError::Bad(r))) if r.class == ErrorClass::InvalidAvro => {
            assert_eq!(d.class, ErrorClass::InvalidAvro, "apache-avro: {r:?}")
        }
        // JSON has no NaN: the reference reads one as null.
        (Err(AvroError::Bad(d)), _) if d.message.contains("non-finite") => {}
        _ => assert_eq!(direct, reference),
    }
}

/// See the module documentation.
pub fn avro(data: &[u8]) {
    let mut message = vec![0, 0, 0, 0, 1];
    message.extend_from_slice(data);
    avro_bytes(&message);
}

/// See the module documentation.
pub fn framing(data: &[u8]) {
    avro_bytes(data);
}

/// See the module documentation.
pub fn state(data: &[u8]) {
    if let Ok(s) = leadscore_store::decode_state(data, model()) {
        // Whatever decodes encodes again without a panic.
        let mut out = Vec::new();
        leadscore_store::encode_state(&s, model(), &mut out);
    }
}

/// An instant: anything at all, or in the range events have, or near its ends.
fn instant(u: &mut Unstructured, base: &mut i64) -> arbitrary::Result<i64> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => u.arbitrary()?,
        1 => u.int_in_range(MIN_MILLIS..=MAX_MILLIS)?,
        2 => MAX_MILLIS - i64::from(u.int_in_range(0..=u32::MAX)?),
        3 => MIN_MILLIS + i64::from(u.int_in_range(0..=u32::MAX)?),
        _ => {
            // Mostly forward, sometimes back: days apart.
            *base = base.saturating_add(i64::from(u.int_in_range(-1_000_000..=1_000_000_000i32)?) * 10);
            *base
        }
    })
}

fn text(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => "https://example.com/pricing".into(),
        1 => "Demo Request".into(),
        2 => "ana@example.com".into(),
        _ => u.arbitrary()?,
    })
}

fn event(u: &mut Unstructured, base: &mut i64) -> arbitrary::Result<Event> {
    let kind = *u.choose(Kind::ALL)?;
    let id = format!("e{}", u.int_in_range(0..=40u8)?);
    let mut e = Event::new(id.as_str(), "L", kind, instant(u, base)?);
    for &(field, _) in kind.properties() {
        if field.is_profile() || !u.arbitrary::<bool>()? {
            continue;
        }
        match field {
            Field::DurationMs => e.properties.duration_ms = Some(u.arbitrary()?),
            Field::Amount => e.properties.amount = Some(u.arbitrary()?),
            Field::Attended => e.properties.attended = Some(u.arbitrary()?),
            Field::BounceType => e.properties.bounce_type = Some(*u.choose(BounceType::ALL)?),
            Field::Stage => e.properties.stage = Some(*u.choose(Stage::ALL)?),
            _ => e.properties.set_text(field, text(u)?),
        }
    }
    if kind == Kind::ProfileUpdate {
        for &(field, _) in kind.properties() {
            if !u.arbitrary::<bool>()? {
                continue;
            }
            let value = match (u.int_in_range(0..=5u8)?, field.field_type()) {
                (0, _) => None,
                (_, FieldType::Integer) => Some(OwnedValue::Integer(u.arbitrary()?)),
                (_, FieldType::Number) => Some(OwnedValue::Number(u.arbitrary()?)),
                (_, FieldType::TextList) => {
                    let n = u.int_in_range(0..=4usize)?;
                    Some(OwnedValue::TextList((0..n).map(|_| text(u).map(Into::into)).collect::<Result<_, _>>()?))
                }
                _ => Some(OwnedValue::Text(text(u)?.into())),
            };
            e.properties.profile.push((field, value));
        }
    }
    Ok(e)
}

fn check_outputs(model: &Model, before: u64, after: Option<&LeadState>, out: &Outputs) {
    let mut version = before;
    for r in &out.records {
        let (v, score) = match r {
            Record::ScoreChange(c) => (c.version, c.score),
            Record::Transition(t) => (t.version, t.score),
        };
        version += 1;
        assert_eq!(v, version, "versions go up by one");
        assert!(score.is_finite() && score >= model.score.min && score <= model.score.max, "score {score}");
    }
    if let Some(s) = after {
        assert_eq!(s.version, version, "the state's version is its last output's");
        assert!(s.next_due.is_none_or(|d| d > s.clock), "a timer in the past: {:?} at {}", s.next_due, s.clock);
        let mut buf = Vec::new();
        leadscore_store::encode_state(s, model, &mut buf);
        let back = leadscore_store::decode_state(&buf, model).expect("a state decodes");
        assert_eq!((back.version, back.score.to_bits(), back.next_due), (s.version, s.score.to_bits(), s.next_due));
    }
}

/// See the module documentation.
pub fn engine(data: &[u8]) {
    let model = model();
    let mut u = Unstructured::new(data);
    let mut slot: Option<LeadState> = None;
    let mut out = Outputs::default();
    let mut base = 1_767_225_600_000i64;
    for _ in 0..256 {
        let Ok(op) = u.int_in_range(0..=3u8) else { return };
        out.clear();
        let before = slot.as_ref().map_or(0, |s| s.version);
        match op {
            0 | 1 => {
                let Ok(e) = event(&mut u, &mut base) else { return };
                apply(model, &mut slot, &e, &mut out);
                if e.kind == Kind::Erase {
                    // The exits carry on from the erased lead's version.
                    check_outputs(model, before, None, &out);
                    continue;
                }
            }
            2 => {
                let Ok(now) = instant(&mut u, &mut base) else { return };
                if let Some(s) = slot.as_mut() {
                    advance(model, s, now, &mut out);
                }
            }
            _ => {
                // A restart: the state as stored.
                if let Some(s) = &slot {
                    let mut buf = Vec::new();
                    leadscore_store::encode_state(s, model, &mut buf);
                    slot = Some(leadscore_store::decode_state(&buf, model).expect("a state decodes"));
                }
            }
        }
        check_outputs(model, before, slot.as_ref(), &out);
    }
}

/// A fuzz target: takes any bytes, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// The targets by name, for the bounded runner and the regression files.
pub const TARGETS: &[(&str, Target)] =
    &[("json", json), ("avro", avro), ("framing", framing), ("state", state), ("engine", engine)];

/// Seeds for the generated inputs of a target: valid messages to mutate.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let sample = include_str!("../../../examples/sample-events.jsonl");
    let lines = sample.lines().take(200);
    match target {
        "json" => lines.map(|l| [&[1u8, 0][..], l.as_bytes()].concat()).collect(),
        "avro" | "framing" => lines
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| codec().encode_event(&v, 1).ok())
            .map(|b| if target == "avro" { b[5..].to_vec() } else { b })
            .collect(),
        "state" => {
            let mut slot = None;
            let mut out = Outputs::default();
            let limits = Limits::default();
            let mut states = Vec::new();
            for l in sample.lines().take(300) {
                if let Ok(e) = decode_json(l.as_bytes(), None, None, &limits) {
                    if e.lead_id.as_str() != "L-0000004" {
                        continue;
                    }
                    apply(model(), &mut slot, &e, &mut out);
                    if let Some(s) = &slot {
                        let mut buf = Vec::new();
                        leadscore_store::encode_state(s, model(), &mut buf);
                        states.push(buf);
                    }
                }
            }
            states
        }
        _ => Vec::new(),
    }
}
