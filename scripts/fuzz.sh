#!/usr/bin/env bash
# Coverage-guided fuzzing of leadscore's input decoders and scoring engine with
# cargo-fuzz (libFuzzer), for millions of cases:
#
#   scripts/fuzz.sh                 every target, 5 minutes each
#   scripts/fuzz.sh engine 3600     one target for an hour
#   scripts/fuzz.sh json 60 -jobs=2 extra libFuzzer options after the time
#
# Targets (crates/leadscore-fuzz): json, avro, framing, state, engine. Needs a
# nightly toolchain (libFuzzer's instrumentation flags); installs cargo-fuzz
# 0.13.1 when missing. The corpus grows in target/fuzz-corpus/<target>,
# seeded with crates/leadscore-fuzz/regressions/<target>. A crash is written
# to crates/leadscore-fuzz/fuzz/artifacts/<target>/: copy the file into
# regressions/<target>/ once fixed, and the bounded run in the tests replays
# it forever after.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  say "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly"
  say "(the bounded run needs none: cargo test -p leadscore-fuzz, LEADSCORE_FUZZ_CASES=1000000 for more)"
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz 0.13.1 (first time only)"
  cargo install cargo-fuzz --version 0.13.1 --locked
fi

targets=(json avro framing state engine)
seconds=300
if [ $# -gt 0 ]; then targets=("$1"); shift; fi
if [ $# -gt 0 ]; then seconds="$1"; shift; fi

for t in "${targets[@]}"; do
  corpus="target/fuzz-corpus/$t"
  mkdir -p "$corpus"
  if [ -d "crates/leadscore-fuzz/regressions/$t" ]; then
    cp -n crates/leadscore-fuzz/regressions/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  say "fuzzing $t for ${seconds}s"
  # No sanitizer: the code under test is safe Rust; its panics and aborts are
  # what libFuzzer catches.
  cargo +nightly fuzz run --fuzz-dir crates/leadscore-fuzz/fuzz --sanitizer none "$t" "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 "$@"
done
