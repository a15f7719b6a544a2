//! Every fuzz target on every input in `regressions/<target>/` (inputs that
//! once broke something) and on a bounded number of generated inputs:
//! mutations of valid messages (bit flips, cut, repeated and spliced bytes)
//! and plain random bytes, from a seeded generator, so that a failure is
//! replayable. LEADSCORE_FUZZ_CASES (default 2000 per target) and
//! LEADSCORE_FUZZ_SEED (default 1) change the run; a failing input is saved
//! under target/fuzz-failures/ with the command that replays it.

use leadscore_fuzz::{seeds, TARGETS};
use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if seeds.is_empty() || rng.below(5) == 0 {
        let n = rng.below(600);
        return (0..n).map(|_| rng.next() as u8).collect();
    }
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(at),
            2 if rng.below(4) == 0 => {
                // A large Avro varint: a length or count of billions.
                let mut n = rng.next() >> rng.below(40);
                let mut varint = Vec::new();
                while n >= 0x80 {
                    varint.push(n as u8 | 0x80);
                    n >>= 7;
                }
                varint.push(n as u8);
                b.splice(at..at, varint);
            }
            2 => {
                let interesting = [b'"', b'{', b'}', b'[', b']', b':', b',', b'\\', b'0', b'9', b'-', 0, 0xff, 0x80];
                b.insert(at, interesting[rng.below(interesting.len())]);
            }
            3 if !b.is_empty() => {
                let from = rng.below(b.len());
                let len = rng.below(64).min(b.len() - from);
                let piece = b[from..from + len].to_vec();
                for _ in 0..=rng.below(3) {
                    b.splice(at.min(b.len())..at.min(b.len()), piece.iter().copied());
                }
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            _ if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    b
}

fn run(target: &str, f: fn(&[u8]), input: &[u8], origin: &str) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!(
            "{target}-{:016x}",
            input.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
        ));
        let _ = std::fs::write(&file, input);
        panic!(
            "fuzz target {target} failed on {origin}; the input is in {} (copy it into \
             crates/leadscore-fuzz/regressions/{target}/ once fixed)",
            file.display()
        );
    }
}

#[test]
fn every_regression_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut count = 0;
    for (name, f) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else { continue };
        for entry in entries {
            let path = entry.expect("an entry").path();
            let input = std::fs::read(&path).expect("a regression input");
            run(name, *f, &input, &path.display().to_string());
            count += 1;
        }
    }
    assert!(count > 0, "the regression inputs are found");
}

#[test]
fn every_target_survives_generated_inputs() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let cases = env("LEADSCORE_FUZZ_CASES", 2000);
    let seed = env("LEADSCORE_FUZZ_SEED", 1);
    for (name, f) in TARGETS {
        let seeds = seeds(name);
        for s in &seeds {
            run(name, *f, s, "a seed input");
        }
        let mut rng = Rng(seed ^ name.bytes().fold(0, |h, b| h * 31 + u64::from(b)));
        for case in 0..cases {
            let input = mutate(&mut rng, &seeds);
            run(name, *f, &input, &format!("case {case} of seed {seed}"));
        }
    }
}
