//! Throughput of the pure scoring core with the seed model: a realistic event mix
//! over 100k leads, state in a hash map, outputs into a reused buffer. Reports
//! events per second (`Throughput::Elements`), twice: applying each event as
//! it comes, and (`_hinted`) with the cache hints of `core::prefetch` issued
//! for the events ahead, as the pipeline's steps issue them.
//!
//!     cargo bench --bench core_throughput
//!     LEADSCORE_BENCH_LEADS=1000 cargo bench --bench core_throughput

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadscore_suite::config::seed_model;
use leadscore_suite::core::dedup::id_hash;
use leadscore_suite::core::engine::apply;
use leadscore_suite::core::prefetch::DISTANCE;
use leadscore_suite::core::state::prefetch_slot;
use leadscore_suite::core::{Event, LeadState, Outputs};
use leadscore_suite::synth::{Generator, Settings};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;

/// The map is the harness, not what is measured: it is keyed by a 64-bit hash
/// of the lead id (what a store would hash anyway), used as is. A string-keyed
/// map with SipHash costs a key comparison that misses the cache on every event.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Leads = HashMap<u64, Option<LeadState>, BuildHasherDefault<Identity>>;

fn leads() -> u64 {
    std::env::var("LEADSCORE_BENCH_LEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}
const BATCH: usize = 100_000;

fn core(c: &mut Criterion) {
    let model = seed_model();
    let population = leads();
    let mut generator = Generator::new(Settings { leads: population, step: 20, ..Settings::default() });
    let mut leads = Leads::with_capacity_and_hasher(population as usize, BuildHasherDefault::default());
    let mut out = Outputs::default();
    // Warm the state: every lead exists with some history.
    for _ in 0..(population as usize * 5) {
        let e = generator.next_event();
        apply(&model, leads.entry(id_hash(e.lead_id.as_str())).or_default(), &e, &mut out);
        out.clear();
    }
    // Each variant starts from its own copy of the same states (the first
    // one's events change them: at 1k leads, a hundred events per lead per
    // iteration), allocated alike.
    let (mut leads, mut leads_hinted) = (leads.clone(), leads.clone());
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let mut batch = || (0..BATCH).map(|_| generator.next_event()).map(|e| (id_hash(e.lead_id.as_str()), e)).collect();
    for (name, leads, hinted) in [("", &mut leads, false), ("_hinted", &mut leads_hinted, true)] {
        group.bench_function(format!("apply_seed_model_{}k_leads{name}", population / 1000), |b| {
            b.iter_batched_ref(
                &mut batch,
                |events: &mut Vec<(u64, Event)>| {
                    let mut records = 0usize;
                    for (i, (key, e)) in events.iter().enumerate() {
                        if hinted {
                            hint(leads, events.get(i + 2 * DISTANCE), events.get(i + DISTANCE));
                        }
                        apply(&model, leads.entry(*key).or_default(), e, &mut out);
                        records += out.records.len();
                        out.clear();
                    }
                    black_box(records)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The two stages of `core::prefetch`: the slot of the far event, then the
/// state of the near one (whose slot the far hint brought in earlier).
fn hint(leads: &Leads, far: Option<&(u64, Event)>, near: Option<&(u64, Event)>) {
    if let Some((key, e)) = far {
        if let Some(slot) = leads.get(key) {
            prefetch_slot(slot);
        }
        e.prefetch_properties();
    }
    if let Some((key, e)) = near {
        if let Some(Some(state)) = leads.get(key) {
            state.prefetch();
        }
        e.prefetch_texts();
    }
}

criterion_group!(benches, core);
criterion_main!(benches);
