#!/usr/bin/env bash
# Sets up and runs every check of leadscore: formatting, clippy, doc links, and all tests
# (unit, property, golden, CLI, broker), and the end-to-end test on tansu.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Installed before the workspace is built so that its temporary build directory
# is gone again before ours grows (CI's disk is limited).
bash scripts/install-tansu.sh
# Incremental caches only pay off when iterating; on a clean CI clone they only
# take disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== deployment files against their schemas"
bash scripts/validate-deploy.sh
echo "== cargo test"
# Every locked package, for every platform: the deployment test reads
# `cargo metadata --offline`, which needs the manifests of packages a build on
# this platform never downloads (Windows-only ones, say).
cargo fetch --locked
cargo test --workspace --locked
echo "== end to end on tansu (an out-of-process Kafka-protocol broker)"
bash scripts/test-tansu.sh
