//! Producing the synthetic event stream to a broker: `leadscore gen
//! --bootstrap-servers` and the load of `leadscore bench`. JSON or Avro (the
//! Confluent wire format), at a target rate or as fast as the producer goes,
//! with a configurable share of bad messages of every class leadscore
//! dead-letters. Messages are keyed by lead id, as the input contract asks.

use anyhow::{bail, Context};
use leadscore_codec::{encode_event_json, AvroCodec, AvroSettings};
use leadscore_synth::{Generator, Rng, Settings};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
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

/// What to produce, and where.
#[derive(Debug, Clone)]
pub struct Load {
    pub bootstrap_servers: String,
    pub topic: String,
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

/// Counts failed deliveries; the first error is kept for the report.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
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
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &load.bootstrap_servers)
        .set("linger.ms", load.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in &load.librdkafka {
        config.set(k, v);
    }
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(Deliveries::default()).context("creating the producer")?;
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
    let started = Instant::now();
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
            on_send(seq, Instant::now());
        }
        send(&producer, &load.topic, event.lead_id.as_str().as_bytes(), &payload)?;
        summary.events += 1;
        summary.bytes += payload.len() as u64;
        progress(summary.events);
    }
    producer.flush(Duration::from_secs(60)).context("waiting for the broker to acknowledge the last events")?;
    summary.elapsed = started.elapsed();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer.context().first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bail!("{failed} of {} events were not delivered (first error: {})", summary.events, first.unwrap_or_default());
    }
    Ok(summary)
}

/// Queues one message, waiting while the local queue is full.
fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).with_context(|| format!("producing to {topic}")),
        }
    }
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
