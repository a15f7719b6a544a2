#!/usr/bin/env bash
# Sets up and runs every check of leadscore: formatting, clippy, and all tests
# (unit, property, golden, CLI, broker), and the end-to-end test on tansu.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== end to end on tansu (an out-of-process Kafka-protocol broker)"
bash scripts/test-tansu.sh
