//! Throughput of the pure scoring core with the seed model: a realistic event mix
//! over 100k leads, state in a hash map, outputs into a reused buffer. Reports
//! events per second (`Throughput::Elements`).
//!
//!     cargo bench --bench core_throughput

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadscore_suite::config::seed_model;
use leadscore_suite::core::engine::apply;
use leadscore_suite::core::{Event, LeadId, LeadState, Outputs};
use leadscore_suite::synth::{Generator, Settings};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;

/// FNV-1a: the map is the harness, not what is measured; SipHash would be a
/// sizeable share of the time.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

fn leads() -> u64 {
    std::env::var("LEADSCORE_BENCH_LEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}
const BATCH: usize = 100_000;

fn core(c: &mut Criterion) {
    let model = seed_model();
    let population = leads();
    let mut generator = Generator::new(Settings { leads: population, step: 20, ..Settings::default() });
    let mut leads: HashMap<LeadId, Option<LeadState>, BuildHasherDefault<Fnv>> =
        HashMap::with_capacity_and_hasher(population as usize, BuildHasherDefault::default());
    let mut out = Outputs::default();
    // Warm the state: every lead exists with some history.
    for _ in 0..(population as usize * 5) {
        let e = generator.next_event();
        apply(&model, leads.entry(e.lead_id.clone()).or_default(), &e, &mut out);
        out.clear();
    }
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("apply_seed_model_100k_leads", |b| {
        b.iter_batched_ref(
            || (0..BATCH).map(|_| generator.next_event()).collect::<Vec<Event>>(),
            |events: &mut Vec<Event>| {
                let mut records = 0usize;
                for e in events.iter() {
                    let slot = match leads.get_mut(&e.lead_id) {
                        Some(slot) => slot,
                        None => leads.entry(e.lead_id.clone()).or_default(),
                    };
                    apply(&model, slot, e, &mut out);
                    records += out.records.len();
                    out.clear();
                }
                black_box(records)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
