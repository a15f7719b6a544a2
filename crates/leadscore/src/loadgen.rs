//! Producing the synthetic event stream to a broker: `leadscore gen
//! --bootstrap-servers` and the load of `leadscore bench`. JSON or Avro (the
//! Confluent wire format), at a target rate or as fast as the producer goes,
//! with a configurable share of bad messages of every class leadscore
//! dead-letters. Messages are keyed by lead id, as the input contract asks.
//! All to one topic, or each event to the default topic of its kind (docs/events.md
//! §2), as the default configuration's six co-partitioned topics expect.

use anyhow::Context;
use leadscore_codec::{encode_event_json, AvroCodec, AvroSettings};
use leadscore_core::Kind;
use leadscore_kafka::events::EventProducer;
use leadscore_synth::{Generator, Rng, Settings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Json,
    /// Confluent framing with this schema id for `schemas/lead-event.avsc`.
    Avro {
        schema_id: u32,
    },
}

impl WireFormat {
    /// The name the service config's `formats.input` uses.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Avro { .. } => "avro",
        }
    }
}

/// What to produce, and where.
#[derive(Debug, Clone)]
pub struct Load {
    pub bootstrap_servers: String,
    /// Where every event goes, or (with `by_kind`) the events of kinds without
    /// a topic of their own, and the bad messages.
    pub topic: String,
    /// Each event to the default topic of its kind ([`default_topic_of`]).
    pub by_kind: bool,
    pub events: u64,
    /// Events per second; 0 is as fast as possible.
    pub rate: u64,
    pub format: WireFormat,
    /// Share of bad messages, 0 to 1.
    pub bad_share: f64,
    pub synth: Settings,
    /// librdkafka's linger.ms: batching trades latency for throughput.
    pub linger_ms: u32,
    /// Extra librdkafka options (security, tuning).
    pub librdkafka: Vec<(String, String)>,
}

/// What was produced (and acknowledged by the broker).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub events: u64,
    pub bad: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The default input topic of each kind (docs/events.md): `page-views`,
/// `email-clicks`, `downloads`, `email-bounces`, `lead-profiles` for profile,
/// opportunity and erase events; `None` for the rest (`lead-events`).
pub fn default_topic_of(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::PageView => Some("page-views"),
        Kind::EmailClick => Some("email-clicks"),
        Kind::Download => Some("downloads"),
        Kind::EmailBounce => Some("email-bounces"),
        Kind::ProfileUpdate | Kind::OpportunityUpdate | Kind::Erase => Some("lead-profiles"),
        _ => None,
    }
}

/// The bad messages, one of each class leadscore dead-letters for JSON input,
/// in turn: not JSON, missing field, unknown kind, invalid field, bad timestamp.
fn bad_message(n: u64, lead: &str, out: &mut Vec<u8>) {
    let text = match n % 5 {
        0 => format!(r#"{{"event_id":"bad-{n}","lead_id":"#),
        1 => format!(r#"{{"event_id":"bad-{n}","type":"page_view","timestamp":"2026-01-01T00:00:00Z"}}"#),
        2 => format!(
            r#"{{"event_id":"bad-{n}","lead_id":"{lead}","type":"teleport","timestamp":"2026-01-01T00:00:00Z"}}"#
        ),
        3 => format!(
            r#"{{"event_id":"bad-{n}","lead_id":"{lead}","type":"email_bounce","timestamp":"2026-01-01T00:00:00Z","properties":{{"bounce_type":"sideways"}}}}"#
        ),
        _ => format!(r#"{{"event_id":"bad-{n}","lead_id":"{lead}","type":"page_view","timestamp":"yesterday"}}"#),
    };
    out.extend_from_slice(text.as_bytes());
}

/// Produces `load`, calling `on_send(sequence, instant)` just before each good
/// event is handed to the producer (the sequence is the number at the end of
/// its `event_id`) and `progress(sent)` as it goes. Stops early when `stop` is
/// set. Returns once every message is acknowledged; any failed delivery is an
/// error.
pub fn produce(
    load: &Load,
    stop: &AtomicBool,
    on_send: &mut dyn FnMut(u64, Instant),
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Summary> {
    let mut options = vec![
        ("linger.ms".to_string(), load.linger_ms.to_string()),
        ("batch.size".to_string(), "1000000".to_string()),
        ("queue.buffering.max.messages".to_string(), "1000000".to_string()),
        ("queue.buffering.max.kbytes".to_string(), "1048576".to_string()),
    ];
    options.extend(load.librdkafka.iter().cloned());
    let producer = EventProducer::with_options(&load.bootstrap_servers, &options).context("creating the producer")?;
    let avro = match load.format {
        WireFormat::Json => None,
        WireFormat::Avro { schema_id } => {
            Some((AvroCodec::new(AvroSettings::default()).map_err(anyhow::Error::msg)?, schema_id))
        }
    };
    let mut generator = Generator::new(load.synth.clone());
    let mut faults = Rng::new(load.synth.seed ^ 0x05ee_dbad);
    let mut summary = Summary::default();
    let mut payload = Vec::with_capacity(512);
    let mut started = Instant::now();
    while summary.events < load.events && !stop.load(Ordering::Relaxed) {
        if load.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * load.rate as f64) as u64;
            if summary.events >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
        }
        let event = generator.next_event();
        payload.clear();
        let bad = load.bad_share > 0.0 && faults.chance(load.bad_share);
        let topic = match load.by_kind.then(|| default_topic_of(event.kind)).flatten() {
            Some(topic) if !bad => topic,
            _ => load.topic.as_str(),
        };
        if bad {
            bad_message(summary.bad, event.lead_id.as_str(), &mut payload);
            summary.bad += 1;
        } else {
            encode_event_json(&mut payload, &event);
            if let Some((codec, id)) = &avro {
                let json: serde_json::Value =
                    serde_json::from_slice(&payload).context("re-reading a generated event")?;
                payload = codec.encode_event(&json, *id).map_err(anyhow::Error::msg)?;
            }
            let seq = event.event_id.as_str().rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            // A paced load's first event warms the producer up (connection,
            // metadata, producer id): it is acknowledged before the clock
            // starts, and its latency is not reported.
            if load.rate == 0 || summary.events > 0 {
                on_send(seq, Instant::now());
            }
        }
        producer
            .send(topic, event.lead_id.as_str().as_bytes(), &payload)
            .with_context(|| format!("producing to {topic}"))?;
        if load.rate > 0 && summary.events == 0 {
            producer.flush(Duration::from_secs(30)).map_err(|e| anyhow::anyhow!("warming up on {topic}: {e}"))?;
            started = Instant::now();
        }
        summary.events += 1;
        summary.bytes += payload.len() as u64;
        progress(summary.events);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{} events produced to {}: {e}", summary.events, load.topic))?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_codec::{decode_json, ErrorClass, Limits};

    #[test]
    fn every_bad_message_is_rejected_with_its_class() {
        let mut classes = Vec::new();
        for n in 0..5 {
            let mut m = Vec::new();
            bad_message(n, "L-1", &mut m);
            let err = decode_json(&m, Some(b"L-1"), None, &Limits::default()).expect_err("bad");
            classes.push(err.class);
        }
        assert_eq!(
            classes,
            [
                ErrorClass::NotJson,
                ErrorClass::MissingField,
                ErrorClass::UnknownKind,
                ErrorClass::InvalidField,
                ErrorClass::BadTimestamp
            ]
        );
    }
}
