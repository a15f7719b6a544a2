//! The RocksDB store's batched read-modify-write of lead state, as the pipeline
//! does it per poll batch: multi-get the batch's leads, decode, apply the
//! events with the seed model, encode, and write states, timers and the
//! checkpoint in one atomic batch. One element = one event. 100k leads,
//! batches of 5000 events (the default `processing.max_batch`).
//!
//!     cargo bench --bench store

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadscore_rocks::{RocksSettings, RocksStore};
use leadscore_store::{decode_state, encode_state, Checkpoint, StateStore, WriteBatch};
use leadscore_suite::config::seed_model;
use leadscore_suite::core::engine::apply;
use leadscore_suite::core::{Event, LeadState, Outputs};
use leadscore_suite::synth::{Generator, Settings};
use std::collections::HashMap;
use std::hint::black_box;

const LEADS: u64 = 100_000;
const BATCH: usize = 5_000;

/// One poll batch through the store; returns the records made.
fn step(store: &RocksStore, model: &leadscore_suite::core::Model, events: &[Event], offset: &mut i64) -> usize {
    // Group by lead, as the processor does, so each lead is read and written once.
    let mut by_lead: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_lead.entry(e.lead_id.as_str()).or_default().push(e);
    }
    let leads: Vec<&str> = by_lead.keys().copied().collect();
    let states = store.get_states(0, &leads).expect("get");
    let mut batch = WriteBatch::default();
    let mut out = Outputs::default();
    let mut records = 0;
    let mut value = Vec::with_capacity(512);
    for (lead, bytes) in leads.iter().zip(states) {
        let mut slot: Option<LeadState> = bytes.map(|b| decode_state(&b, model).expect("decodes"));
        let old_due = slot.as_ref().and_then(|s| s.next_due);
        for e in &by_lead[lead] {
            apply(model, &mut slot, e, &mut out);
            records += out.records.len();
            out.clear();
        }
        if let Some(s) = &slot {
            value.clear();
            encode_state(s, model, &mut value);
            batch.put_state(0, (*lead).into(), value.clone());
            batch.move_timer(0, (*lead).into(), old_due, s.next_due);
        }
    }
    *offset += events.len() as i64;
    batch.checkpoint(
        0,
        Checkpoint {
            next_offsets: [("lead-events".to_string(), *offset)].into_iter().collect(),
            ..Checkpoint::default()
        },
    );
    store.write(&batch).expect("write");
    records
}

fn store(c: &mut Criterion) {
    let model = seed_model();
    let dir = tempfile::tempdir().expect("dir");
    let store = RocksStore::open(dir.path(), &RocksSettings::default()).expect("open");
    let mut generator = Generator::new(Settings { leads: LEADS, step: 20, ..Settings::default() });
    let mut offset = 0i64;
    // Warm: every lead has state on disk.
    for _ in 0..(LEADS as usize * 3 / BATCH) {
        let events: Vec<Event> = (0..BATCH).map(|_| generator.next_event()).collect();
        step(&store, &model, &events, &mut offset);
    }
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("rocksdb_batched_rmw_100k_leads", |b| {
        b.iter_batched(
            || (0..BATCH).map(|_| generator.next_event()).collect::<Vec<_>>(),
            |events| black_box(step(&store, &model, &events, &mut offset)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
