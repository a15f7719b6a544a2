//! Throughput of the wire formats (`Throughput::Elements`, one element = one
//! message): decoding input events from JSON and from Avro (Confluent framing),
//! and encoding output records to JSON and to Avro. Inputs are the synthetic
//! stream's realistic mix; outputs are what the seed model makes of it.
//!
//!     cargo bench --bench codec

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadscore_suite::codec::{
    decode_json, encode_event_json, encode_json, AvroCodec, AvroSettings, Limits, RecordContext,
};
use leadscore_suite::config::seed_model;
use leadscore_suite::core::engine::apply;
use leadscore_suite::core::{LeadState, Outputs, Record};
use leadscore_suite::synth::{Generator, Settings};
use std::collections::HashMap;
use std::hint::black_box;

const MESSAGES: usize = 10_000;

/// The synthetic stream as (key, JSON, Avro) messages.
fn inputs(codec: &AvroCodec) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut generator = Generator::new(Settings { leads: 10_000, ..Settings::default() });
    (0..MESSAGES)
        .map(|_| {
            let e = generator.next_event();
            let mut json = Vec::new();
            encode_event_json(&mut json, &e);
            let value: serde_json::Value = serde_json::from_slice(&json).expect("generated JSON");
            let avro = codec.encode_event(&value, 1).expect("fits the envelope schema");
            (e.lead_id.as_str().to_string(), json, avro)
        })
        .collect()
}

fn avro_codec() -> AvroCodec {
    let dir = tempfile::tempdir().expect("dir");
    let schema = dir.path().join("lead-event.avsc");
    std::fs::write(&schema, leadscore_suite::codec::avro::LEAD_EVENT_AVSC).expect("schema");
    AvroCodec::new(AvroSettings { schema_files: [(1, schema)].into_iter().collect(), ..AvroSettings::default() })
        .expect("codec")
}

fn decode(c: &mut Criterion) {
    let codec = avro_codec();
    let messages = inputs(&codec);
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("json_event", |b| {
        b.iter(|| {
            for (key, json, _) in &messages {
                black_box(decode_json(json, Some(key.as_bytes()), None, &limits).expect("valid"));
            }
        })
    });
    group.bench_function("avro_event", |b| {
        b.iter(|| {
            for (key, _, avro) in &messages {
                black_box(codec.decode(avro, Some(key.as_bytes()), None, &limits).expect("valid"));
            }
        })
    });
    group.finish();
}

/// Appends one record (with the outputs it came from) to a buffer.
type Encoder<'a> = dyn Fn(&mut Vec<u8>, &RecordContext, &Record, &Outputs) + 'a;

fn encode(c: &mut Criterion) {
    let model = seed_model();
    let codec = avro_codec();
    let mut generator = Generator::new(Settings { leads: 1_000, ..Settings::default() });
    let mut leads: HashMap<String, Option<LeadState>> = HashMap::new();
    // (lead, event id, kind, outputs of one event), for events that made any.
    let mut made = Vec::new();
    while made.len() < MESSAGES {
        let e = generator.next_event();
        let mut out = Outputs::default();
        apply(&model, leads.entry(e.lead_id.as_str().to_string()).or_default(), &e, &mut out);
        if !out.records.is_empty() {
            made.push((e.lead_id.as_str().to_string(), e.event_id.as_str().to_string(), e.kind, out));
        }
    }
    let records: u64 = made.iter().map(|(_, _, _, o)| o.records.len() as u64).sum();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(records));
    // Every output record of `made`, encoded into `buf` by `encode`.
    let each_record = |buf: &mut Vec<u8>, encode: &Encoder<'_>| {
        for (lead, id, kind, out) in &made {
            let ctx = RecordContext { model: &model, lead_id: lead, event: Some((id, *kind)) };
            for r in &out.records {
                buf.clear();
                encode(buf, &ctx, r, out);
                black_box(&buf);
            }
        }
    };
    let mut buf = Vec::with_capacity(1024);
    group.bench_function("json_output", |b| {
        b.iter(|| each_record(&mut buf, &|buf, ctx, r, out| encode_json(buf, ctx, r, &out.reasons)))
    });
    group.bench_function("avro_output", |b| {
        b.iter(|| each_record(&mut buf, &|buf, ctx, r, out| codec.encode_record(buf, ctx, r, &out.reasons)))
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
